"""Checkpoint selection: keep the training snapshot that speaks the regression prompts best.

The last optimiser step is not always the best voice: on the base run, held-out WER swung
between 0.125 and 0.169 over the last 3000 steps (docs/model-choice.md). Selection uses the
text-only regression prompts (synthesised, transcribed by the same ASR), never the held-out
recordings, so the held-out scores reported afterwards stay an honest test. Ties go to the
later step; the run is deterministic given its snapshots.

Stability: one snapshot's WER on eight prompts swings by 0.05-0.13 between neighbouring
snapshots, and tiny numerical differences between machines moved the raw minimum from step 800
to step 200. The choice is therefore made on a smoothed curve (each snapshot's word errors pooled
with its neighbours'), which asks for a region of good snapshots rather than one lucky score.
``stability`` reports, for the raw and the smoothed rule, how often a bootstrap resample of the
prompts (fixed seed) picks the same snapshot as all prompts do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicelane.engine import train as train_mod

SMOOTH_NEIGHBOURS = 1  # snapshots on each side pooled into a snapshot's score
BOOTSTRAP = 500


@dataclass
class Chosen:
    step: int
    prompts_wer: float
    state: dict[str, Any]
    table: list[dict[str, Any]]


def select_snapshot(run_dir: Path, final: dict[str, Any], arch: dict[str, Any], mean: np.ndarray,
                    std: np.ndarray, language: str) -> Chosen:
    """Score every snapshot (and the final weights, when no snapshot holds them) on the prompts."""
    from voicelane.engine.voice import Voice
    from voicelane.evaluate import evaluate

    candidates: list[tuple[int, Path | None]] = list(train_mod.snapshot_paths(run_dir))
    if int(final["step"]) not in {step for step, _ in candidates}:
        candidates.append((int(final["step"]), None))
    from voicelane.evaluate import REGRESSION_PROMPTS, reference_words

    words = np.array([len(reference_words(t, language)) for t in REGRESSION_PROMPTS], dtype=float)
    candidates.sort(key=lambda c: c[0])
    table, errors = [], []
    for step, path in candidates:
        state = final["model"] if path is None else train_mod.load_checkpoint(path)["model"]
        voice = Voice.from_state(state, arch, mean, std, language)
        res = evaluate(voice.synthesize, [], None, language=language, with_floor=False)
        errors.append(np.round(np.array([r["wer"] for r in res["prompts"]]) * words))
        table.append({"step": step, "prompts_wer": round(float(res["prompts_wer"]), 4)})
    err = np.array(errors)  # [snapshots, prompts] word errors
    smoothed = smoothed_wer(err, words)
    for row, sw in zip(table, smoothed):
        row["smoothed_wer"] = round(float(sw), 4)
    k = pick(smoothed, err.sum(1) / words.sum())
    path = candidates[k][1]
    state = final["model"] if path is None else train_mod.load_checkpoint(path)["model"]
    table.append({"stability": stability(err, words)})
    return Chosen(candidates[k][0], table[k]["prompts_wer"], state, table)


def smoothed_wer(err: np.ndarray, words: np.ndarray, neighbours: int = SMOOTH_NEIGHBOURS) -> np.ndarray:
    """Each snapshot's WER with its neighbours' word errors pooled in (edges pool fewer)."""
    n = err.shape[0]
    out = np.empty(n)
    for i in range(n):
        lo, hi = max(0, i - neighbours), min(n, i + neighbours + 1)
        out[i] = err[lo:hi].sum() / max(words.sum() * (hi - lo), 1.0)
    return out


def pick(scores: np.ndarray, raw: np.ndarray | None = None) -> int:
    """The lowest score; ties go to the lower raw score, then to the later snapshot."""
    raw = scores if raw is None else raw
    keys = [(round(float(s), 9), round(float(r), 9), -i) for i, (s, r) in enumerate(zip(scores, raw))]
    return -min(keys)[2]


def stability(err: np.ndarray, words: np.ndarray, n: int = BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """How often a bootstrap resample of the prompts keeps each rule's choice."""
    rng = np.random.default_rng(seed)
    raw_pick = pick(err.sum(1) / words.sum())
    smooth_pick = pick(smoothed_wer(err, words), err.sum(1) / words.sum())
    same_raw = same_smooth = 0
    for _ in range(n):
        idx = rng.integers(0, err.shape[1], err.shape[1])
        e, w = err[:, idx], words[idx]
        same_raw += pick(e.sum(1) / max(w.sum(), 1.0)) == raw_pick
        same_smooth += pick(smoothed_wer(e, w), e.sum(1) / max(w.sum(), 1.0)) == smooth_pick
    return {"raw_rule_agreement": round(same_raw / n, 3), "smoothed_rule_agreement": round(same_smooth / n, 3),
            "bootstrap": n}

"""Checkpoint selection: keep the training snapshot that speaks the regression prompts best.

The last optimiser step is not always the best voice: on the base run, held-out WER swung
between 0.125 and 0.169 over the last 3000 steps (docs/model-choice.md). Selection uses the
text-only regression prompts (synthesised, transcribed by the same ASR), never the held-out
recordings, so the held-out scores reported afterwards stay an honest test. Ties go to the
later step; the run is deterministic given its snapshots.

Stability: eight prompts are ~126 words, so one snapshot's WER moves by 0.01 per word the ASR
hears differently, and tiny numerical differences between machines moved the raw minimum from
step 800 to step 200. The rule is therefore: the *latest* snapshot whose prompt WER is within
``MARGIN`` (0.02, two to three words) of the lowest. Checked by simulation on the documented
demo curve (0.175/0.246/0.159/0.119/0.246, word errors drawn binomially per snapshot, two
"machines" compared, 1000 draws): the two pick the same snapshot 68 % of the time with the raw
minimum, 78 % with the margin (95 % with the margin and twice the prompts); pooling each
snapshot with its neighbours (a smoothed curve) was *less* stable (32 %) and is not used.
``stability`` reports, for the raw and the margin rule, how often a bootstrap resample of the
prompts (fixed seed) picks the same snapshot as all prompts do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicelane.engine import train as train_mod

MARGIN = 0.02  # prompt WER a later snapshot may give away against the lowest
BOOTSTRAP = 500


@dataclass
class Chosen:
    step: int
    prompts_wer: float
    state: dict[str, Any]
    table: list[dict[str, Any]]


def select_snapshot(
    run_dir: Path, final: dict[str, Any], arch: dict[str, Any], mean: np.ndarray, std: np.ndarray, language: str
) -> Chosen:
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
    k = pick_with_margin(err.sum(1) / words.sum())
    path = candidates[k][1]
    state = final["model"] if path is None else train_mod.load_checkpoint(path)["model"]
    table.append({"stability": stability(err, words)})
    return Chosen(candidates[k][0], table[k]["prompts_wer"], state, table)


def pick(scores: np.ndarray) -> int:
    """The raw rule: the lowest score, ties to the later snapshot."""
    keys = [(round(float(s), 9), -i) for i, s in enumerate(scores)]
    return -min(keys)[1]


def pick_with_margin(scores: np.ndarray, margin: float = MARGIN) -> int:
    """The latest snapshot within ``margin`` of the lowest score."""
    best = float(np.min(scores))
    return max(i for i, s in enumerate(scores) if s <= best + margin + 1e-9)


def stability(err: np.ndarray, words: np.ndarray, n: int = BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """How often a bootstrap resample of the prompts keeps each rule's choice."""
    rng = np.random.default_rng(seed)
    raw_pick = pick(err.sum(1) / words.sum())
    margin_pick = pick_with_margin(err.sum(1) / words.sum())
    same_raw = same_margin = 0
    for _ in range(n):
        idx = rng.integers(0, err.shape[1], err.shape[1])
        scores = err[:, idx].sum(1) / max(words[idx].sum(), 1.0)
        same_raw += pick(scores) == raw_pick
        same_margin += pick_with_margin(scores) == margin_pick
    return {
        "raw_rule_agreement": round(same_raw / n, 3),
        "margin_rule_agreement": round(same_margin / n, 3),
        "bootstrap": n,
    }

"""Checkpoint selection: keep the training snapshot that speaks the regression prompts best.

The last optimiser step is not always the best voice: on the base run, held-out WER swung
between 0.125 and 0.169 over the last 3000 steps (docs/model-choice.md). Selection uses the
text-only regression prompts (synthesised, transcribed by the same ASR), never the held-out
recordings, so the held-out scores reported afterwards stay an honest test. Ties go to the
later step; the run is deterministic given its snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicelane.engine import train as train_mod


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
    best: tuple[int, float, dict[str, Any]] | None = None
    table = []
    for step, path in candidates:
        state = final["model"] if path is None else train_mod.load_checkpoint(path)["model"]
        voice = Voice.from_state(state, arch, mean, std, language)
        wer = float(evaluate(voice.synthesize, [], None, language=language, with_floor=False)["prompts_wer"])
        table.append({"step": step, "prompts_wer": round(wer, 4)})
        if best is None or wer <= best[1]:
            best = (step, wer, state)
    assert best is not None  # the final weights are always a candidate
    return Chosen(best[0], best[1], best[2], table)

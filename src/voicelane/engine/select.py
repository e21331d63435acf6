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


@dataclass
class Chosen:
    step: int
    prompts_wer: float
    state: dict[str, Any]
    table: list[dict[str, Any]]


def _candidates(run_dir: Path, final: dict[str, Any]) -> list[tuple[int, dict[str, Any] | None, Path | None]]:
    snaps = sorted((run_dir / "snapshots").glob("step_*.pt"))
    out: list[tuple[int, dict[str, Any] | None, Path | None]] = [
        (int(p.stem.split("_")[1]), None, p) for p in snaps]
    steps = {s for s, _, _ in out}
    if int(final["step"]) not in steps:
        out.append((int(final["step"]), final["model"], None))
    return sorted(out, key=lambda c: c[0])


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def select_snapshot(run_dir: Path, final: dict[str, Any], arch: dict[str, Any], mean: np.ndarray,
                    std: np.ndarray, language: str) -> Chosen:
    from voicelane.engine.voice import Voice
    from voicelane.evaluate import evaluate

    best: Chosen | None = None
    table = []
    for step, state, path in _candidates(run_dir, final):
        state = state if state is not None else _load_state(path)
        voice = Voice.from_state(state, arch, mean, std, language)
        wer = float(evaluate(voice.synthesize, [], None, language=language, with_floor=False)["prompts_wer"])
        table.append({"step": step, "prompts_wer": round(wer, 4)})
        if best is None or wer <= best.prompts_wer:
            best = Chosen(step, wer, state, table)
    assert best is not None
    best.table = table
    return best

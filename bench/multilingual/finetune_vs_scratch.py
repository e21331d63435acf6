#!/usr/bin/env python3
"""Fine-tune from the English base vs train from scratch, at equal CPU time, on a non-English
corpus (docs/model-choice.md, "Another language").

Reads two lane run folders trained with ``--snapshot-every`` (same corpus, same preset, same
threads, run side by side so they share the machine's load) and scores the snapshots of each at
the same steps (equal steps = equal CPU minutes: same architecture, batch and thread count; the
measured training seconds are printed next to them) on the held-out recordings: MCD-DTW, median
F0 error against the real recordings, F0 RMSE, duration ratio, phone error rates (exact and
broad classes; the same recogniser on the real recordings is the floor).

    .venv/bin/python bench/multilingual/finetune_vs_scratch.py --language it \\
        --heldout runs/it_corpus/heldout --run finetune=runs/it_ft --run scratch=runs/it_scratch
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import soundfile as sf


def heldout_clips(folder: Path, limit: int):
    from voicelane.evaluate import Clip

    rows = [r.split("|") for r in (folder / "metadata.csv").read_text("utf-8").splitlines() if r][:limit]
    return [Clip(cid, text, sf.read(folder / "wavs" / f"{cid}.flac", dtype="float32")[0]) for cid, text, *_ in rows]


def score(run_dir: Path, step: int, language: str, clips, with_floor: bool) -> dict:
    from voicelane.engine import frontend
    from voicelane.engine import train as train_mod
    from voicelane.engine.voice import Voice
    from voicelane.evaluate import evaluate

    ck = train_mod.load_checkpoint(run_dir / "work" / "train" / train_mod.CKPT_NAME)
    snap = train_mod.load_checkpoint(train_mod.snapshot_path(run_dir / "work" / "train", step))
    voice = Voice.from_state(
        snap["model"],
        ck["arch"],
        ck["feat_mean"],
        ck["feat_std"],
        language,
        symbols=frontend.inventory(language).symbols,
    )
    res = evaluate(voice.synthesize, clips, [], language=language, with_floor=with_floor, keep_audio=0)
    keep = (
        "mcd_db",
        "f0_median_hz",
        "f0_median_real_hz",
        "f0_median_rel_error",
        "f0_rmse_hz",
        "duration_ratio",
        "per",
        "per_broad",
        "per_floor_real_audio",
        "per_broad_floor_real_audio",
    )
    return {"step": step, "train_seconds": snap.get("train_seconds")} | {k: res.get(k) for k in keep}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--language", required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--steps", default=None, help="comma-separated steps (default: every snapshot both runs have)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from voicelane.engine import train as train_mod

    runs = dict(r.split("=", 1) for r in a.run)
    have = [{s for s, _ in train_mod.snapshot_paths(Path(d) / "work" / "train")} for d in runs.values()]
    steps = [int(s) for s in a.steps.split(",")] if a.steps else sorted(set.intersection(*have))
    clips = heldout_clips(a.heldout, a.clips)
    rows = []
    for k, step in enumerate(steps):
        for j, (name, run_dir) in enumerate(runs.items()):
            row = {"run": name} | score(Path(run_dir), step, a.language, clips, with_floor=(k == 0 and j == 0))
            rows.append(row)
            print(json.dumps(row, sort_keys=True), flush=True)
    floor = rows[0]
    print(
        f"\nheld-out: {len(clips)} clips; real recordings: median F0 {floor['f0_median_real_hz']} Hz, "
        f"PER {floor['per_floor_real_audio']}, PER broad {floor['per_broad_floor_real_audio']}\n"
    )
    print("| run | step | train s | MCD (dB) | median F0 err | F0 RMSE (Hz) | duration ratio | PER | PER broad |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['step']} | {r['train_seconds']:.0f} | {r['mcd_db']} | {r['f0_median_rel_error']} | "
            f"{r['f0_rmse_hz']} | {r['duration_ratio']} | {r['per']} | {r['per_broad']} |"
        )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Validate the language-independent intelligibility proxy (phone error rate, evaluate.py) on
English, where a word recogniser exists: does PER rank voices as pocketsphinx WER does?

Voices of graded quality: the shipped base voice and copies of it with Gaussian noise added to
every weight (sigma = alpha x that tensor's std, seeded), plus the real recordings (the floor).
Each speaks the same held-out sentences (corpora/slt_heldout, the base's speaker); we report
WER, PER and MCD per voice and Spearman's rank correlation between WER and PER.

    .venv/bin/python bench/per_proxy.py [--clips 20] [--alphas 0,0.01,0.02,0.03,0.04]

(alpha 0.05 already breaks the duration predictor: negative durations, no audio.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def noisy_voice(voice_dir: Path, alpha: float, seed: int = 0):
    import torch
    from safetensors.torch import load_file

    from voicelane.engine.voice import CONFIG_FILE, WEIGHTS_FILE, Voice

    cfg = json.loads((voice_dir / CONFIG_FILE).read_text("utf-8"))
    state = load_file(str(voice_dir / WEIGHTS_FILE))
    gen = torch.Generator().manual_seed(seed)
    noisy = {}
    for k, v in sorted(state.items()):
        if v.is_floating_point() and v.numel() > 1 and alpha > 0:
            v = v + torch.randn(v.shape, generator=gen) * (alpha * float(v.std()))
        noisy[k] = v
    return Voice.from_state(
        noisy, cfg["arch"], cfg["feat_mean"], cfg["feat_std"], cfg["language"], symbols=cfg["symbols"]
    )


def snapshot_voice(run_dir: Path, step: int):
    """A snapshot of another lane run (e.g. the Italian fine-tune of the English base), made to
    speak English: its inventory extends the base's, so English tokens keep their rows."""
    from voicelane.engine import train as train_mod
    from voicelane.engine.voice import Voice

    ck = train_mod.load_checkpoint(run_dir / "work" / "train" / train_mod.CKPT_NAME)
    snap = train_mod.load_checkpoint(train_mod.snapshot_path(run_dir / "work" / "train", step))
    n = ck["arch"]["num_chars"]
    from voicelane.engine import frontend

    symbols = list(frontend.SYMBOLS) + [f"<x{i}>" for i in range(n - len(frontend.SYMBOLS))]
    return Voice.from_state(snap["model"], ck["arch"], ck["feat_mean"], ck["feat_std"], "en-us", symbols=symbols)


def finite(synthesize):
    """A broken voice (noise pushed it to NaN frames) says nothing: its samples become silence."""

    def run(text: str):
        syn = synthesize(text)
        if not np.all(np.isfinite(syn.audio)):  # near-silence (not zeros: MCD takes logs)
            syn.audio = np.random.default_rng(0).normal(0, 1e-4, len(syn.audio)).astype(np.float32)
        return syn

    return run


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--alphas", default="0,0.01,0.02,0.03,0.04")
    ap.add_argument(
        "--snapshot",
        action="append",
        default=[],
        help="NAME=RUN_DIR@STEP: also score that lane run's snapshot speaking English",
    )
    ap.add_argument("--fast", default="", help="comma-separated length scales of the base (faster speech)")
    ap.add_argument("--json", type=Path, default=None, help="also write the table here")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from voicelane import evaluate as ev

    folder = REPO / "corpora" / "slt_heldout"
    rows = [r.split("|") for r in (folder / "metadata.csv").read_text("utf-8").splitlines() if r][: a.clips]
    clips = [ev.Clip(cid, text, sf.read(folder / "wavs" / f"{cid}.flac", dtype="float32")[0]) for cid, text, *_ in rows]
    table = []
    for k, alpha in enumerate(float(x) for x in a.alphas.split(",")):
        voice = noisy_voice(REPO / "weights" / "voicelane-slt-base-v1", alpha)
        res = ev.evaluate(finite(voice.synthesize), clips, [], language="en-us", with_floor=(k == 0), keep_audio=0)
        if k == 0:
            table.append(
                {
                    "voice": "real recordings (floor)",
                    "wer": res["wer_floor_real_audio"],
                    "per": res["per_floor_real_audio"],
                    "per_broad": res["per_broad_floor_real_audio"],
                    "mcd_db": 0.0,
                }
            )
        table.append(
            {
                "voice": f"base, weight noise {alpha:g}",
                "wer": res["wer"],
                "per": res["per"],
                "per_broad": res["per_broad"],
                "mcd_db": res["mcd_db"],
            }
        )
        print(json.dumps(table[-1], sort_keys=True), flush=True)
    base_dir = REPO / "weights" / "voicelane-slt-base-v1"
    extra = [(f"base, length scale {x}", noisy_voice(base_dir, 0.0), float(x)) for x in a.fast.split(",") if x]
    for spec in a.snapshot:
        name, _, where = spec.partition("=")
        run_dir, _, step = where.rpartition("@")
        extra.append((f"{name} step {step}", snapshot_voice(Path(run_dir), int(step)), 1.0))
    for name, voice, scale in extra:
        res = ev.evaluate(
            finite(lambda t, v=voice, s=scale: v.synthesize(t, s)),
            clips,
            [],
            language="en-us",
            with_floor=False,
            keep_audio=0,
        )
        table.append(
            {
                "voice": name,
                "wer": res["wer"],
                "per": res["per"],
                "per_broad": res["per_broad"],
                "mcd_db": res["mcd_db"],
            }
        )
        print(json.dumps(table[-1], sort_keys=True), flush=True)
    voices = table[1:]
    rho = {k: spearman([r["wer"] for r in voices], [r[k] for r in voices]) for k in ("per", "per_broad")}
    rho_all = {k: spearman([r["wer"] for r in table], [r[k] for r in table]) for k in ("per", "per_broad")}
    print("\n| voice | WER | PER | PER broad | MCD (dB) |\n|---|---|---|---|---|")
    for r in table:
        print(f"| {r['voice']} | {r['wer']:.3f} | {r['per']:.3f} | {r['per_broad']:.3f} | {r['mcd_db']:.2f} |")
    for k in ("per", "per_broad"):
        print(f"Spearman rank correlation WER vs {k}: synthetic voices {rho[k]:.3f}; with the floor {rho_all[k]:.3f}")
    if a.json:
        a.json.write_text(
            json.dumps({"rows": table, "spearman": rho, "spearman_with_floor": rho_all}, indent=1, sort_keys=True)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

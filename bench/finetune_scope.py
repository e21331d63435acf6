"""Which layers carry speaker identity? Fine-tune a base voice to the kal corpus with each scope.

    .venv/bin/python bench/finetune_scope.py --base weights/voicelane-slt-base-v1 --steps 600 [--n 12]
    (--base may also be a training snapshot .pt together with --ckpt for its normalisation)

Prints, per scope (and for the untouched base): held-out kal WER, content-word recall, MCD to
kal, median F0 vs real kal, training seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))


def load_base(base: Path, ckpt: Path | None):
    import torch

    if base.suffix == ".pt":
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        snap = torch.load(base, map_location="cpu", weights_only=False)
        return snap["model"], ck["arch"], np.asarray(ck["feat_mean"]), np.asarray(ck["feat_std"])
    from safetensors.torch import load_file

    cfg = json.loads((base / "voice_config.json").read_text())
    return (
        load_file(str(base / "model.safetensors")),
        cfg["arch"],
        np.asarray(cfg["feat_mean"], np.float32),
        np.asarray(cfg["feat_std"], np.float32),
    )


def main() -> None:
    from learning_curve import heldout_clips

    from voicelane import dataset
    from voicelane.engine import data, model, train
    from voicelane.engine.voice import Voice
    from voicelane.evaluate import evaluate

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scopes", default="all,decoder")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--renorm", default="base,speaker", help="feature normalisation: base stats, target-speaker stats")
    ap.add_argument("--no-base-row", action="store_true")
    a = ap.parse_args()
    state, arch, mean, std = load_base(a.base, a.ckpt)
    work = Path(tempfile.gettempdir()) / "voicelane-ft-bench"
    man = dataset.prepare_dataset(REPO / "corpora/kal", work / "ds", dataset.DatasetConfig(val_fraction=0, val_min=0))
    entries = [dict(e, abs_path=work / "ds" / e["path"]) for e in man["entries"]]
    items, _ = data.prepare_all(entries, work / "cache", workers=2)
    clips = heldout_clips(REPO / "corpora/kal_heldout", a.n)
    rows = []
    spk_mean, spk_std = data.feature_stats(items)
    from voicelane.engine.features import LF0_IDX

    pitch_mean, pitch_std = mean.copy(), std.copy()
    pitch_mean[LF0_IDX], pitch_std[LF0_IDX] = spk_mean[LF0_IDX], spk_std[LF0_IDX]

    def stats(norm):
        return {"base": (mean, std), "speaker": (spk_mean, spk_std), "pitch": (pitch_mean, pitch_std)}[norm]

    for norm in a.renorm.split(","):
        if a.no_base_row:
            break
        m, sd = stats(norm)
        v = Voice.from_state(state, arch, m, sd)
        r = evaluate(v.synthesize, clips, prompts=[])
        rows.append(
            {
                "scope": f"base (no fine-tune), {norm} stats",
                "train_s": 0,
                "wer": r["wer"],
                "floor": r["wer_floor_real_audio"],
                "recall": r["content_word_recall"],
                "mcd_db": r["mcd_db"],
                "f0": r["f0_median_hz"],
                "f0_real": r["f0_median_real_hz"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    p = model.preset("cpu")
    combos = [(sc, nm) for sc in a.scopes.split(",") for nm in a.renorm.split(",")]
    for scope, norm in combos:
        m, sd = stats(norm)
        run = work / f"run_{scope}_{norm}_{a.steps}"
        cfg = train.TrainConfig(
            steps=a.steps,
            batch_size=p["batch_size"],
            lr=a.lr,
            warmup=50,
            checkpoint_every=10**9,
            threads=a.threads,
            finetune_scope=scope,
        )
        t0 = time.perf_counter()
        import shutil

        shutil.rmtree(run, ignore_errors=True)
        ck = train.train(items, arch, cfg, run, m, sd, init_state=state)
        dt = time.perf_counter() - t0
        v = Voice.from_state(ck["model"], arch, m, sd)
        r = evaluate(v.synthesize, clips, prompts=[], with_floor=False)
        rows.append(
            {
                "scope": f"{scope}, {norm} stats",
                "steps": a.steps,
                "train_s": round(dt, 1),
                "wer": r["wer"],
                "recall": r["content_word_recall"],
                "mcd_db": r["mcd_db"],
                "f0": r["f0_median_hz"],
                "f0_real": r["f0_median_real_hz"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

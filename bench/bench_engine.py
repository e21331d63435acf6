"""Engine benchmark: training s/step, evaluation time, synthesis RTF (PyTorch and ONNX).

    .venv/bin/python bench/bench_engine.py [--bundle DIR] [--steps 20] [--preset cpu]

Trains `--steps` steps of the preset on the embedded kal corpus (features cached under
/tmp), then times synthesis of the regression prompts with the bundle's PyTorch and ONNX
voices, and one evaluation pass over 5 held-out clips. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def kal_items(n: int):
    from voicelane.engine import data

    rows = (REPO / "corpora/kal/metadata.csv").read_text().splitlines()[:n]
    entries = []
    for row in rows:
        cid, text = row.split("|")[:2]
        p = REPO / "corpora/kal/wavs" / f"{cid}.flac"
        entries.append({"id": cid, "abs_path": p, "text": text, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    t0 = time.perf_counter()
    items, _ = data.prepare_all(entries, Path("/tmp/voicelane-bench-cache"), workers=2)
    return items, time.perf_counter() - t0


def bench_train(preset: str, steps: int, threads: int) -> dict:
    import shutil
    import tempfile

    from voicelane.engine import data, model, train

    items, prep_s = kal_items(64)
    p = model.preset(preset)
    arch = model.architecture(p)
    mean, std = data.feature_stats(items)
    run = Path(tempfile.mkdtemp())
    times = []
    last = [time.perf_counter()]

    def on_step(step, losses):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    cfg = train.TrainConfig(
        steps=steps, batch_size=p["batch_size"], lr=p["lr"], warmup=5, checkpoint_every=10**9, threads=threads
    )
    last[0] = time.perf_counter()
    train.train(items, arch, cfg, run, mean, std, on_step=on_step)
    shutil.rmtree(run, ignore_errors=True)
    warm = times[2:] or times
    return {
        "preset": preset,
        "batch_size": p["batch_size"],
        "threads": threads,
        "steps": steps,
        "s_per_step_median": round(statistics.median(warm), 4),
        "s_per_step_mean": round(statistics.mean(warm), 4),
        "feature_prep_s_per_clip": round(prep_s / 64, 4),
    }


def bench_synthesis(bundle: Path) -> dict:
    from voicelane.evaluate import REGRESSION_PROMPTS
    from voicelane.speak import load_bundle_voice

    out = {}
    for engine in ("pytorch", "onnx"):
        voice, _ = load_bundle_voice(bundle, engine, threads=1)
        voice.synthesize("Warm up.")
        compute = audio = 0.0
        for text in REGRESSION_PROMPTS:
            s = voice.synthesize(text)
            compute += s.compute_s
            audio += s.seconds
        out[f"rtf_{engine}"] = round(compute / audio, 4)
    return out


def bench_eval(bundle: Path) -> dict:
    from voicelane.evaluate import Clip, evaluate
    from voicelane.speak import load_bundle_voice

    voice, _ = load_bundle_voice(bundle, "pytorch", threads=1)
    rows = (REPO / "corpora/kal_heldout/metadata.csv").read_text().splitlines()[:5]
    clips = []
    for row in rows:
        cid, text = row.split("|")[:2]
        wav, _ = sf.read(REPO / "corpora/kal_heldout/wavs" / f"{cid}.flac", dtype="float32")
        clips.append(Clip(cid, text, wav))
    t0 = time.perf_counter()
    evaluate(voice.synthesize, clips, prompts=[])
    dt = time.perf_counter() - t0
    return {"eval_s_per_heldout_clip": round(dt / len(clips), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=REPO / "runs/demo/bundles/demo_kal/voice_bundle")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    res = {"train": bench_train(a.preset, a.steps, a.threads)}
    if a.bundle.exists():
        res["synthesis"] = bench_synthesis(a.bundle)
        res["eval"] = bench_eval(a.bundle)
    else:
        res["synthesis"] = f"no bundle at {a.bundle} (run `voicelane demo` first)"
    print(json.dumps(res, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()

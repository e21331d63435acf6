"""Fine-tune recipe sweep for the demo: one run of the real lane with the fine-tune schedule
overridden, then every snapshot scored on the *dev* set (bench/render_dev_set.py), never on
corpora/kal_heldout.

    .venv/bin/python bench/render_dev_set.py                  # once: runs/kal_dev
    .venv/bin/python bench/finetune_recipe.py --out runs/recipe/A --steps 600 --lr 5e-4

Prints the lane's stage timings and a table per snapshot: dev WER / content recall / MCD / median
F0 and regression-prompt WER.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))


def run_recipe(a) -> None:
    from voicelane.demo import demo_options
    from voicelane.engine import model as model_mod
    from voicelane.lane import run_lane
    from voicelane.progress import make_reporter
    from voicelane.protocol import Emitter

    cpu = model_mod.PRESETS["cpu"]
    cpu.update(finetune_lr=a.lr, finetune_warmup=a.warmup)
    if a.scope:
        cpu["finetune_scope"] = a.scope
    if a.batch:
        cpu["batch_size"] = a.batch
    opts = demo_options(a.out, quick=False, threads=a.threads)
    opts.steps = a.steps
    opts.snapshot_every = a.snapshot_every
    opts.select_snapshot = a.select
    opts.heldout = a.dev
    opts.gates = {"wer_max": 1.01}
    opts.status_path = a.out / "train_status.json"
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "protocol.log", "w", encoding="utf-8") as log:
        run_lane(opts, Emitter(log), make_reporter(protocol=True))


def score(job: tuple[str, str, str, int]) -> dict:
    import numpy as np
    from learning_curve import heldout_clips

    from voicelane.engine.train import load_checkpoint
    from voicelane.engine.voice import Voice
    from voicelane.evaluate import evaluate

    snap, key, dev, n = job
    cache = Path(snap).with_suffix(f".dev{n}.{key}.json")
    if cache.exists():
        return json.loads(cache.read_text())
    s = load_checkpoint(Path(snap))
    meta = load_checkpoint(Path(snap).parent.parent / "checkpoint.pt")
    v = Voice.from_state(s[key], meta["arch"], np.asarray(meta["feat_mean"]), np.asarray(meta["feat_std"]))
    res = evaluate(v.synthesize, heldout_clips(Path(dev), n), prompts=None, with_floor=False, workers=1)
    row = {
        "step": s["step"],
        "train_s": s.get("train_seconds"),
        "wer": res["wer"],
        "recall": res["content_word_recall"],
        "mcd": res["mcd_db"],
        "f0": res["f0_median_hz"],
        "prompts_wer": res["prompts_wer"],
    }
    cache.write_text(json.dumps(row, sort_keys=True))
    return row


def plot(runs: list[Path], png: Path, n: int, s_per_step: float) -> None:
    """Dev WER and MCD of each run's snapshots against idle-equivalent training minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for run in runs:
        snaps = run / "work" / "train" / "snapshots"
        rows = [json.loads(p.read_text()) for p in sorted(snaps.glob(f"*.dev{n}.model*.json"))]
        rows = [r for r in rows if r.get("weights") != "ema"]  # runs of the reverted weight average
        mins = [r["step"] * s_per_step / 60 for r in rows]
        ax1.plot(mins, [r["wer"] for r in rows], "o-", label=run.name)
        ax2.plot(mins, [r["mcd"] for r in rows], "^-", label=run.name)
    ax1.set(xlabel=f"training minutes (idle 2-core CPU, {s_per_step} s/step)", ylabel=f"dev WER ({n} clips)")
    ax2.set(xlabel=f"training minutes (idle 2-core CPU, {s_per_step} s/step)", ylabel="MCD-DTW (dB)")
    ax1.legend()
    fig.suptitle("fine-tune of the slt base to kal: dev-set learning curves")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--dev", type=Path, default=REPO / "runs" / "kal_dev")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--scope", default=None)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--snapshot-every", type=int, default=100)
    ap.add_argument("--select", action="store_true", help="let the lane select a snapshot on the prompts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--score-only", action="store_true")
    ap.add_argument("--plot", type=Path, default=None, help="only draw the curves of --runs into this PNG")
    ap.add_argument("--runs", type=Path, nargs="*", default=[])
    a = ap.parse_args()
    if a.plot:
        plot(a.runs, a.plot, a.n, 0.23)
        return
    if not a.score_only:
        run_recipe(a)
    status = json.loads((a.out / "train_status.json").read_text()) if (a.out / "train_status.json").exists() else {}
    print("timings_s:", json.dumps(status.get("timings_s", {}), sort_keys=True))
    evals = sorted((a.out / "work").glob("**/eval.json"))
    if evals:
        ev = json.loads(evals[0].read_text())
        print("lane eval on dev:", {k: ev.get(k) for k in ("wer", "content_word_recall", "mcd_db", "f0_median_hz")})
    from voicelane.engine.train import snapshot_paths

    jobs = []
    for _, p in snapshot_paths(a.out / "work" / "train"):
        jobs.append((str(p), "model", str(a.dev), a.n))
    import multiprocessing as mp

    # spawn: a forked child of this torch process deadlocks in OpenMP on its first conv layer
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(score, jobs))
    print("| step | train s | dev WER | recall | MCD dB | median F0 | prompts WER |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['step']} | {r['train_s']} | {r['wer']:.3f} | {r['recall']:.3f} | "
            f"{r['mcd']:.2f} | {r['f0']} | {r['prompts_wer']} |"
        )


if __name__ == "__main__":
    main()

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


def scored_snapshots(run: Path, dev: Path, n: int) -> list[dict]:
    """Every snapshot of a run scored on the dev set (+ the regression prompts); cached next to
    each snapshot by learning_curve.evaluate_snapshot."""
    import numpy as np
    from learning_curve import evaluate_snapshot, heldout_clips

    from voicelane.engine.train import load_checkpoint, snapshot_paths

    ck = load_checkpoint(run / "work" / "train" / "checkpoint.pt")
    meta = {"arch": ck["arch"], "feat_mean": np.asarray(ck["feat_mean"]), "feat_std": np.asarray(ck["feat_std"])}
    clips = heldout_clips(dev, n)
    return [evaluate_snapshot(p, meta, clips, with_prompts=True) for _, p in snapshot_paths(run / "work" / "train")]


def plot(runs: list[Path], dev: Path, png: Path, n: int, s_per_step: float) -> None:
    """Dev WER and MCD of each run's snapshots against idle-equivalent training minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for run in runs:
        rows = scored_snapshots(run, dev, n)
        mins = [r["step"] * s_per_step / 60 for r in rows]
        ax1.plot(mins, [r["wer"] for r in rows], "o-", label=run.name)
        ax2.plot(mins, [r["mcd_db"] for r in rows], "^-", label=run.name)
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
        plot(a.runs, a.dev, a.plot, a.n, 0.23)
        return
    if not a.score_only:
        run_recipe(a)
    status = json.loads((a.out / "train_status.json").read_text()) if (a.out / "train_status.json").exists() else {}
    print("timings_s:", json.dumps(status.get("timings_s", {}), sort_keys=True))
    evals = sorted((a.out / "work").glob("**/eval.json"))
    if evals:
        ev = json.loads(evals[0].read_text())
        print("lane eval on dev:", {k: ev.get(k) for k in ("wer", "content_word_recall", "mcd_db", "f0_median_hz")})
    rows = scored_snapshots(a.out, a.dev, a.n)
    print("| step | train min | dev WER | recall | MCD dB | median F0 | prompts WER |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['step']} | {r['train_minutes']} | {r['wer']:.3f} | {r['content_word_recall']:.3f} | "
            f"{r['mcd_db']:.2f} | {r['f0_median_hz']} | {r['prompts_wer']} |"
        )


if __name__ == "__main__":
    main()

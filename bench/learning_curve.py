"""Learning curve: WER / content-word recall / MCD of training snapshots vs training minutes.

    .venv/bin/python bench/learning_curve.py --run runs/base/work/train --heldout corpora/slt_heldout \
        [--n 12] [--png docs/img/learning_curve_base.png] [--label base]

Snapshots are written by training with `snapshot_every` (the base-voice run keeps one every
500 steps). Results are cached next to each snapshot, so the command is incremental.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def heldout_clips(folder: Path, n: int):
    from voicelane.evaluate import Clip

    clips = []
    for row in (folder / "metadata.csv").read_text().splitlines()[:n]:
        cid, text = row.split("|")[:2]
        path = next(p for p in (folder / "wavs" / f"{cid}.flac", folder / "wavs" / f"{cid}.wav") if p.exists())
        wav, sr = sf.read(path, dtype="float32")
        if sr != 16000:
            import soxr

            wav = soxr.resample(wav, sr, 16000)
        clips.append(Clip(cid, text, wav))
    return clips


def evaluate_snapshot(snap: Path, ck_meta: dict, clips, with_prompts: bool) -> dict:
    from voicelane.engine.train import load_checkpoint, read_train_seconds, snapshot_path
    from voicelane.engine.voice import Voice
    from voicelane.evaluate import evaluate

    s = load_checkpoint(snap)
    # results sit next to the snapshot of the same step (for the final checkpoint: where it would be)
    named = snapshot_path(snap.parent, s["step"]) if snap.name == "checkpoint.pt" else snap
    cache = named.with_suffix(f".eval{len(clips)}{'p' if with_prompts else ''}.json")
    if cache.exists():
        return json.loads(cache.read_text())
    v = Voice.from_state(s["model"], ck_meta["arch"], ck_meta["feat_mean"], ck_meta["feat_std"])
    res = evaluate(v.synthesize, clips, prompts=None if with_prompts else [], with_floor=False)
    seconds = s.get("train_seconds") or read_train_seconds(snap.parent / "train_time.json")
    row = {
        "step": s["step"],
        "train_minutes": round(seconds / 60, 2),
        "wer": res["wer"],
        "content_word_recall": res["content_word_recall"],
        "mcd_db": res["mcd_db"],
        "f0_median_hz": res["f0_median_hz"],
        "f0_median_real_hz": res["f0_median_real_hz"],
    }
    if with_prompts:
        row["prompts_wer"] = res["prompts_wer"]
    cache.write_text(json.dumps(row, sort_keys=True))
    return row


def main() -> None:
    from voicelane.engine.train import load_checkpoint, snapshot_paths

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True, help="training run dir (holds checkpoint.pt, snapshots/)")
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--label", default="run")
    ap.add_argument(
        "--prompts",
        action="store_true",
        help="also score the regression prompts (text-only; a selection signal that is not the held-out set)",
    )
    a = ap.parse_args()
    ck = load_checkpoint(a.run / "checkpoint.pt")
    meta = {"arch": ck["arch"], "feat_mean": np.asarray(ck["feat_mean"]), "feat_std": np.asarray(ck["feat_std"])}
    clips = heldout_clips(a.heldout, a.n)
    found = snapshot_paths(a.run)
    snaps = [p for _, p in found]
    if ck["step"] not in {step for step, _ in found}:
        snaps.append(a.run / "checkpoint.pt")  # the final state, when no snapshot holds it
    del ck
    rows = [evaluate_snapshot(p, meta, clips, a.prompts) for p in snaps]
    print(json.dumps(rows, indent=1))
    print("| step | train min | WER | content recall | MCD dB | median F0 (real) | prompts WER |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['step']} | {r['train_minutes']} | {r['wer']:.3f} | {r['content_word_recall']:.3f} | "
            f"{r['mcd_db']:.2f} | {r['f0_median_hz']} ({r['f0_median_real_hz']}) | {r.get('prompts_wer', '')} |"
        )
    if a.png and rows:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax1 = plt.subplots(figsize=(7, 4))
        mins = [r["train_minutes"] for r in rows]
        ax1.plot(mins, [r["wer"] for r in rows], "o-", color="tab:blue", label="WER (pocketsphinx)")
        ax1.plot(
            mins, [1 - r["content_word_recall"] for r in rows], "s--", color="tab:cyan", label="1 - content-word recall"
        )
        ax1.set_xlabel("training minutes (2-core CPU)")
        ax1.set_ylabel("error rate")
        ax1.set_ylim(0, max(0.5, 1.2 * max(max(r["wer"], 1 - r["content_word_recall"]) for r in rows)))
        ax2 = ax1.twinx()
        ax2.plot(mins, [r["mcd_db"] for r in rows], "^-", color="tab:red", label="MCD-DTW (dB)")
        ax2.set_ylabel("MCD (dB)")
        h1, l1 = ax1.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax1.legend(h1 + h2, l1 + l2, loc="upper right")
        ax1.set_title(f"voicelane learning curve: {a.label} ({len(clips)} held-out sentences)")
        fig.tight_layout()
        a.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.png, dpi=100)
        print(f"wrote {a.png}")


if __name__ == "__main__":
    main()

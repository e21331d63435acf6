"""Does this checkout train the same voice as an older revision, given the same training data?

Issue 9 (the consolidation) had to leave behaviour unchanged, while issue 10 changed the
aligner on purpose. This separates the two: it runs the same `voicelane train` command with the
old revision's code and with this checkout's, and compares

- the training inputs each computed (token ids, WORLD features, durations: clip by clip, and
  per token how many durations are exact), and
- the weights, after this checkout trains on the *old revision's* inputs (its feature cache
  copied into the run): identical tensors mean the training path itself is unchanged.

Usage (about 5 minutes on 2 cores):
  .venv/bin/python bench/same_training.py --rev e733da1 [--steps 100] [--out /tmp/same_training]
The old revision runs from `git archive` with this checkout's Python environment.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def export_rev(rev: str, dest: Path) -> Path:
    blob = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def train(src_root: Path, out: Path, steps: int, env_extra: dict[str, str]) -> None:
    corpus = REPO / "corpora" / "kal"
    argv = [sys.executable, "-m", "voicelane", "train", "--lane", "tts_prod_train", "--data", str(corpus)]
    argv += ["--profile", "same_training", "--base", "voicelane-slt-base-v1", "--out", str(out)]
    argv += ["--consent-statement", str(corpus / "CONSENT.txt"), "--steps", str(steps), "--eval-max", "1"]
    argv += ["--gates", '{"wer_max": 5.0}', "--no-onnx", "--protocol"]
    env = dict(os.environ, PYTHONPATH=str(src_root / "src"), VOICELANE_FEATURE_CACHE="off", **env_extra)
    log = out.with_suffix(".log")
    with open(log, "wb") as fh:
        rc = subprocess.run(argv, cwd=src_root, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"{src_root}: voicelane train exited {rc} (log: {log})")


def cached_items(run: Path) -> dict[str, dict]:
    import numpy as np

    items = {}
    for p in sorted((run / "work" / "cache").glob("*.npz")):
        with np.load(p) as z:
            items[p.name] = {k: z[k] for k in ("ids", "durations", "feats")}
    return items


def compare_inputs(a: dict[str, dict], b: dict[str, dict]) -> dict[str, int]:
    import numpy as np

    out = {"clips": len(a), "clips_only_in_one": len(set(a) ^ set(b))}
    both = sorted(set(a) & set(b))
    for key in ("ids", "feats", "durations"):
        out[f"{key}_identical"] = sum(1 for name in both if np.array_equal(a[name][key], b[name][key]))
    # per token, where both spell the clip with the same tokens: how many durations are exact
    same_ids = [name for name in both if np.array_equal(a[name]["ids"], b[name]["ids"])]
    gaps = np.concatenate([np.abs(a[n]["durations"] - b[n]["durations"]) for n in same_ids] or [np.zeros(0)])
    out["duration_tokens"] = len(gaps)
    out["duration_tokens_exact"] = round(float(np.mean(gaps == 0)), 4) if len(gaps) else None
    out["duration_tokens_within_1_frame"] = round(float(np.mean(gaps <= 1)), 4) if len(gaps) else None
    return out


def compare_weights(a: Path, b: Path) -> dict[str, int]:
    import torch

    ma = torch.load(a, map_location="cpu", weights_only=False)["model"]
    mb = torch.load(b, map_location="cpu", weights_only=False)["model"]
    same = sum(1 for k in ma if k in mb and torch.equal(ma[k], mb[k]))
    return {"tensors": len(ma), "tensors_identical": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", required=True, help="the older revision (e.g. e733da1)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("/tmp/same_training"))
    a = ap.parse_args()
    old_src = export_rev(a.rev, a.out / "old_src")
    runs = {name: a.out / name for name in ("old", "head_own_inputs", "head_old_inputs")}
    for run in runs.values():
        shutil.rmtree(run, ignore_errors=True)
    train(old_src, runs["old"], a.steps, {})
    train(REPO, runs["head_own_inputs"], a.steps, {})
    shutil.copytree(runs["old"] / "work" / "cache", runs["head_old_inputs"] / "work" / "cache")
    train(REPO, runs["head_old_inputs"], a.steps, {})  # its features stage finds every clip cached
    ckpt = Path("work") / "train" / "checkpoint.pt"
    report = {
        "rev": a.rev,
        "steps": a.steps,
        "inputs_head_vs_rev": compare_inputs(cached_items(runs["old"]), cached_items(runs["head_own_inputs"])),
        "weights_head_on_rev_inputs": compare_weights(runs["old"] / ckpt, runs["head_old_inputs"] / ckpt),
        "weights_head_on_own_inputs": compare_weights(runs["old"] / ckpt, runs["head_own_inputs"] / ckpt),
    }
    print(json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Render the tuning (dev) set: 30 sentences in bench/data/kal_dev.txt, kal diphone voice.

Recipe choices (steps, learning rate, weight averaging, selection) are tuned on this set, never on
corpora/kal_heldout: the held-out set stays a fair test of what the demo ships. None of these
sentences occur in corpora/text/*.txt.

    .venv/bin/python bench/render_dev_set.py [--out runs/kal_dev]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import render_corpus as rc  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "kal_dev")
    args = ap.parse_args()
    spec = rc.CorpusSpec(args.out.name, "kal_dev.txt", "kal", "kald", "tuning (dev) set, kal voice")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "text").mkdir()
        shutil.copy(REPO / "bench" / "data" / "kal_dev.txt", root / "text" / "kal_dev.txt")
        versions = {"festival": rc.dpkg_version("festival"), "festvox-kallpc16k": rc.dpkg_version("festvox-kallpc16k")}
        n, secs = rc.render_corpus(spec, root, rc.festival_version(), versions, "text2wave", False)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.move(str(root / spec.name), str(args.out))
    print(f"{args.out}: {n} clips, {secs / 60:.2f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

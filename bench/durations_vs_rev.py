"""Are the training durations of English clips what an older revision's aligner gave?

The multilingual aligner (IPA mapped onto the en-us phone set) replaced the English-only one;
this compares the token ids and per-token frame durations the lane trains on, clip by clip, for
the current tree and an older one (default e733da1, before issue 10):

    git archive e733da1 src | tar -x -C /tmp/old_src
    .venv/bin/python bench/durations_vs_rev.py --old-src /tmp/old_src/src --n 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
import soundfile as sf
from pathlib import Path
from voicelane.engine import align, features, frontend
rows = Path(sys.argv[2]).read_text("utf-8").splitlines()[: int(sys.argv[3])]
out = {}
for row in rows:
    cid, text = row.split("|")[:2]
    wav, _ = sf.read(str(Path(sys.argv[2]).parent / "wavs" / f"{cid}.flac"), dtype="float32")
    utt = frontend.phonemize(text)
    try:
        dur = align.token_durations(wav, utt, features.n_frames(len(wav)))
        out[cid] = {"ids": [int(i) for i in utt.ids], "dur": [int(d) for d in dur]}
    except Exception as exc:
        out[cid] = {"error": str(exc)}
Path(sys.argv[1]).write_text(json.dumps(out))
"""


def durations(src: Path, metadata: Path, n: int, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), VOICELANE_FEATURE_CACHE="off")
    subprocess.run([sys.executable, "-c", CHILD, str(out), str(metadata), str(n)], env=env, check=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-src", type=Path, required=True, help="the src/ folder of the older revision")
    ap.add_argument("--corpus", type=Path, default=REPO / "corpora" / "kal")
    ap.add_argument("--n", type=int, default=60)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = durations(a.old_src, a.corpus / "metadata.csv", a.n, Path(tmp) / "old.json")
        new = durations(REPO / "src", a.corpus / "metadata.csv", a.n, Path(tmp) / "new.json")
    same_ids = same_clip = 0
    diffs = []
    for cid, o in old.items():
        m = new[cid]
        if "error" in o or "error" in m or o["ids"] != m["ids"]:
            continue
        same_ids += 1
        d = np.abs(np.array(o["dur"]) - np.array(m["dur"]))
        same_clip += int(not d.any())
        diffs.append(d)
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    print(f"clips {len(old)}, same token ids {same_ids}, identical durations {same_clip}")
    if len(d):
        print(f"tokens {len(d)}: exact {np.mean(d == 0):.3f}, within 1 frame {np.mean(d <= 1):.3f}")


if __name__ == "__main__":
    main()

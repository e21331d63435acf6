"""How stable is a snapshot-selection rule? Two "machines" score the same snapshots on the
regression prompts with independent word errors (binomial per snapshot, at the snapshot's WER);
how often do they pick the same snapshot? Rules: the raw minimum, the latest within a margin
(selection.py), and a neighbour-smoothed curve (rejected). Curves: the documented demo curve
and a flat one; prompts x1/x2/x3 (more prompts = less noise).

Usage: .venv/bin/python bench/selection_stability.py [--draws 1000]
"""

from __future__ import annotations

import argparse

import numpy as np

from voicelane import selection
from voicelane.evaluate import REGRESSION_PROMPTS, reference_words

CURVES = {"demo (docs/model-choice.md)": [0.175, 0.246, 0.159, 0.119, 0.246], "flat": [0.20, 0.21, 0.19, 0.18, 0.19]}


def smoothed(scores: np.ndarray) -> int:
    s = np.array([np.mean(scores[max(0, i - 1) : i + 2]) for i in range(len(scores))])
    return selection.pick(s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    w0 = np.array([len(reference_words(t)) for t in REGRESSION_PROMPTS])
    rules = {
        "raw minimum": selection.pick,
        f"latest within {selection.MARGIN}": selection.pick_with_margin,
        "smoothed": smoothed,
    }
    print(f"{'curve':28} {'prompts':>8} " + " ".join(f"{r:>18}" for r in rules))
    for cname, curve in CURVES.items():
        p = np.array(curve)
        for reps in (1, 2, 3):
            words = np.tile(w0, reps)
            agree = dict.fromkeys(rules, 0)
            for _ in range(args.draws):
                a, b = (
                    rng.binomial(np.repeat(words[None, :], len(p), 0), p[:, None]).sum(1) / words.sum()
                    for _ in range(2)
                )
                for name, rule in rules.items():
                    agree[name] += rule(a) == rule(b)
            print(f"{cname:28} {'x' + str(reps):>8} " + " ".join(f"{agree[r] / args.draws:>18.3f}" for r in rules))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

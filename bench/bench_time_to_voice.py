"""Time to a voice: `voicelane demo` wall time, where it goes, and what the voice is worth.

Runs ``voicelane demo --out OUT`` (``--runs 2`` runs it twice: the second run shows what the
content-addressed feature cache saves) or reads a finished one (``--from-run OUT --status F``),
and prints: wall and CPU minutes, peak RSS, seconds per lane stage, the snapshot selection
(curve, chosen step, bootstrap agreement), and held-out WER against the real-audio floor, MCD
and median F0 against the real recordings, next to the targets (<= 5 min wall, WER within 3
points of the floor, MCD and F0 no worse than the 1000-step demo: 5.76 dB, -0.5 %).

CPU minutes matter on a shared machine: wall time there says as much about the neighbours as
about the demo. On an otherwise idle 2-core machine, wall ~ CPU minutes / 2 for the parallel
parts (features, training with 2 threads) and CPU minutes for the serial ones (evaluation).

Usage:
  .venv/bin/python bench/bench_time_to_voice.py [--out /tmp/demo] [--runs 1] [--json out.json]
  .venv/bin/python bench/bench_time_to_voice.py --from-run runs/demo --status artifacts/train_status.tts_prod_train.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TODAY = {"wall_min": 10.9, "mcd_db": 5.76, "f0_rel_error": 0.005, "steps": 1000}  # docs/model-choice.md
TARGET_WALL_MIN = 5.0
WER_MARGIN = 0.03


def run_demo(out: Path, extra_env: dict[str, str]) -> dict:
    status = out / "train_status.json"
    env = dict(os.environ, TRAIN_STATUS_PATH=str(status), **extra_env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "voicelane", "demo", "--out", str(out)], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"demo failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_min": round(wall / 60, 2),
        "cpu_min": round(cpu / 60, 2),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 0),
        **read_run(out, status),
    }


def read_run(out: Path, status_path: Path) -> dict:
    status = json.loads(status_path.read_text("utf-8"))
    bundle = next(out.glob("bundles/*/voice_bundle"), None)
    ev = json.loads((bundle / "eval.json").read_text("utf-8")) if bundle else {}
    sel = status.get("snapshot_selection") or []
    return {
        "timings_s": status.get("timings_s"),
        "selection": [r for r in sel if "step" in r],
        "selection_stability": next((r["stability"] for r in sel if "stability" in r), None),
        "selected_step": _selected(bundle),
        "wer": ev.get("wer"),
        "wer_floor": ev.get("wer_floor_real_audio"),
        "content_word_recall": ev.get("content_word_recall"),
        "mcd_db": ev.get("mcd_db"),
        "f0_median_hz": ev.get("f0_median_hz"),
        "f0_median_real_hz": ev.get("f0_median_real_hz"),
        "f0_rel_error": ev.get("f0_median_rel_error"),
        "n_heldout": ev.get("n_heldout"),
        "rtf": ev.get("rtf"),
    }


def _selected(bundle: Path | None) -> int | None:
    """The snapshot the lane bundled (voice_config.json records it)."""
    if bundle is None or not (bundle / "voice_config.json").exists():
        return None
    return json.loads((bundle / "voice_config.json").read_text("utf-8")).get("selected_step")


def verdict(r: dict) -> dict:
    wer_ok = r["wer"] is not None and r["wer_floor"] is not None and r["wer"] <= r["wer_floor"] + WER_MARGIN
    return {
        "wall_le_5_min": r.get("wall_min") is not None and r["wall_min"] <= TARGET_WALL_MIN,
        "wer_within_3_points_of_floor": wer_ok,
        "mcd_no_worse": r["mcd_db"] is not None and r["mcd_db"] <= TODAY["mcd_db"],
        "f0_no_worse": r["f0_rel_error"] is not None and r["f0_rel_error"] <= TODAY["f0_rel_error"],
    }


def show(i: int, r: dict) -> None:
    print(
        f"\nrun {i}: wall {r.get('wall_min')} min, CPU {r.get('cpu_min')} min, peak RSS {r.get('peak_rss_mb')} MB "
        f"(1000-step demo: {TODAY['wall_min']} min on an idle machine)"
    )
    for k, v in (r.get("timings_s") or {}).items():
        print(f"  {k:>12}: {v:8.1f} s")
    if r["selection"]:
        curve = ", ".join(f"{s['step']}: {s['prompts_wer']}" for s in r["selection"])
        print(
            f"  snapshots (prompt WER): {curve}; chosen {r['selected_step']}; "
            f"bootstrap agreement {r['selection_stability']}"
        )
    print(
        f"  held-out WER {r['wer']} (real-audio floor {r['wer_floor']}), content recall {r['content_word_recall']}, "
        f"MCD {r['mcd_db']} dB, median F0 {r['f0_median_hz']} Hz (real {r['f0_median_real_hz']}, "
        f"rel. error {r['f0_rel_error']}), {r['n_heldout']} clips"
    )
    print(f"  targets: {verdict(r)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/voicelane-time-to-voice"))
    ap.add_argument("--runs", type=int, default=1, help="2: the second run shows the feature cache's effect")
    ap.add_argument(
        "--fresh-cache", action="store_true", help="start with an empty feature cache (a first run on a fresh machine)"
    )
    ap.add_argument("--from-run", type=Path, default=None, help="read a finished demo output instead")
    ap.add_argument("--status", type=Path, default=None, help="its train status JSON (with --from-run)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    results = []
    if args.from_run:
        status = args.status or args.from_run / "train_status.json"
        results.append(read_run(args.from_run, status))
    else:
        env = {}
        if args.fresh_cache:
            env["VOICELANE_FEATURE_CACHE"] = str(args.out / "feature-cache")
        for i in range(args.runs):
            out = args.out / f"run{i + 1}"
            results.append(run_demo(out, env))
    out = {
        "machine": {"cpu_count": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "runs": results,
        "verdicts": [verdict(r) for r in results],
    }
    print(json.dumps(out, indent=2))
    for i, r in enumerate(results, 1):
        show(i, r)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark validate_voice_bundle: throughput and memory on a large bundle.

Builds a bundle with one large random model file (default 200 MB) in a temporary folder via
export_bundle, then times validate_voice_bundle over several runs. Memory is reported two
ways: the Python heap peak during validation (tracemalloc) and the growth of the process's
peak RSS (getrusage ru_maxrss) across all runs - both must stay far below the file size,
showing the validator streams in constant memory.

Usage: .venv/bin/python bench/bench_validator.py [--mb 200] [--runs 3] [--dir /tmp]
Numbers are warm-page-cache throughput (the file was just written) on this machine's CPU.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from voicelane.bundle import export_bundle, validate_voice_bundle


def _maxrss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes vs KiB


def _write_random(path: Path, size: int, chunk: int = 1 << 20) -> None:
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="size of the model file in MB (1e6 B)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="parent folder for the temporary bundle")
    args = ap.parse_args(argv)
    size = args.mb * 1_000_000

    with tempfile.TemporaryDirectory(prefix="voicelane-bench-", dir=args.dir) as tmp:
        tmp_path = Path(tmp)
        src = tmp_path / "src"
        src.mkdir()
        _write_random(src / "model.safetensors", size)
        (src / "voice_config.json").write_text('{"sample_rate": 22050}\n')
        (src / "sample.wav").write_bytes(b"RIFF" + os.urandom(44_100))
        (src / "eval.json").write_text('{"wer": 0.1}\n')
        files = {p.name: p for p in src.iterdir()}
        t0 = time.perf_counter()
        export_bundle(tmp_path / "root", "bench_voice", "Bench", files, "2026-01-01T00:00:00Z")
        export_s = time.perf_counter() - t0
        bundle_dir = tmp_path / "root" / "bundles" / "bench_voice" / "voice_bundle"
        total = sum(p.stat().st_size for p in bundle_dir.iterdir())

        rss_before = _maxrss_mib()
        times, heap_peaks = [], []
        for _ in range(args.runs):
            tracemalloc.start()
            t0 = time.perf_counter()
            result = validate_voice_bundle(bundle_dir)
            times.append(time.perf_counter() - t0)
            heap_peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            if not result.ok:
                print(f"validation failed: {result.error}", file=sys.stderr)
                return 1
        rss_after = _maxrss_mib()

    mb = total / 1e6
    print(
        f"bundle: {mb:.1f} MB in {result.files_validated} files "
        f"(export incl. copy+hash+validate+fsync: {export_s:.2f} s)"
    )
    for i, t in enumerate(times, 1):
        print(f"run {i}: {t:.3f} s  {mb / t:.0f} MB/s  heap peak {heap_peaks[i - 1] / 1024:.0f} KiB")
    best = min(times)
    print(f"best: {mb / best:.0f} MB/s  median: {mb / sorted(times)[len(times) // 2]:.0f} MB/s")
    print(
        f"peak RSS before validation {rss_before:.1f} MiB, after {args.runs} runs "
        f"{rss_after:.1f} MiB, delta {rss_after - rss_before:.1f} MiB "
        f"(file size {size / 2**20:.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

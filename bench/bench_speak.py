"""Benchmark ``POST /api/voice/speak``: latency (p50/p99 time to the full WAV of a 10-word
callout) and throughput with 1 and 8 concurrent clients, plus the synthesis real-time factor of
the served voice.

Starts ``voicelane serve`` on a free loopback port over ``--bundle-root`` (or uses ``--url``),
warms it up, then for each concurrency level sends ``--requests`` callouts, every text unique so
each one is really synthesised (the cache is measured separately: ``hit`` rows repeat one text).
RTF is reported twice: as the service sees it (``x-voice-synthesis-ms`` / audio seconds, at
concurrency 1, so no queueing) and in-process (``load_bundle_voice`` + ``synthesize``, no HTTP).

Usage:
  .venv/bin/python bench/bench_speak.py --bundle-root DIR [--profile ID] [--requests 40]
      [--concurrency 1,8] [--workers 1] [--threads 1] [--json out.json]
DIR holds bundles/<profile>/voice_bundle (a production-lane bundle: the service refuses others).
Numbers depend on the machine and on what else runs on it: say which machine made them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SUBJECTS = ["engine two", "fuel pump", "left gear", "cabin pressure", "hydraulic line", "radar contact",
            "right flap", "oil pressure", "main battery", "traffic ahead"]
STATES = ["failing", "degraded", "unstable", "restored", "critical", "nominal"]
ACTIONS = ["check", "monitor", "confirm", "report", "reset"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def callout(i: int) -> str:
    """A unique 10-word callout for each i (up to 2700 distinct ones)."""
    subj = SUBJECTS[i % len(SUBJECTS)]
    state = STATES[(i // len(SUBJECTS)) % len(STATES)]
    act = ACTIONS[(i // (len(SUBJECTS) * len(STATES))) % len(ACTIONS)]
    n = NUMBERS[(i // (len(SUBJECTS) * len(STATES) * len(ACTIONS))) % len(NUMBERS)]
    words = f"Caution, {subj} {state} on sector {n}, {act} it now.".split()
    if len(words) != 10:  # one-word subjects: pad to ten words
        words.insert(2, "the")
    return " ".join(words[:10])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1)))))
    return s[k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, tmp: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELANE_")}
    env.update({
        "VOICELANE_DATA_DIR": str(tmp / "var"),
        "VOICELANE_BUNDLE_ROOTS": os.pathsep.join(str(Path(r).resolve()) for r in args.bundle_root),
        "VOICELANE_SPEAK_WORKERS": str(args.workers), "VOICELANE_SPEAK_THREADS": str(args.threads),
        "VOICELANE_SPEAK_QUEUE_SIZE": "256", "VOICELANE_SPEAK_TIMEOUT_S": "120",
        "VOICELANE_RATE_LIMIT_PER_MIN": "0", "VOICELANE_MISSION_BUDGET_CHARS": "0",
        "VOICELANE_TENANT_DAILY_BUDGET_CHARS": "0", "VOICELANE_VOICE_RESCAN_S": "0",
        "VOICELANE_LOG_LEVEL": "WARNING",
    })
    if args.profile:
        env["VOICELANE_DEFAULT_PROFILE"] = args.profile
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "voicelane", "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited:\n" + (tmp / "server.log").read_text()[-4000:])
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server not ready (no voice loaded?):\n" + (tmp / "server.log").read_text()[-4000:])


def run_level(url: str, profile: str | None, concurrency: int, n: int, start_index: int, repeat_text: str | None = None
              ) -> dict:
    import httpx

    lat: list[float] = []
    syn_ms: list[float] = []
    audio_s: list[float] = []
    caches: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=180) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                text = repeat_text or callout(start_index + i)
                body = {"text": text, "priority": "info", "mode": "callout"}
                if profile:
                    body["voiceProfile"] = profile
                t0 = time.perf_counter()
                r = c.post("/api/voice/speak", json=body)
                wav = r.content  # the full body has arrived
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code != 200 or not wav.startswith(b"RIFF"):
                        errors.append(f"{r.status_code} {r.text[:200]}")
                        continue
                    lat.append(dt)
                    syn_ms.append(float(r.headers.get("x-voice-synthesis-ms", "nan")))
                    audio_s.append(float(r.headers.get("x-voice-audio-seconds", "nan")))
                    caches.append(r.headers.get("x-voice-cache", "?"))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = len(lat)
    return {
        "concurrency": concurrency, "requests": n, "ok": ok, "errors": errors[:5], "n_errors": len(errors),
        "p50_ms": round(pct(lat, 50) * 1000, 1), "p99_ms": round(pct(lat, 99) * 1000, 1),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
        "max_ms": round(max(lat) * 1000, 1) if lat else None,
        "throughput_rps": round(ok / wall, 2) if wall else None,
        "audio_s_per_wall_s": round(sum(audio_s) / wall, 2) if wall else None,
        "mean_audio_s": round(statistics.fmean(audio_s), 3) if audio_s else None,
        "service_rtf": round(sum(syn_ms) / 1000.0 / max(sum(audio_s), 1e-9), 4) if syn_ms else None,
        "cache": {k: caches.count(k) for k in set(caches)},
    }


def inprocess_rtf(bundle_dir: Path, threads: int, n: int = 10) -> dict:
    from voicelane.speak import load_bundle_voice

    voice, res = load_bundle_voice(bundle_dir, "auto", threads)
    voice.synthesize(callout(9999))  # warm-up
    comp = aud = 0.0
    for i in range(n):
        s = voice.synthesize(callout(5000 + i))
        comp += s.compute_s
        aud += s.seconds
    return {"runtime": type(voice).__name__, "rtf": round(comp / max(aud, 1e-9), 4),
            "mean_audio_s": round(aud / n, 3), "mean_compute_ms": round(comp / n * 1000, 1), "n": n}


def find_bundle(roots: list[str], profile: str | None) -> Path | None:
    for r in roots:
        base = Path(r) / "bundles"
        names = [profile] if profile else sorted(p.name for p in base.glob("*") if p.is_dir())
        for name in names:
            d = base / name / "voice_bundle"
            if (d / "manifest.json").is_file():
                return d
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle-root", action="append", default=[],
                    help="folder holding bundles/<profile>/voice_bundle (repeatable)")
    ap.add_argument("--profile", default=None, help="voice profile to speak with (default: the service's default)")
    ap.add_argument("--url", default=None, help="bench an already running service instead of starting one")
    ap.add_argument("--requests", type=int, default=40, help="requests per concurrency level")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--workers", type=int, default=1, help="the service's synthesis workers")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per synthesis")
    ap.add_argument("--hits", type=int, default=20, help="cache-hit requests (same text)")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args(argv)
    if not args.url and not args.bundle_root:
        ap.error("--bundle-root (or --url) is required")

    import httpx

    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="voicelane-bench-speak-") as tmp:
        proc = None
        url = args.url
        if url is None:
            proc, url = start_server(args, Path(tmp))
        try:
            profiles = httpx.get(url + "/api/voice/profiles", timeout=30).json()
            profile = args.profile or profiles.get("defaultProfile")
            served = {p["profileId"]: p for p in profiles.get("profiles", [])}
            if profile not in served:
                raise SystemExit(f"profile {profile!r} is not served; served: {sorted(served)}; "
                                 f"refused: {profiles.get('refused')}")
            run_level(url, profile, 1, 3, 100000)  # warm-up
            results = []
            base = 0
            for c in levels:
                results.append(run_level(url, profile, c, args.requests, base))
                base += args.requests
            hit = run_level(url, profile, 1, args.hits, 0, repeat_text=callout(0)) if args.hits else None
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    bundle = find_bundle(args.bundle_root, profile) if args.bundle_root else None
    rtf = inprocess_rtf(bundle, args.threads) if bundle else None
    out = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                       "platform": platform.platform(), "load_avg": os.getloadavg()},
           "profile": profile, "voice": {k: served[profile].get(k) for k in ("runtime", "lane", "engine")},
           "workers": args.workers, "threads": args.threads, "callout_example": callout(0),
           "levels": results, "cache_hit": hit, "inprocess_synthesis": rtf}
    print(json.dumps(out, indent=2))
    print(f"\nprofile {profile} ({served[profile].get('runtime')}), {args.workers} synthesis worker(s), "
          f"{args.threads} torch thread(s), load avg {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    print(f"{'clients':>8} {'ok':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'svc RTF':>8} cache")
    for r in results + ([hit] if hit else []):
        print(f"{r['concurrency']:>8} {r['ok']:>5} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['throughput_rps']:>7} "
              f"{str(r['service_rtf']):>8} {r['cache']}")
    if rtf:
        print(f"in-process synthesis RTF {rtf['rtf']} ({rtf['runtime']}, mean {rtf['mean_compute_ms']} ms "
              f"for {rtf['mean_audio_s']} s of audio)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(r["n_errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark speaking: voicelane against Festival (slt HTS) and espeak-ng on the same callouts.

For each system, in one run: p50/p99 latency of a 10-word callout with one client, time to
first audio, real-time factor, and throughput (with p50/p99) at 1/2/4/8 concurrent clients.

* voicelane: ``POST /api/voice/speak`` on a ``voicelane serve`` started here (``--workers``
  synthesis workers; more than one runs them in child processes). Time to first audio is the
  time to the first PCM bytes of a ``stream: true`` reply. Every text is unique, so each request
  is really synthesised (cache hits are measured separately). Also an in-process profile of one
  callout: front end, acoustic model, WORLD.
* Festival: ``text2wave`` with ``voice_cmu_us_slt_arctic_hts``, one process per callout (how it
  is used from a program); it cannot stream, so its first audio is its whole latency.
* espeak-ng: ``espeak-ng -v en-us --stdout``, one process per callout; first audio is the time
  to its first bytes on stdout.

Usage:
  .venv/bin/python bench/bench_speak.py --bundle-root DIR [--profile ID] [--requests 24]
      [--concurrency 1,2,4,8] [--workers N] [--peers festival,espeak] [--json out.json]
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

SUBJECTS = [
    "engine two",
    "fuel pump",
    "left gear",
    "cabin pressure",
    "hydraulic line",
    "radar contact",
    "right flap",
    "oil pressure",
    "main battery",
    "traffic ahead",
]
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


def start_server(args, tmp: Path, src: Path | None = None, workers: int | None = None) -> tuple[subprocess.Popen, str]:
    """`voicelane serve` on a free port; ``src``: run another checkout's ``src`` (a baseline)."""
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELANE_")}
    if src is not None:
        env["PYTHONPATH"] = str(Path(src).resolve() / "src")
        tmp = tmp / "baseline"
    workers = workers or args.workers
    env.update(
        {
            "VOICELANE_DATA_DIR": str(tmp / "var"),
            "VOICELANE_BUNDLE_ROOTS": os.pathsep.join(str(Path(r).resolve()) for r in args.bundle_root),
            "VOICELANE_SPEAK_WORKERS": str(workers),
            "VOICELANE_SPEAK_THREADS": str(args.threads),
            "VOICELANE_SPEAK_QUEUE_SIZE": "256",
            "VOICELANE_SPEAK_TIMEOUT_S": "120",
            "VOICELANE_RATE_LIMIT_PER_MIN": "0",
            "VOICELANE_MISSION_BUDGET_CHARS": "0",
            "VOICELANE_TENANT_DAILY_BUDGET_CHARS": "0",
            "VOICELANE_VOICE_RESCAN_S": "0",
            "VOICELANE_LOG_LEVEL": "WARNING",
        }
    )
    if args.profile:
        env["VOICELANE_DEFAULT_PROFILE"] = args.profile
    tmp.mkdir(parents=True, exist_ok=True)
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicelane", "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
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


class Result(dict):
    """latency_s, first_s (time to first audio), audio_s; or error."""


def server_cpu_s(pid: int):
    """Cumulative CPU seconds (user + system) of a process and all its children, now."""
    import psutil

    def probe() -> float:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return float("nan")
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    return probe


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children (the peers' processes)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_concurrent(fn, concurrency: int, n: int, start_index: int, cpu_probe=None) -> dict:
    """Run fn(i) for n distinct i on `concurrency` threads; latency/throughput summary. With
    ``cpu_probe`` also the CPU time the system spent per request: on a shared machine wall-clock
    throughput says more about the neighbours than about the system, CPU time much less so."""
    results: list[Result] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                r = fn(start_index + i)
            except Exception as exc:  # noqa: BLE001 - counted, shown
                with lock:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    cpu0 = cpu_probe() if cpu_probe else None
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = (cpu_probe() - cpu0) if cpu_probe else None
    lat = [r["latency_s"] for r in results]
    first = [r["first_s"] for r in results if r.get("first_s") is not None]
    audio = sum(r["audio_s"] for r in results)
    compute = sum(r.get("compute_s", r["latency_s"]) for r in results)
    return {
        "concurrency": concurrency,
        "requests": n,
        "ok": len(results),
        "n_errors": len(errors),
        "errors": errors[:3],
        "p50_ms": round(pct(lat, 50) * 1000, 1),
        "p99_ms": round(pct(lat, 99) * 1000, 1),
        "first_audio_p50_ms": round(pct(first, 50) * 1000, 1) if first else None,
        "first_audio_p99_ms": round(pct(first, 99) * 1000, 1) if first else None,
        "throughput_rps": round(len(results) / wall, 2) if wall else None,
        "mean_audio_s": round(audio / max(len(results), 1), 3),
        "rtf": round(compute / max(audio, 1e-9), 4),
        "cpu_ms_per_request": round(cpu / max(len(results), 1) * 1000, 1) if cpu is not None else None,
    }


def voicelane_oneshot(url: str, profile: str, repeat_text: str | None = None):
    import httpx

    local = threading.local()

    def fn(i: int) -> Result:
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=url, timeout=180)
        body = {"text": repeat_text or callout(i), "priority": "info", "mode": "callout", "voiceProfile": profile}
        t0 = time.perf_counter()
        r = local.c.post("/api/voice/speak", json=body)
        dt = time.perf_counter() - t0
        if r.status_code != 200 or not r.content.startswith(b"RIFF"):
            raise RuntimeError(f"{r.status_code} {r.text[:200]}")
        syn = float(r.headers.get("x-voice-synthesis-ms", "nan")) / 1000.0
        return Result(
            latency_s=dt,
            first_s=None,
            audio_s=float(r.headers["x-voice-audio-seconds"]),
            compute_s=syn,
            cache=r.headers.get("x-voice-cache"),
        )

    return fn


def voicelane_stream(url: str, profile: str):
    import httpx

    local = threading.local()

    def fn(i: int) -> Result:
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=url, timeout=180)
        body = {"text": callout(i), "priority": "info", "mode": "callout", "voiceProfile": profile, "stream": True}
        t0 = time.perf_counter()
        first = None
        n = 0
        with local.c.stream("POST", "/api/voice/speak", json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code} {r.read()[:200]!r}")
            for part in r.iter_raw():
                n += len(part)
                if first is None and n > 44:  # past the WAV header: audio
                    first = time.perf_counter() - t0
        dt = time.perf_counter() - t0
        return Result(latency_s=dt, first_s=first, audio_s=(n - 44) / 2 / 16000)

    return fn


def _wav_seconds(data: bytes) -> float:
    import io

    import soundfile as sf

    info = sf.info(io.BytesIO(data))
    return info.frames / info.samplerate


def festival(tmp: Path):
    def fn(i: int) -> Result:
        txt = tmp / f"fest_{i}.txt"
        out = tmp / f"fest_{i}.wav"
        txt.write_text(callout(i) + "\n")
        t0 = time.perf_counter()
        subprocess.run(
            ["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", str(txt), "-o", str(out)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        dt = time.perf_counter() - t0
        sec = _wav_seconds(out.read_bytes())
        out.unlink()
        txt.unlink()
        return Result(latency_s=dt, first_s=dt, audio_s=sec)

    return fn


def espeak():
    def fn(i: int) -> Result:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            ["espeak-ng", "-v", "en-us", "--stdout", callout(i)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        head = p.stdout.read1(65536)
        first = time.perf_counter() - t0
        rest = p.stdout.read()
        p.wait(60)
        dt = time.perf_counter() - t0
        data = head + rest
        rate = int.from_bytes(data[24:28], "little") or 22050
        return Result(latency_s=dt, first_s=first, audio_s=(len(data) - 44) / 2 / rate)

    return fn


def inprocess_profile(bundle_dir: Path, threads: int, n: int = 10) -> dict:
    """One callout through the three stages, timed separately (medians), plus whole-call RTF."""
    from voicelane.engine import features, frontend
    from voicelane.speak import load_bundle_voice

    voice, _ = load_bundle_voice(bundle_dir, "auto", threads)
    voice.synthesize(callout(9999))  # warm-up
    fe, am, ws, cpu, comp, aud = [], [], [], [[], [], []], 0.0, 0.0
    clock = time.thread_time  # CPU time of this thread: what the stage costs, whatever else runs
    for i in range(n):
        text = callout(5000 + i)
        t0, c0 = time.perf_counter(), clock()
        utts = frontend.phonemize_sentences(text, voice.language)
        t1, c1 = time.perf_counter(), clock()
        frames = [voice.frames_for(u) for u in utts]
        t2, c2 = time.perf_counter(), clock()
        wavs = [features.synthesize(f, voice.postfilter) for f in frames]
        t3, c3 = time.perf_counter(), clock()
        fe.append(t1 - t0)
        am.append(t2 - t1)
        ws.append(t3 - t2)
        for k, d in enumerate((c1 - c0, c2 - c1, c3 - c2)):
            cpu[k].append(d)
        comp += t3 - t0
        aud += sum(len(w) for w in wavs) / features.SAMPLE_RATE
    med = lambda xs: round(statistics.median(xs) * 1000, 1)  # noqa: E731
    return {
        "runtime": type(voice).__name__,
        "front_end_ms": med(fe),
        "acoustic_model_ms": med(am),
        "world_ms": med(ws),
        "cpu_ms": {"front_end": med(cpu[0]), "acoustic_model": med(cpu[1]), "world": med(cpu[2])},
        "world_fft_size": features.SYNTH_FFT_SIZE,
        "rtf": round(comp / max(aud, 1e-9), 4),
        "mean_audio_s": round(aud / n, 3),
        "n": n,
    }


def find_bundle(roots: list[str], profile: str | None) -> Path | None:
    for r in roots:
        base = Path(r) / "bundles"
        names = [profile] if profile else sorted(p.name for p in base.glob("*") if p.is_dir())
        for name in names:
            d = base / name / "voice_bundle"
            if (d / "manifest.json").is_file():
                return d
    return None


def bench_system(name: str, fn, levels: list[int], n: int, stream_fn=None, cpu_probe=None) -> dict:
    fn(10**6)  # warm-up (page cache, lazy imports, child processes)
    base = 0
    out: dict = {"system": name, "levels": []}
    for c in levels:
        out["levels"].append(run_concurrent(fn, c, n, base, cpu_probe))
        base += n
    if stream_fn is not None:
        stream_fn(10**6 + 1)
        out["stream"] = run_concurrent(stream_fn, 1, n, 500000)
    return out


def summary_row(r: dict) -> dict:
    one = next((lv for lv in r["levels"] if lv["concurrency"] == 1), r["levels"][0])
    first = (r.get("stream") or one)["first_audio_p50_ms"] or one["p50_ms"]
    cpu = [lv["cpu_ms_per_request"] for lv in r["levels"] if lv.get("cpu_ms_per_request")]
    cpu_ms = round(statistics.median(cpu), 1) if cpu else None
    cores = os.cpu_count() or 1
    row = {
        "system": r["system"],
        "p50_ms": one["p50_ms"],
        "p99_ms": one["p99_ms"],
        "first_audio_ms": first,
        "rtf": one["rtf"],
        "mean_audio_s": one["mean_audio_s"],
        "cpu_ms": cpu_ms,
        "idle_capacity_rps": round(cores * 1000.0 / cpu_ms, 1) if cpu_ms else None,
    }
    for lv in r["levels"]:
        row[f"rps@{lv['concurrency']}"] = lv["throughput_rps"]
        row[f"p50/p99@{lv['concurrency']}"] = f"{lv['p50_ms']:.0f}/{lv['p99_ms']:.0f}"
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--bundle-root", action="append", default=[], help="folder holding bundles/<profile>/voice_bundle (repeatable)"
    )
    ap.add_argument("--profile", default=None, help="voice profile to speak with (default: the service's default)")
    ap.add_argument("--url", default=None, help="bench an already running service instead of starting one")
    ap.add_argument("--requests", type=int, default=24, help="requests per concurrency level")
    ap.add_argument("--peer-requests", type=int, default=12, help="requests per level for Festival/espeak-ng")
    ap.add_argument("--concurrency", default="1,2,4,8")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the service's synthesis workers")
    ap.add_argument("--threads", type=int, default=1, help="threads per synthesis")
    ap.add_argument("--peers", default="festival,espeak", help="comma list: festival, espeak (empty: none)")
    ap.add_argument("--hits", type=int, default=20, help="cache-hit requests (same text)")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also bench a service run from this checkout (e.g. `git archive OLD src | tar -x -C DIR`), "
        "back to back with this one, on the same callouts",
    )
    ap.add_argument("--baseline-workers", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args(argv)
    if not args.url and not args.bundle_root:
        ap.error("--bundle-root (or --url) is required")

    import httpx

    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    systems: list[dict] = []
    peers_missing: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="voicelane-bench-speak-") as tmp:
        if args.baseline_src is not None and args.bundle_root:
            systems.append(bench_baseline(args, Path(tmp), levels))
        proc = None
        url = args.url
        if url is None:
            proc, url = start_server(args, Path(tmp))
        try:
            profiles = httpx.get(url + "/api/voice/profiles", timeout=30).json()
            profile = args.profile or profiles.get("defaultProfile")
            served = {p["profileId"]: p for p in profiles.get("profiles", [])}
            if profile not in served:
                raise SystemExit(
                    f"profile {profile!r} is not served; served: {sorted(served)}; refused: {profiles.get('refused')}"
                )
            for w in range(max(args.workers, 2)):  # every worker (child process) warm
                voicelane_oneshot(url, profile)(10**6 + 10 + w)
            probe = server_cpu_s(proc.pid) if proc is not None else None
            systems.append(
                bench_system(
                    f"voicelane ({args.workers} worker(s))",
                    voicelane_oneshot(url, profile),
                    levels,
                    args.requests,
                    voicelane_stream(url, profile),
                    probe,
                )
            )
            hit = (
                run_concurrent(voicelane_oneshot(url, profile, repeat_text=callout(0)), 1, args.hits, 0)
                if args.hits
                else None
            )
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
        peers = [p.strip() for p in args.peers.split(",") if p.strip()]
        if "festival" in peers:
            if shutil_which("text2wave"):
                systems.append(
                    bench_system(
                        "Festival text2wave (slt HTS)",
                        festival(Path(tmp)),
                        levels,
                        args.peer_requests,
                        cpu_probe=children_cpu_s,
                    )
                )
            else:
                peers_missing["festival"] = "text2wave not on PATH (apt-get install festival festvox-us-slt-hts)"
        if "espeak" in peers:
            if shutil_which("espeak-ng"):
                systems.append(
                    bench_system("espeak-ng en-us", espeak(), levels, args.peer_requests, cpu_probe=children_cpu_s)
                )
            else:
                peers_missing["espeak"] = "espeak-ng not on PATH (apt-get install espeak-ng)"
    bundle = find_bundle(args.bundle_root, profile) if args.bundle_root else None
    prof = inprocess_profile(bundle, args.threads) if bundle else None
    rows = [summary_row(r) for r in systems]
    out = {
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_at_end": os.getloadavg(),
        },
        "profile": profile,
        "voice": {k: served[profile].get(k) for k in ("runtime", "lane", "engine")},
        "workers": args.workers,
        "threads": args.threads,
        "callout_example": callout(0),
        "systems": systems,
        "summary": rows,
        "cache_hit": hit,
        "inprocess_profile": prof,
        "peers_missing": peers_missing,
    }
    print(json.dumps(out, indent=2))
    print(f"\n10-word callouts (e.g. {callout(0)!r}); load avg {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    cols = (
        ["p50_ms", "p99_ms", "first_audio_ms", "rtf", "cpu_ms", "idle_capacity_rps"]
        + [f"rps@{c}" for c in levels]
        + [f"p50/p99@{levels[-1]}"]
    )
    print(f"{'system':30} " + " ".join(f"{c:>10}" for c in cols))
    for r in rows:
        print(f"{r['system'][:30]:30} " + " ".join(f"{str(r.get(c)):>10}" for c in cols))
    print(
        "cpu_ms: CPU time per callout (server and its children, or the peer's process); idle_capacity_rps: "
        "CPUs x 1000 / cpu_ms, the throughput this CPU cost allows on an otherwise idle machine"
    )
    if hit:
        print(f"voicelane cache hit: p50 {hit['p50_ms']} ms, {hit['throughput_rps']} req/s")
    if prof:
        print(
            f"in-process, one callout ({prof['runtime']}, {prof['mean_audio_s']} s of audio): front end "
            f"{prof['front_end_ms']} ms, acoustic model {prof['acoustic_model_ms']} ms, WORLD (fft "
            f"{prof['world_fft_size']}) {prof['world_ms']} ms; RTF {prof['rtf']}; CPU ms {prof['cpu_ms']}"
        )
    for k, v in peers_missing.items():
        print(f"peer {k} not measured: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(lv["n_errors"] == 0 for r in systems for lv in r["levels"]) else 1


def bench_baseline(args, tmp: Path, levels: list[int]) -> dict:
    import httpx

    proc, url = start_server(args, tmp, src=args.baseline_src, workers=args.baseline_workers)
    try:
        profiles = httpx.get(url + "/api/voice/profiles", timeout=30).json()
        profile = args.profile or profiles.get("defaultProfile")
        for w in range(max(args.baseline_workers, 2)):
            voicelane_oneshot(url, profile)(10**6 + 20 + w)
        return bench_system(
            f"baseline {args.baseline_src.name} ({args.baseline_workers} worker(s))",
            voicelane_oneshot(url, profile),
            levels,
            args.requests,
            cpu_probe=server_cpu_s(proc.pid),
        )
    finally:
        proc.terminate()
        proc.wait(30)


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak: drive a real `voicelane serve` on loopback for N minutes at a bounded rate and watch it.

Load (all at once, each on its own thread, each at its own bounded rate):
  * speak: `POST /api/voice/speak` at --speak-rate requests/s; a mix of unique callouts (real
    synthesis), repeats (cache hits), suppressed requests and bad requests (400s);
  * jobs: every --job-every seconds a dataset check job on a small corpus, its SSE stream read to
    the end, the job list and the job record read back;
  * reads: /health, /metrics, /api/voice/profiles once a second.
Every --sample-every seconds: RSS of the service (and of its job children), open file
descriptors, threads, speak queue depth, and counts of answers by status class. At the end: RSS
growth (first sample after warm-up vs last; also from the first sample, while the bounded caches
fill), fd growth, 5xx count, and the table over time.

Usage:
  .venv/bin/python bench/soak.py --bundle-root DIR [--minutes 30] [--speak-rate 2] [--job-every 60]
      [--data DIR] [--json out.json]
DIR holds bundles/<profile>/voice_bundle (a production bundle). --data defaults to 12 clips of the
embedded kal corpus. Speed is never asserted: this prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
WORDS = ["engine", "fuel", "gear", "cabin", "radar", "flap", "oil", "battery", "traffic", "sector"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int) -> dict:
    def rss(p: int) -> int:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        fds = threads = -1
    children = (
        [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if Path(f"/proc/{pid}/task/{pid}/children").exists()
        else []
    )
    return {
        "rss": rss(pid),
        "children_rss": sum(rss(c) for c in children),
        "children": len(children),
        "fds": fds,
        "threads": threads,
    }


class Soak:
    def __init__(self, a: argparse.Namespace, url: str, token: str):
        self.a = a
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.status = Counter()  # (route, status class) -> n
        self.codes = Counter()  # error code -> n
        self.errors: list[str] = []
        self.n = 0

    def record(self, route: str, r: httpx.Response | None, exc: Exception | None = None) -> None:
        with self.lock:
            if r is None:
                self.status[(route, "conn_error")] += 1
                if len(self.errors) < 20:
                    self.errors.append(f"{route}: {type(exc).__name__}: {exc}"[:200])
                return
            self.status[(route, f"{r.status_code // 100}xx")] += 1
            if r.status_code >= 400 and "json" in r.headers.get("content-type", ""):
                try:
                    self.codes[r.json().get("error", "?")] += 1
                except ValueError:
                    pass
            if r.status_code >= 500 and len(self.errors) < 20:
                self.errors.append(f"{route}: {r.status_code} {r.text[:150]}")

    def paced(self, rate: float, fn) -> None:
        period = 1.0 / rate
        nxt = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self.stop.is_set():
                try:
                    fn(c)
                except httpx.HTTPError as exc:
                    self.record(fn.__name__, None, exc)
                nxt += period
                self.stop.wait(max(0.0, nxt - time.monotonic()))

    def speak(self, c: httpx.Client) -> None:
        self.n += 1
        i = self.n
        kind = i % 10
        if kind < 5:  # unique: real synthesis
            text = f"Caution, {WORDS[i % 10]} {WORDS[(i // 10) % 10]} number {i % 997}, check it now."
            body = {"text": text, "missionId": f"m{i % 50}", "priority": "warn"}
        elif kind < 8:  # repeats: cache hits
            body = {"text": f"Attention, {WORDS[i % 3]} nominal.", "priority": "info"}
        elif kind == 8:  # suppressed by context
            body = {"text": "Quiet please.", "priority": "info", "contextTier": "tier0"}
        else:  # bad requests
            body = {"text": "1" * 600} if i % 20 == 9 else {"text": ""}
        self.record("speak", c.post("/api/voice/speak", json=body))

    def reads(self, c: httpx.Client) -> None:
        for path in ("/health", "/metrics", "/api/voice/profiles"):
            self.record("reads", c.get(path))

    def jobs(self, c: httpx.Client) -> None:
        r = c.post("/api/train/dataset", json={"mode": "check", "dataPath": str(self.a.data)}, headers=self.headers)
        self.record("jobs", r)
        if r.status_code != 200:
            return
        job_id = r.json()["jobId"]
        with c.stream("GET", f"/api/train/job/{job_id}/events", headers=self.headers, timeout=600) as s:
            ended = any(line == "event: end" for line in s.iter_lines())
        self.record("jobs", s)
        if not ended:
            self.record("jobs", None, RuntimeError("SSE stream ended without its end event"))
        self.record("jobs", c.get(f"/api/train/job/{job_id}", headers=self.headers))
        self.record("jobs", c.get("/api/train/jobs", params={"limit": 5}, headers=self.headers))

    def sample(self, pid: int, t0: float) -> dict:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            try:
                q = c.get("/health").json().get("speakQueue", {})
            except (httpx.HTTPError, ValueError):
                q = {}
        with self.lock:
            by_class = Counter()
            for (_, cls), n in self.status.items():
                by_class[cls] += n
        return {
            "t_s": round(time.monotonic() - t0, 1),
            **proc_stats(pid),
            "queued": q.get("queued"),
            "running": q.get("running"),
            "oldestWaitMs": q.get("oldestWaitMs"),
            **dict(by_class),
        }


def start_service(a: argparse.Namespace, work: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELANE_")}
    env.update(
        VOICELANE_DATA_DIR=str(work / "var"),
        VOICELANE_BUNDLE_ROOTS=str(a.bundle_root),
        VOICELANE_DATA_ROOTS=str(a.data.parent),
        VOICELANE_VOICE_RESCAN_S="0",
        VOICELANE_TRAIN_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    # the soak drives more callouts than a mission would: rate limit and budgets off (0 = off)
    limits = ("RATE_LIMIT_PER_MIN", "MISSION_BUDGET_CHARS", "TENANT_DAILY_BUDGET_CHARS")
    env.update({f"VOICELANE_{name}": "0" for name in limits})
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicelane", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=str(work),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited: {(work / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url, (work / "var" / "api_token").read_text().strip()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the service did not become ready (is there a production bundle under --bundle-root?)")


def default_data(work: Path) -> Path:
    src = REPO / "corpora" / "kal"
    dest = work / "data" / "kal12"
    (dest / "wavs").mkdir(parents=True)
    rows = (src / "metadata.csv").read_text("utf-8").splitlines()[:12]
    for row in rows:
        clip = row.split("|", 1)[0]
        shutil.copyfile(src / "wavs" / f"{clip}.flac", dest / "wavs" / f"{clip}.flac")
    (dest / "metadata.csv").write_text("\n".join(rows) + "\n", "utf-8")
    return dest


def summarise(samples: list[dict], warmup_s: float) -> dict:
    steady = [s for s in samples if s["t_s"] >= warmup_s] or samples
    first, last = steady[0], steady[-1]
    return {
        "rss_first_mb": round(first["rss"] / 2**20, 1),
        "rss_last_mb": round(last["rss"] / 2**20, 1),
        "rss_max_mb": round(max(s["rss"] for s in steady) / 2**20, 1),
        "rss_growth_pct": round(100.0 * (last["rss"] - first["rss"]) / max(first["rss"], 1), 2),
        # from the very first sample, bounded caches filling included
        "rss_start_mb": round(samples[0]["rss"] / 2**20, 1),
        "rss_growth_from_start_pct": round(100.0 * (last["rss"] - samples[0]["rss"]) / max(samples[0]["rss"], 1), 2),
        "fds_first": first["fds"],
        "fds_last": last["fds"],
        "fds_max": max(s["fds"] for s in steady),
        "threads_first": first["threads"],
        "threads_last": last["threads"],
        "queued_max": max((s["queued"] or 0) for s in samples),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle-root", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--speak-rate", type=float, default=2.0, help="speak requests per second")
    p.add_argument("--job-every", type=float, default=60.0, help="seconds between dataset check jobs")
    p.add_argument("--sample-every", type=float, default=30.0)
    p.add_argument(
        "--warmup",
        type=float,
        default=300.0,
        help="seconds before the RSS baseline (the response cache fills up meanwhile)",
    )
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="voicelane-soak-"))
    a.data = a.data.resolve() if a.data else default_data(work)
    proc, url, token = start_service(a, work)
    soak = Soak(a, url, token)
    threads = [
        threading.Thread(target=soak.paced, args=(a.speak_rate, soak.speak), daemon=True),
        threading.Thread(target=soak.paced, args=(1.0, soak.reads), daemon=True),
        threading.Thread(target=soak.paced, args=(1.0 / a.job_every, soak.jobs), daemon=True),
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    samples = []
    print(
        f"soak: {a.minutes:g} min against {url} (pid {proc.pid}), speak {a.speak_rate:g}/s, "
        f"a dataset job every {a.job_every:g} s; work dir {work}",
        flush=True,
    )
    print(
        f"{'t_s':>7} {'rss_MB':>7} {'kids_MB':>7} {'fds':>4} {'thr':>4} {'queued':>6} {'2xx':>6} {'4xx':>5} "
        f"{'5xx':>4} {'conn':>4}",
        flush=True,
    )
    try:
        while time.monotonic() - t0 < a.minutes * 60 and proc.poll() is None:
            time.sleep(min(a.sample_every, max(0.0, a.minutes * 60 - (time.monotonic() - t0))))
            s = soak.sample(proc.pid, t0)
            samples.append(s)
            print(
                f"{s['t_s']:>7} {s['rss'] / 2**20:>7.1f} {s['children_rss'] / 2**20:>7.1f} {s['fds']:>4} "
                f"{s['threads']:>4} {s['queued'] or 0:>6} {s.get('2xx', 0):>6} {s.get('4xx', 0):>5} "
                f"{s.get('5xx', 0):>4} {s.get('conn_error', 0):>4}",
                flush=True,
            )
    finally:
        soak.stop.set()
        for t in threads:
            t.join(60)
        alive = proc.poll() is None
        proc.terminate()
        proc.wait(60)
    summary = summarise(samples, a.warmup) if samples else {}
    with soak.lock:
        result = {
            "minutes": a.minutes,
            "speak_rate": a.speak_rate,
            "job_every_s": a.job_every,
            "service_alive_at_end": alive,
            "summary": summary,
            "answers": {f"{k[0]} {k[1]}": n for k, n in sorted(soak.status.items())},
            "error_codes": dict(sorted(soak.codes.items())),
            "server_errors": soak.errors,
            "samples": samples,
        }
    print(
        json.dumps(
            {k: result[k] for k in ("service_alive_at_end", "summary", "answers", "error_codes", "server_errors")},
            indent=1,
        ),
        flush=True,
    )
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

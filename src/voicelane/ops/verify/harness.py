"""What verify measures by running things: a real service (``python -m voicelane serve`` in a child
process, spoken to over HTTP with httpx, never imported), the tiny lane twice, the test suite's
collection, the README test command, and synthesis speed with the bundle."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from voicelane.fsutil import sha256_text
from voicelane.ops.common import REPO_ROOT
from voicelane.ops.verify.evidence import Evidence, parse_junit
from voicelane.ops.verify.pack import CALLOUT_TEXT, ROUTE_REPLAY, RTF_TEXT, TESTS
from voicelane.runner.local import stop_group

MAX_BODY = 1 << 20


# --- the service -------------------------------------------------------------------------------


class LocalService:
    """``voicelane serve`` on a free loopback port with a throw-away data dir and its own token."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.url = ""
        self.token = secrets.token_hex(16)
        self.error: str | None = None

    @classmethod
    def start(
        cls, python: str, log: Callable[[str], None], timeout: float = 120.0, bundle_root: Path | None = None
    ) -> "LocalService":
        """``bundle_root``: a folder holding ``bundles/<profile>/voice_bundle`` to serve (else none)."""
        import httpx

        svc = cls()
        svc.tmp = tempfile.TemporaryDirectory(prefix="voicelane-verify-svc-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        svc.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELANE_") and k != "TRAIN_STATUS_PATH"}
        env.update(
            VOICELANE_DATA_DIR=svc.tmp.name,
            VOICELANE_BUNDLE_ROOTS=str(bundle_root or svc.tmp.name),
            VOICELANE_VOICE_RESCAN_S="0",
            VOICELANE_API_TOKEN=svc.token,
            TRAIN_STATUS_PATH=str(Path(svc.tmp.name) / "train_status.json"),
        )
        log(f"starting the service on {svc.url}")
        svc.proc = subprocess.Popen(
            [python, "-m", "voicelane", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=svc.tmp.name,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.proc.poll() is not None:
                tail = (svc.proc.stderr.read() if svc.proc.stderr else b"").decode("utf-8", "replace")
                svc.error = f"the service exited with {svc.proc.returncode}: {tail.strip().splitlines()[-1:]}"
                return svc
            try:
                if httpx.get(svc.url + "/health/live", timeout=2).status_code == 200:
                    return svc
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        svc.error = "the service did not answer within the timeout"
        return svc

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, 20)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        if self.tmp is not None:
            self.tmp.cleanup()


def replay_routes(
    url: str,
    token: str | None = None,
    timeout: float = 30.0,
    shapes: list[tuple[str, str, dict | None, dict[int, str | None]]] | None = None,
) -> list[dict[str, Any]]:
    """Send each old request shape; ok when the status is one it accepts with the documented body."""
    import httpx

    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    out = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers) as client:
        for method, path, body, accepted in shapes or ROUTE_REPLAY:
            try:
                resp = client.request(method, path, json=body) if body is not None else client.request(method, path)
            except httpx.HTTPError as exc:
                out.append(
                    {"method": method, "path": path, "status": None, "error": f"unreachable: {exc}"[:200], "ok": False}
                )
                continue
            out.append({"method": method, "path": path, **_judge(resp.status_code, resp.content[:MAX_BODY], accepted)})
    return out


def _judge(status: int, raw: bytes, accepted: dict[int, str | None]) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    err = payload.get("error") if isinstance(payload, dict) else None
    want = accepted.get(status, "__reject__")
    ok = isinstance(payload, (dict, list)) and (
        (want is None and 200 <= status < 300)
        or (want not in (None, "__reject__") and err == want and isinstance(payload.get("message"), str))
    )
    return {"status": status, "error": err, "ok": bool(ok)}


def compat_checks(url: str, token: str | None, profile: str | None) -> list[dict[str, Any]]:
    """The old request shapes of ``voicelane.compat_shapes`` (§1-§2; none that start jobs), when present."""
    try:
        from voicelane import compat_shapes
    except ImportError:
        return []
    shapes = {s["id"]: s for s in compat_shapes.SHAPES}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out = []
    for r in compat_shapes.replay(url, profile=profile, headers=headers, include_jobs=False):
        if r["ok"] is None:  # needs a voice (none served) or starts a job
            continue
        shape = shapes[r["id"]]
        out.append(
            {
                "method": shape["method"],
                "path": shape["path"],
                "shape": r["id"],
                "status": None,
                "error": "; ".join(r["problems"])[:300] or None,
                "ok": bool(r["ok"]),
            }
        )
    return out


def _servable_root(ev: Evidence) -> tuple[Path | None, str | None]:
    """The registry-shaped folder holding the bundle under verification, when it can be served."""
    b = Path(ev.bundle) if ev.bundle is not None else None
    man = ev.manifest or {}
    if (
        b is None
        or not ev.bundle_ok
        or b.name != "voice_bundle"
        or b.parent.parent.name != "bundles"
        or man.get("lane") != "production"
        or man.get("promotable") is not True
    ):
        return None, None
    return b.parent.parent.parent, str(man.get("voice_profile_id"))


def measure_routes(ev: Evidence) -> dict[str, Any]:
    url, token, server = ev.opts.url, ev.opts.token, None
    root, profile = _servable_root(ev)
    try:
        if url is None:
            server = LocalService.start(ev.opts.python, ev.opts.log, bundle_root=root)
            if server.error:
                return {"evaluated": False, "reason": f"no running service: {server.error} (pass --url)"}
            url, token = server.url, server.token
        checks = replay_routes(url, token) + compat_checks(url, token, profile if server else None)
    finally:
        if server is not None:
            server.stop()
    return {
        "evaluated": True,
        "url": url,
        "service": "started here" if server else "given",
        "shapes": len(checks),
        "checks": checks,
    }


# --- determinism -------------------------------------------------------------------------------


def cut_quick_corpus(dest: Path, n: int = 6) -> Path | None:
    """The first n clips of an embedded corpus (kal, else slt) as a tiny LJSpeech folder."""
    import shutil

    for name in ("kal", "slt"):
        src = REPO_ROOT / "corpora" / name
        meta = src / "metadata.csv"
        if not meta.is_file():
            continue
        rows = [r for r in meta.read_text("utf-8").splitlines() if r.strip()][:n]
        (dest / "wavs").mkdir(parents=True, exist_ok=True)
        for row in rows:
            cid = row.split("|", 1)[0]
            found = next((p for p in (src / "wavs").glob(f"{cid}.*")), None)
            if found is None:
                break
            shutil.copyfile(found, dest / "wavs" / found.name)
        else:
            (dest / "metadata.csv").write_text("\n".join(rows) + "\n", "utf-8")
            return dest
    return None


def measure_determinism(ev: Evidence) -> dict[str, Any]:
    o = ev.opts
    if o.skip_determinism:
        return {"evaluated": False, "reason": "not evaluated (--skip-determinism)"}
    with tempfile.TemporaryDirectory(prefix="voicelane-verify-det-") as tmp:
        tmpd = Path(tmp)
        data = o.determinism_data or cut_quick_corpus(tmpd / "data")
        if data is None:
            return {"evaluated": False, "reason": "no dataset for the determinism runs (--determinism-data)"}
        consent = tmpd / "consent.txt"
        consent.write_text("speaker_name: verify\nasserted_by: voicelane verify\nI consent.\n", "utf-8")
        runs = [_lane_run(o, data, consent, tmpd, i) for i in (1, 2)]
    digests = [r["sha256"] for r in runs]
    detail = {f"run{i}_stderr_tail": r["stderr_tail"] for i, r in enumerate(runs, 1) if r["rc"] != 0}
    return {
        "evaluated": True,
        "runs": 2,
        "stdout_sha256": digests,
        "exit_codes": [r["rc"] for r in runs],
        "bytes": [r["bytes"] for r in runs],
        "lines": [r["lines"] for r in runs],
        "identical": digests[0] == digests[1] and digests[0] is not None,
        "steps": o.determinism_steps,
        "preset": "tiny",
        "detail": detail,
    }


def _lane_run(o, data: Path, consent: Path, tmpd: Path, i: int) -> dict[str, Any]:
    argv = [
        o.python,
        "-m",
        "voicelane",
        "train",
        "--lane",
        "tts_prod_train",
        "--data",
        str(data),
        "--profile",
        "verify_det",
        "--preset",
        "tiny",
        "--out",
        str(tmpd / f"run{i}"),
        "--steps",
        str(o.determinism_steps),
        "--min-minutes",
        "0",
        "--eval-max",
        "1",
        "--no-onnx",
        "--consent-statement",
        str(consent),
        "--gates",
        '{"wer_max": 100.0, "mcd_db_max": 1000.0}',
        "--protocol",
    ]
    env = dict(
        os.environ,
        TRAIN_STATUS_PATH=str(tmpd / f"status{i}.json"),
        PYTHONUNBUFFERED="1",
        SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", "315532800"),
    )
    o.log(f"determinism run {i}/2 (tiny preset, {o.determinism_steps} steps)")
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=1800, check=False)
    return {
        "rc": proc.returncode,
        "bytes": len(proc.stdout),
        "lines": proc.stdout.count(b"\n"),
        "sha256": sha256_text(proc.stdout.decode("utf-8", "replace")) if proc.stdout else None,
        "stderr_tail": proc.stderr.decode("utf-8", "replace").splitlines()[-15:],
    }


# --- tests -------------------------------------------------------------------------------------


def collect_default_suite(python: str, timeout: float = 600) -> dict[str, Any]:
    """How many tests the README test command's default suite has in this checkout (collection only)."""
    proc = subprocess.run(
        [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    m = re.search(r"(\d+)(?:/\d+)? tests? collected", tail[0])
    if proc.returncode != 0 or m is None:
        return {"tests": None, "error": (proc.stdout + proc.stderr)[-300:]}
    return {"tests": int(m.group(1)), "summary": tail[0]}


def run_readme_tests(ev: Evidence, junit: Path) -> Path:
    """``bash scripts/test.sh`` (the README command) with its junit written to ``junit``."""
    env = dict(os.environ, **{TESTS["junit_env"]: str(junit)})
    ev.opts.log(f"running the tests: {TESTS['command']}")
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "test.sh")],
        cwd=str(REPO_ROOT),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=6 * 3600,
        check=False,
    )
    return junit


# --- speech ------------------------------------------------------------------------------------


def measure_speech(ev: Evidence) -> dict[str, Any] | None:
    if not ev.bundle_ok or ev.bundle is None:
        return None
    try:
        from voicelane.speak import load_bundle_voice

        voice, _ = load_bundle_voice(ev.bundle, "auto", threads=1)
        voice.synthesize(CALLOUT_TEXT)  # warm-up
        t0 = time.perf_counter()
        syn = voice.synthesize(CALLOUT_TEXT)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        long = voice.synthesize(RTF_TEXT)
        wall = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - SOFT: report, never crash the gate
        return {"error": f"{type(exc).__name__}: {exc}"}
    seconds = float(getattr(long, "seconds", 0.0) or 0.0)
    return {
        "latency_ms": round(latency_ms, 1),
        "rtf": round(wall / seconds, 4) if seconds > 0 else None,
        "audio_s": round(seconds, 3),
        "callout_audio_s": round(float(getattr(syn, "seconds", 0.0)), 3),
        "engine": type(voice).__name__,
    }


def measure(ev: Evidence) -> Evidence:
    """Run everything verify measures (in a fixed order) and attach it to the evidence."""
    ev.opts.log("checking protocol_deterministic")
    ev.determinism = measure_determinism(ev)
    ev.opts.log("checking routes_compatible")
    ev.routes = measure_routes(ev)
    if ev.junit is not None:
        ev.opts.log("collecting the default test suite")
        ev.tests_expected = collect_default_suite(ev.opts.python)
    ev.opts.log("measuring rtf and latency")
    ev.speech = measure_speech(ev)
    return ev


def attach_junit(ev: Evidence, junit: Path) -> None:
    ev.junit = parse_junit(junit)
    if ev.bind("junit", f"junit/{junit.name}", junit).sha256 is None:
        ev.junit["readable"] = False

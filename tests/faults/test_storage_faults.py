"""Issue 11 fault suite, storage: a corrupt job database, a full disk during bundle export and
during a job-database write (RLIMIT_FSIZE in a child; SIGXFSZ ignored so writes fail with EFBIG
the way they fail with ENOSPC on a full disk)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import svc_free_port
from voicelane import bundle as B
from voicelane.service.core.jobs import JobStore

TESTS = Path(__file__).resolve().parents[1]


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


# ------------------------------------------------------------------------------------------------
# the job database


def test_corrupt_database_is_moved_aside_and_the_service_starts(tmp_path, svc_start_server):
    var = tmp_path / "var"
    var.mkdir()
    garbage = os.urandom(16384)
    (var / "voicelane.db").write_bytes(garbage)
    srv = svc_start_server(tmp_path, VOICELANE_BUNDLE_ROOTS=str(tmp_path / "none"), VOICELANE_DATA_ROOTS=str(tmp_path))
    h = srv.client.get("/health").json()
    moved = Path(h["jobDatabase"]["movedTo"])
    assert h["jobDatabase"]["error"] == "job_database_corrupt" and moved.read_bytes() == garbage
    assert "job_database_corrupt" in srv.log()
    assert srv.client.get("/api/train/jobs").json()["jobs"] == []
    srv.restart()  # the fresh database is fine: no second move, no crash loop
    assert "jobDatabase" not in srv.client.get("/health").json()
    assert sorted(p.name for p in var.glob("voicelane.db.corrupt-*")) == [moved.name]


def test_truncated_database_is_moved_aside(tmp_path):
    from test_orphans import _running_job

    path = tmp_path / "jobs.db"
    store = JobStore(path)
    for i in range(40):
        _running_job(store, tmp_path, f"job{i}", None)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    store = JobStore(path)
    assert store.recovered_from and Path(store.recovered_from).stat().st_size == size // 2
    assert store.list()[1] == 0
    store.close()


def test_disk_full_while_writing_the_job_database(tmp_path):
    """The service keeps answering: a write that cannot land is 507 disk_full, never a 500, and
    the records already written stay readable."""
    var = tmp_path / "var"
    port = svc_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICELANE_")}
    env.update(
        VOICELANE_DATA_DIR=str(var),
        VOICELANE_BUNDLE_ROOTS=str(tmp_path / "none"),
        VOICELANE_DATA_ROOTS=str(tmp_path),
        VOICELANE_VOICE_RESCAN_S="0",
    )
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicelane", "serve", "--port", str(port)],
        env=env,
        cwd=str(tmp_path),
        stdout=log,
        stderr=log,
        preexec_fn=_limit_file_size(96 * 1024),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        token = (var / "api_token").read_text().strip()
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        codes = []
        for _ in range(400):
            r = c.post("/api/train/status/reset")
            codes.append(r.status_code)
            if r.status_code != 200:
                break
        assert codes[-1] == 507, codes[-5:]
        assert r.json()["error"] == "disk_full" and 500 not in codes
        assert c.get("/health/live").status_code == 200 and proc.poll() is None
        assert c.get("/api/train/jobs").status_code == 200  # reads still work
        c.close()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# ------------------------------------------------------------------------------------------------
# bundle export


EXPORT_CHILD = """
import resource, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from voicelane import bundle as B
from voicelane.errors import VoicelaneError
from test_bundle import make_sources
root = Path({root!r})
(root / "new").mkdir()
files = make_sources(root / "new", {{"model.safetensors": b"\\x01" * (2 << 20)}})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    B.export_bundle(root / "root", "full_voice", "Full", files, "2026-02-02T00:00:00Z")
except VoicelaneError as exc:
    print(exc.code)
    sys.exit(2)
print("exported")
"""


def test_disk_full_during_export_keeps_the_old_bundle(tmp_path):
    from test_bundle import make_sources

    (tmp_path / "old").mkdir()
    B.export_bundle(tmp_path / "root", "full_voice", "Full", make_sources(tmp_path / "old"), "2026-01-01T00:00:00Z")
    final = B.bundle_dir_for(tmp_path / "root", "full_voice")
    before = {p.name: p.read_bytes() for p in final.iterdir()}
    res = subprocess.run(
        [sys.executable, "-c", EXPORT_CHILD.format(tests=str(TESTS), root=str(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (res.returncode, res.stdout.strip()) == (2, "disk_full"), res.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in final.iterdir()} == before
    assert B.validate_voice_bundle(final).ok
    assert sorted(p.name for p in final.parent.iterdir()) == [".export.lock", "voice_bundle"]  # no staging left

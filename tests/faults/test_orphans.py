"""Issue 11 #6: a job's process dies with the service that started it, and a restarted service
reconciles each record left `running` with what the run left on disk (real SQLite, real files)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voicelane import bundle as B
from voicelane.service.core.jobs import JobManager, JobStore


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return _gone(pid)


def test_child_dies_with_its_parent(tmp_path):
    """A `python -m voicelane` started by the local runner stops within seconds of a kill -9 of
    the process that started it (the lifeline), and so does what it started."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from voicelane.runner.local import LocalRunner\n"
        "h = LocalRunner().start([sys.executable, '-m', 'voicelane', 'serve', '--port', '0'], "
        "dict(__import__('os').environ, VOICELANE_DATA_DIR=sys.argv[1]), Path(sys.argv[1]))\n"
        "print(h.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        time.sleep(3.0)  # the child is up and watching
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _wait_gone(child, 20), "the child outlived its parent"
    finally:
        parent.kill()
        parent.wait(10)


def test_grandchildren_do_not_inherit_the_lifeline(tmp_path):
    from voicelane import lifeline

    env = {lifeline.ENV: str(os.getppid())}
    assert lifeline.follow_parent(env) and lifeline.ENV not in env
    assert not lifeline.follow_parent({lifeline.ENV: "1"})  # started by someone else: no watcher
    assert not lifeline.follow_parent({})


# ------------------------------------------------------------------------------------------------
# reconcile: records left `running` by a dead service


def _bundle(root: Path) -> Path:
    from test_bundle import make_sources

    root.mkdir(parents=True)
    res = B.export_bundle(root, "rec_voice", "Rec", make_sources(root), "2026-01-01T00:00:00Z")
    assert res.ok
    return B.bundle_dir_for(root, "rec_voice")


def _running_job(store: JobStore, tmp_path: Path, name: str, status: dict | None) -> str:
    job_dir = tmp_path / name
    job_dir.mkdir()
    status_path = job_dir / "train_status.json"
    if status is not None:
        status_path.write_text(json.dumps(status))
    store.insert(
        {
            "id": name,
            "type": "tts_prod_train",
            "lane": "production",
            "kind": "train",
            "state": "running",
            "message": "Step 1/9",
            "progress_current": 1,
            "progress_total": 9,
            "metadata": {},
            "artifacts": [],
            "warnings": [],
            "logs": [],
            "options": {},
            "argv": [],
            "job_dir": str(job_dir),
            "out_dir": str(job_dir),
            "status_path": str(status_path),
            "log_path": None,
            "pid": None,
            "runner_ref": None,
            "exit_code": None,
            "error": None,
            "cancel_requested": 0,
            "created_at": "2026-01-01T00:00:00Z",
            "started_at": "2026-01-01T00:00:00Z",
            "ended_at": None,
            "seq": 0,
        }
    )
    return name


def test_restart_reconciles_orphans_with_their_status_and_bundle(tmp_path):
    good = _bundle(tmp_path / "good")
    bad = _bundle(tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"tampered")
    base = {"schema": "train_status/1", "job_type": "tts_prod_train"}
    store = JobStore(tmp_path / "jobs.db")
    ids = {
        "completed_valid": _running_job(
            store, tmp_path, "completed_valid", base | {"state": "completed", "bundle": str(good)}
        ),
        "completed_bad_bundle": _running_job(
            store, tmp_path, "completed_bad_bundle", base | {"state": "completed", "bundle": str(bad)}
        ),
        "own_error": _running_job(
            store,
            tmp_path,
            "own_error",
            base
            | {"state": "error", "error": {"code": "dataset_too_small", "message": "too small", "details": {"m": 1}}},
        ),
        "cancelled_by_lifeline": _running_job(
            store,
            tmp_path,
            "cancelled_by_lifeline",
            base | {"state": "cancelled", "error": {"code": "cancelled", "message": "SIGTERM"}},
        ),
        "still_running": _running_job(store, tmp_path, "still_running", base | {"state": "running"}),
        "no_status": _running_job(store, tmp_path, "no_status", None),
    }
    mgr = JobManager(store, None, tmp_path / "var")
    assert sorted(mgr.recover()) == sorted(ids)
    got = {k: store.get(k) for k in ids}
    assert got["completed_valid"].state == "done" and got["completed_valid"].error is None
    assert "bundle validates" in got["completed_valid"].metadata["reconciled"]
    assert got["completed_bad_bundle"].state == "error"
    assert got["completed_bad_bundle"].error["code"] == "orphaned"
    assert got["completed_bad_bundle"].error["details"]["bundleError"]["code"] == "bytes_mismatch"
    assert got["own_error"].error["code"] == "dataset_too_small"
    assert got["own_error"].error["details"] == {"m": 1}
    for k in ("cancelled_by_lifeline", "still_running", "no_status"):
        assert got[k].state == "error" and got[k].error["code"] == "orphaned", got[k]
        status = json.loads((tmp_path / k / "train_status.json").read_text())
        assert status["state"] == "error" and status["error"]["code"] == "orphaned"
    # a bundle that failed validation keeps nothing that looks completed
    assert json.loads((tmp_path / "completed_bad_bundle" / "train_status.json").read_text())["state"] == "error"
    store.close()


@pytest.mark.parametrize("n", [1])
def test_recover_is_idempotent(tmp_path, n):
    store = JobStore(tmp_path / "jobs.db")
    _running_job(store, tmp_path, "j", None)
    mgr = JobManager(store, None, tmp_path / "var")
    assert mgr.recover() == ["j"]
    assert mgr.recover() == []
    store.close()


def test_scoring_workers_exit_when_their_process_is_killed(tmp_path):
    """Evaluation's scoring processes (evaluate._scored) leave with a kill -9 of the lane."""
    script = tmp_path / "scorer.py"
    script.write_text(
        "import time\n"
        "import numpy as np\n"
        "from voicelane import evaluate as ev\n"
        "if __name__ == '__main__':  # spawned workers import this file again\n"
        "    job = ev._Job(np.zeros(1600, np.float32), 16000, ['a'], None)\n"
        "    list(ev._scored([job] * 4, 2))\n"
        "    print(' '.join(str(p) for p in ev._POOL[2]._processes), flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and not any(_gone(w) for w in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert all(_wait_gone(w, 10) for w in workers), "a scoring process outlived the lane"
    finally:
        proc.kill()
        proc.wait(10)

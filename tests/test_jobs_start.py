"""The job manager starts runners outside its lock: a slow start (a Ray upload takes seconds)
blocks neither the other routes nor a cancel, and a job cancelled while it starts stays cancelled."""

from __future__ import annotations

import sys
import threading
import time

from helpers import mini_corpus
from voicelane.runner import LocalRunner
from voicelane.service.core.jobs import JobManager, JobStore


class HeldRunner(LocalRunner):
    """The real local runner, held at the door until the test lets it start."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.started: list = []

    def start(self, argv, env, cwd=None):
        self.entered.set()
        assert self.release.wait(60)
        handle = super().start(argv, env, cwd)
        self.started.append(handle)
        return handle


def _manager(tmp_path, runner):
    return JobManager(
        JobStore(tmp_path / "jobs.db"),
        runner,
        tmp_path / "var",
        cancel_grace_s=5,
        child_env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


def _submit_check_job(jm, tmp_path):
    """`voicelane dataset check` as a job, submitted from another thread (submit starts it)."""
    data = mini_corpus(tmp_path / "data", n=2)
    t = threading.Thread(
        target=jm.submit,
        args=("dataset", "data", "dataset", {"mode": "check"}),
        kwargs={"argv_tail": ["dataset", "check", str(data), "--json"]},
        daemon=True,
    )
    t.start()
    return t


def test_a_slow_runner_start_holds_no_lock_and_a_cancel_while_starting_sticks(tmp_path):
    runner = HeldRunner()
    jm = _manager(tmp_path, runner)
    submitting = _submit_check_job(jm, tmp_path)
    assert runner.entered.wait(30)
    t0 = time.monotonic()
    assert jm.lock.acquire(timeout=2), "the manager lock is held while a runner starts"
    jm.lock.release()
    (row,), total = jm.store.list()
    assert total == 1 and row.state == "pending" and row.id in jm.starting
    cancelled = jm.cancel(row.id, wait_s=0)
    assert cancelled.state == "cancelled" and time.monotonic() - t0 < 5
    runner.release.set()
    submitting.join(30)
    handle = runner.started[0]
    assert handle.wait(30) is not None, "the process started for a cancelled job was not stopped"
    assert row.id not in jm.active and not jm.starting
    assert jm.store.get(row.id).state == "cancelled"
    assert sys.executable in handle.proc.args

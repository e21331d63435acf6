"""A child process dies with the process that started it (issue 11 #6).

A runner that starts ``python -m voicelane ...`` sets ``VOICELANE_PARENT_PID`` to its own pid;
``follow_parent()`` (called first thing by ``python -m voicelane``) then watches ``getppid()``
and, once the parent is gone (a ``kill -9`` of the service or the orchestrator), sends SIGTERM to
its own process group (the lane and what it started: torchrun workers) and SIGKILL after a
grace period. The lane's SIGTERM handling writes a ``cancelled`` status, so a restarted service
finds a final, non-completed status, never a run that finished unsupervised.

Why not ``prctl(PR_SET_PDEATHSIG)``: Linux sends it when the *thread* that forked the child
exits, and the service starts jobs from short-lived worker threads; a job would die when its
launching thread did. Polling the parent pid has no such trap; it costs one syscall per 0.5 s.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import MutableMapping

ENV = "VOICELANE_PARENT_PID"
POLL_S = 0.5
GRACE_S = 10.0


def follow_parent(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Start the watcher when this process was started by a voicelane runner; the variable is
    removed so that grandchildren (whose parent is this process) do not inherit it."""
    value = environ.pop(ENV, "")
    if not value.isdigit():
        return False
    parent = int(value)
    if os.getppid() != parent:  # not started by that runner directly (or it is already gone): leave it
        return False
    threading.Thread(target=_watch, args=(parent,), name="voicelane-lifeline", daemon=True).start()
    return True


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    try:
        print(f"[voicelane] the parent process {parent} is gone: stopping", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr was a pipe to the parent: nobody is reading any more
        pass
    _signal_own_group(signal.SIGTERM)
    time.sleep(GRACE_S)
    _signal_own_group(signal.SIGKILL)


def _signal_own_group(sig: int) -> None:
    try:
        if os.getpgrp() == os.getpid():  # a session/group leader (the runners start it that way)
            os.killpg(os.getpgrp(), sig)
        else:
            os.kill(os.getpid(), sig)
    except OSError:
        pass


def exit_with(parent: int) -> None:
    """For pool workers (evaluation's scoring processes): exit at once when `parent` is gone.
    A ProcessPoolExecutor worker holds both ends of its task queue, so it never sees EOF and
    would wait forever after a ``kill -9`` of the process that made the pool."""
    threading.Thread(target=_exit_when_gone, args=(parent,), name="voicelane-pool-lifeline", daemon=True).start()


def _exit_when_gone(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os._exit(1)

"""Runners: how a lane process is started and read. Below both the service and ops (they use it;
it never imports them).

- ``local``   - ``LocalRunner``: a child process on this machine in its own process group.
- ``ray``     - ``RayRunner``: the same run as a Ray job (JobSubmissionClient), logs streamed
  through the line parser, the bundle fetched back, validated, then swapped in.
- ``ray_job`` - what runs on the Ray cluster (wraps the lane, ships the output back).

Every runner has one shape::

    runner.start(argv, env, cwd) -> handle     # argv: [python, "-m", "voicelane", "run", spec.json]
    handle.pid, handle.lines(), handle.wait(timeout), handle.terminate(grace_s)
"""

from __future__ import annotations

from voicelane.runner.local import (
    READ_CHUNK,
    LocalHandle,
    LocalRunner,
    RunHandle,
    Runner,
    decoded_chunks,
    forward_signals,
    kill_orphan,
    pid_alive,
    proc_cmdline,
)

__all__ = [
    "READ_CHUNK",
    "LocalHandle",
    "LocalRunner",
    "RunHandle",
    "Runner",
    "decoded_chunks",
    "forward_signals",
    "kill_orphan",
    "make_runner",
    "pid_alive",
    "proc_cmdline",
]


def make_runner(kind: str) -> Runner:
    """``local`` or ``ray`` (the service's VOICELANE_RUNNER)."""
    if kind == "local":
        return LocalRunner()
    if kind == "ray":
        from voicelane.runner.ray import RayRunner

        return RayRunner()
    raise RuntimeError(f"unknown runner {kind!r}")

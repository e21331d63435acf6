"""Run a lane process and read its lines. The shape is the one the HTTP service's job runner uses
(``voicelane.service.core.runner``), so the orchestrator and the service can swap runners::

    runner.start(argv: list[str], env: dict[str, str], cwd: Path) -> handle
    handle.pid                      int | None (None when the process is not local)
    handle.lines()                  iterator of ("stdout" | "stderr", line without "\\n")
    handle.wait(timeout=None)       exit status, or None while still running
    handle.terminate(grace_s)       SIGTERM (the lane records `cancelled`), SIGKILL after grace_s

``LocalRunner`` runs the process here; ``voicelane.ops.ray_backend.RayRunner`` runs it as a Ray
job; ``voicelane.ops.docker_lane.DockerRunner`` inside a container.
"""

from __future__ import annotations

import codecs
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path
from typing import Iterator

from voicelane.protocol import iter_lines

READ_CHUNK = 65536


def _decoded(read) -> Iterator[str]:
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := read():
        yield dec.decode(chunk)
    tail = dec.decode(b"", final=True)
    if tail:
        yield tail


class LocalHandle:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid: int | None = proc.pid
        self._q: queue.Queue = queue.Queue(maxsize=10000)
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream) -> None:
        fd = stream.fileno()
        try:
            for line in iter_lines(_decoded(lambda: os.read(fd, READ_CHUNK))):
                self._q.put((name, line.rstrip("\r")))
        except OSError:
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass
            self._q.put((name, None))

    def lines(self) -> Iterator[tuple[str, str]]:
        open_streams = 2
        while open_streams:
            name, line = self._q.get()
            if line is None:
                open_streams -= 1
                continue
            yield name, line

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, grace_s: float = 10.0) -> None:
        self._signal(signal.SIGTERM)
        if self.wait(grace_s) is None:
            self._signal(signal.SIGKILL)
            self.wait(10)


class LocalRunner:
    """A child process on this machine in its own session; argv is a list, never a shell string."""

    def start(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> LocalHandle:
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise TypeError("argv must be a list of strings")
        proc = subprocess.Popen(argv, env=env, cwd=str(cwd) if cwd else None, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                close_fds=True, shell=False)
        return LocalHandle(proc)

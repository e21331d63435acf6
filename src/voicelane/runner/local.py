"""How a lane process is run and read, shared by the HTTP service and the orchestrator. The
local runner starts ``sys.executable -m voicelane run spec.json`` as a child process in its own
session (process group); ``voicelane.runner.ray.RayRunner`` has the same shape.

Interface (what every runner provides)::

    runner.start(argv: list[str], env: dict[str, str], cwd: Path) -> handle
    handle.pid -> int | None            # for the record (None when not a local process)
    handle.lines() -> Iterator[tuple[str, str]]
                                        # ("stdout" | "stderr", one real line without "\\n"),
                                        # until both streams end
    handle.wait(timeout: float | None = None) -> int | None
                                        # exit status (negative = killed by that signal),
                                        # None when still running after timeout
    handle.terminate(grace_s: float) -> None
                                        # SIGTERM (the lane writes status `cancelled` and exits
                                        # 130), then SIGKILL after grace_s

Lines are split with ``voicelane.protocol.iter_lines`` after an incremental UTF-8 decode, so a
read chunk that ends inside a line (or inside a multi-byte character) never splits it.
"""

from __future__ import annotations

import codecs
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, Protocol

from voicelane import lifeline
from voicelane.protocol import iter_lines

READ_CHUNK = 65536
MAX_LINE_BYTES = 1 << 20  # a line longer than this is cut (a child that never prints "\n")


class RunHandle(Protocol):
    pid: int | None

    def lines(self) -> Iterator[tuple[str, str]]: ...

    def wait(self, timeout: float | None = None) -> int | None: ...

    def terminate(self, grace_s: float) -> None: ...


class Runner(Protocol):
    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> RunHandle: ...


def decoded_chunks(read, limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Read raw chunks with ``read()`` until b"", decoding UTF-8 incrementally (errors replaced).
    Inserts a newline when a line grows past ``limit`` bytes, so memory stays bounded."""
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    since_nl = 0
    while True:
        chunk = read()
        if not chunk:
            break
        text = dec.decode(chunk)
        if "\n" in text:
            since_nl = len(text) - text.rfind("\n") - 1
        else:
            since_nl += len(text)
        yield text
        if since_nl > limit:
            since_nl = 0
            yield "\n"
    tail = dec.decode(b"", final=True)
    if tail:
        yield tail


class LocalHandle:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid = proc.pid
        self._q: queue.Queue = queue.Queue(maxsize=10000)
        self._threads = [
            threading.Thread(
                target=self._read, args=(name, stream), daemon=True, name=f"voicelane-job-{proc.pid}-{name}"
            )
            for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
        ]
        for t in self._threads:
            t.start()

    def _read(self, name: str, stream) -> None:
        fd = stream.fileno()
        try:
            for line in iter_lines(decoded_chunks(lambda: os.read(fd, READ_CHUNK))):
                self._q.put((name, line))
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

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, grace_s: float) -> None:
        self._signal_group(signal.SIGTERM)
        if self.wait(grace_s) is None:
            self._signal_group(signal.SIGKILL)
            self.wait(10)
        else:
            # the lane exited; make sure nothing it started survives in its group
            self._signal_group(signal.SIGKILL)


class LocalRunner:
    """Child processes on this machine, each in a new session (its own process group)."""

    def start(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> LocalHandle:
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise TypeError("argv must be a list of strings (never a shell string)")
        env = {**env, lifeline.ENV: str(os.getpid())}  # the child dies with us (voicelane.lifeline)
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            shell=False,
        )
        return LocalHandle(proc)


def stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """Stop a child started in a new session: SIGTERM its process group, SIGKILL the group if the
    child outlives ``grace_s``. Nothing to do when it has already exited."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


def kill_orphan(pid: int, marker: str, timeout: float = 5.0) -> bool:
    """SIGKILL the process group of ``pid`` if that process's command line still contains
    ``marker`` (the job's own output folder), so we never kill a recycled pid. True when killed."""
    cmd = proc_cmdline(pid)
    if not cmd or not any(marker in part for part in cmd):
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc_cmdline(pid):  # a zombie has an empty cmdline
        time.sleep(0.05)
    return True


def forward_signals(handle: LocalHandle) -> None:
    """Forward SIGTERM/SIGINT to the child's process group (docker stop, ray job stop): the lane
    then records `cancelled` itself and exits 130."""

    def forward(signum, frame):
        try:
            os.killpg(handle.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError, TypeError):
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

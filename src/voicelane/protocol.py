"""The job line protocol (SPEC §3): one emitter, one parser, shared by every lane and reader.

    PROGRESS <current> <total>
    STATS <json>            compact, keys sorted
    ARTIFACT <path>         POSIX path relative to the output root

Machine lines go to stdout; nothing wall-clock may appear in them.

The parser also accepts what the lanes this one replaced printed: extra ``KEY VALUE`` pairs after
``PROGRESS <current> <total>`` (``PROGRESS 5 100 LOSS 0.3`` -> ``extras={"loss": 0.3}``) and a bare
``DONE`` line (kind ``DONE``). The emitter never writes either.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Iterable, Iterator, TextIO

from voicelane.fsutil import canonical_json


class Emitter:
    """Writes protocol lines, enforcing the ordering rules of §3."""

    def __init__(self, stream: TextIO | None = None, total: int | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.total = total
        self.current = 0
        self.reader_gone = False

    def set_total(self, total: int) -> None:
        if self.total is not None and self.total != total:
            raise ValueError("PROGRESS total is fixed before the run starts")
        if total < 0:
            raise ValueError("total must be >= 0")
        self.total = total

    def _write(self, line: str) -> None:
        if "\n" in line or "\r" in line:
            raise ValueError("protocol lines are single lines")
        if self.reader_gone:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            # The reader went away (e.g. the service was killed). The run goes on: its status
            # JSON and artifacts are the record; whoever restarts the service decides its fate.
            self.reader_gone = True

    def progress(self, current: int) -> None:
        if self.total is None:
            raise ValueError("set_total before emitting PROGRESS")
        if not 0 <= current <= self.total:
            raise ValueError(f"PROGRESS {current} outside 0..{self.total}")
        self.current = current
        self._write(f"PROGRESS {int(current)} {int(self.total)}")

    def stats(self, obj: dict[str, Any]) -> None:
        if not isinstance(obj, dict):
            raise TypeError("STATS carries one JSON object")
        self._write("STATS " + canonical_json(obj))

    def artifact(self, relpath: str) -> None:
        p = PurePosixPath(relpath)
        if p.is_absolute() or ".." in p.parts or not relpath:
            raise ValueError(f"ARTIFACT path must be relative to the output root: {relpath!r}")
        self._write(f"ARTIFACT {p.as_posix()}")


@dataclass
class Event:
    kind: str  # PROGRESS | STATS | ARTIFACT | OTHER
    raw: str
    current: int | None = None
    total: int | None = None
    stats: dict[str, Any] | None = None
    path: str | None = None
    warning: str | None = None
    extras: dict[str, Any] | None = None  # old PROGRESS extras: PROGRESS 5 100 LOSS 0.3


def _progress_extras(tokens: list[str]) -> dict[str, Any] | None:
    """``KEY VALUE`` pairs after the counts (old lanes); None when they are not pairs."""
    if len(tokens) % 2:
        return None
    out: dict[str, Any] = {}
    for key, value in zip(tokens[::2], tokens[1::2]):
        try:
            num = float(value)
        except ValueError:
            out[key.lower()] = value
            continue
        out[key.lower()] = num if num == num and abs(num) != float("inf") else value
    return out


def parse_line(line: str) -> Event:
    """Parse one line. Unknown or malformed lines come back as OTHER (with a warning); never raises."""
    raw = line.rstrip("\r\n")
    head, _, rest = raw.partition(" ")
    if head == "PROGRESS":
        parts = rest.split()
        extras = _progress_extras(parts[2:]) if len(parts) > 2 else None
        if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]) and (len(parts) == 2 or extras is not None):
            cur, tot = int(parts[0]), int(parts[1])
            if cur <= tot:
                return Event("PROGRESS", raw, current=cur, total=tot, extras=extras)
        return Event("OTHER", raw, warning="malformed PROGRESS line")
    if raw.strip() == "DONE":
        return Event("DONE", raw)
    if head == "STATS":
        try:
            obj = json.loads(rest)
        except ValueError as exc:
            return Event("OTHER", raw, warning=f"malformed STATS JSON: {exc}")
        if not isinstance(obj, dict):
            return Event("OTHER", raw, warning="STATS is not a JSON object")
        return Event("STATS", raw, stats=obj)
    if head == "ARTIFACT" and rest.strip():
        return Event("ARTIFACT", raw, path=rest.strip())
    return Event("OTHER", raw)


def iter_lines(chunks: Iterable[str | bytes]) -> Iterator[str]:
    """Split a stream of read chunks into real lines (a chunk may hold half a line)."""
    buf = ""
    for chunk in chunks:
        if isinstance(chunk, bytes):
            chunk = chunk.decode("utf-8", errors="replace")
        buf += chunk
        while "\n" in buf:
            line, buf = buf.split("\n", 1)
            yield line
    if buf:
        yield buf


@dataclass
class JobView:
    """What a reader knows about a job after folding its protocol lines."""

    current: int = 0
    total: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    done: bool = False  # an old lane's final DONE line was seen

    def apply(self, ev: Event) -> None:
        if ev.kind == "PROGRESS":
            self.current, self.total = ev.current or 0, ev.total or 0
            if ev.extras:
                self.metadata.update(ev.extras)
        elif ev.kind == "DONE":
            self.done = True
        elif ev.kind == "STATS" and ev.stats is not None:
            self.metadata.update(ev.stats)
        elif ev.kind == "ARTIFACT" and ev.path:
            self.artifacts.append(ev.path)
        if ev.warning:
            self.warnings.append(ev.warning)

    @property
    def message(self) -> str:
        return f"Step {self.current}/{self.total}"


def fold(lines: Iterable[str]) -> JobView:
    view = JobView()
    for line in lines:
        view.apply(parse_line(line))
    return view

"""Human-facing progress with rich: bars on a terminal, plain lines otherwise, nothing in protocol mode."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from voicelane.lane import Reporter


def _safe_print(msg: str, stream) -> None:
    try:
        print(msg, file=stream, flush=True)
    except (BrokenPipeError, ValueError, OSError):
        pass  # nobody is reading our logs any more; the run itself goes on


class PlainReporter(Reporter):
    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.name = ""

    def phase(self, name: str, total: int | None = None) -> None:
        self.name = name
        if not self.quiet:
            _safe_print(f"[voicelane] {name} ...", self.stream)

    def log(self, msg: str) -> None:
        if not self.quiet:
            _safe_print(f"[voicelane] {msg}", self.stream)

    def summary(self, result: dict[str, Any]) -> None:
        if not self.quiet and result:
            _safe_print(
                "[voicelane] result "
                + " ".join(f"{k}={v}" for k, v in sorted(result.items()) if not isinstance(v, dict)),
                self.stream,
            )


class RichReporter(PlainReporter):
    def __init__(self, stream: TextIO | None = None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__(stream)
        self.console = Console(file=self.stream)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = None

    def phase(self, name: str, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[self.task].total or 0)
        self.task = self.progress.add_task(name, total=total or 0)

    def advance(self, done: int, total: int | None = None) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=total or self.progress.tasks[self.task].total)

    def log(self, msg: str) -> None:
        self.console.log(msg)

    def close(self) -> None:
        self.progress.stop()

    def summary(self, result: dict[str, Any]) -> None:
        from rich.table import Table

        if not result:
            return
        t = Table(title="voicelane result")
        t.add_column("key")
        t.add_column("value")
        flat = dict(result)
        for k, v in sorted((flat.pop("eval", None) or {}).items()):
            t.add_row(f"eval.{k}", str(v))
        for k, v in sorted(flat.items()):
            t.add_row(k, str(v))
        self.console.print(t)


def make_reporter(protocol: bool = False, stream: TextIO | None = None) -> PlainReporter:
    stream = stream or sys.stderr
    if protocol:
        return PlainReporter(stream, quiet=True)
    if stream.isatty():
        return RichReporter(stream)
    return PlainReporter(stream)


def print_dataset_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    totals = report.get("totals", {})
    c.print(
        f"[bold]dataset[/bold] {report.get('source', {}).get('path')} layout={report.get('source', {}).get('layout')}"
    )
    c.print(" ".join(f"{k}={v}" for k, v in sorted(totals.items()) if not isinstance(v, dict)))
    for w in report.get("warnings", []):
        c.print(f"[yellow]warning[/yellow] {w}")
    rej = report.get("rejected", [])
    if rej:
        t = Table(title=f"rejected clips ({len(rej)})")
        for col in ("id", "reason", "detail", "line"):
            t.add_column(col)
        for r in rej[:200]:
            t.add_row(str(r.get("id")), str(r.get("reason")), str(r.get("detail", ""))[:80], str(r.get("line", "")))
        c.print(t)
    _print_quality(c, report.get("quality"))


def _print_quality(c, quality: dict[str, Any] | None) -> None:
    """Corpus-quality summary: corpus figures, then what to do per reason (docs/dataset.md)."""
    if not quality:
        return
    corpus = quality.get("corpus", {})
    c.print(
        "[bold]corpus quality[/bold] "
        + " ".join(f"{k}={v}" for k, v in sorted(corpus.items()) if not isinstance(v, list))
    )
    for a in quality.get("actions", []):
        more = f" (+{a['count'] - len(a['clips'])} more)" if a["count"] > len(a["clips"]) else ""
        c.print(
            f"[cyan]{a['reason']}[/cyan] {a['count']} clip(s): {', '.join(a['clips'][:8])}{more}\n  -> {a['action']}"
        )

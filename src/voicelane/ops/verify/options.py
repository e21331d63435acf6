"""What one ``voicelane verify`` run is asked to do."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DEFAULT_TRACE = Path("reports") / "training-trace.jsonl"


def _stderr_log(msg: str) -> None:
    print(f"[verify] {msg}", file=sys.stderr, flush=True)


@dataclass
class VerifyOptions:
    bundle: Path | None = None
    status: Path | None = None
    url: str | None = None
    token: str | None = None
    trace: Path = DEFAULT_TRACE
    junit: Path | None = None
    run_tests: bool = False
    skip_determinism: bool = False
    determinism_data: Path | None = None
    determinism_steps: int = 2
    consent_statement: Path | None = None
    trace_id: str | None = None
    rtf_max: float | None = None
    latency_ms_max: float | None = None
    python: str = sys.executable
    log: Callable[[str], None] = field(default=_stderr_log)

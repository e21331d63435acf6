"""Input paths from HTTP requests are confined to the configured data roots (SPEC §13).

A path is resolved with ``realpath`` (symlinks followed) and must land inside one root; a
relative path is tried against each root in order. Nothing here ever reaches a shell."""

from __future__ import annotations

import os
from pathlib import Path

from voicelane.service.core.errors import ApiError


def _inside(real: Path, root: Path) -> bool:
    return real == root or real.is_relative_to(root)


def confine(value: str, roots: list[Path], field: str, missing_code: str = "missing_audio_path") -> Path:
    if not isinstance(value, str):
        raise ApiError(
            400,
            "invalid_request",
            f"{field} must be a path (a string)",
            {"issues": [{"field": field, "code": "missing", "message": "a path is required"}]},
        )
    if "\x00" in value:
        raise ApiError(400, "invalid_request", f"{field} contains NUL", {"field": field})
    p = Path(value)
    candidates = [p] if p.is_absolute() else [root / p for root in roots]
    inside_any = False
    for cand in candidates:
        real = Path(os.path.realpath(cand))
        if not any(_inside(real, Path(root)) for root in roots):
            continue
        inside_any = True
        if real.exists():
            return real
    if not inside_any:
        raise ApiError(
            400,
            "path_not_allowed",
            f"{field} is outside the configured data roots (VOICELANE_DATA_ROOTS)",
            {"field": field, "path": value},
        )
    raise ApiError(400, missing_code, f"{field} does not exist inside the data roots", {"field": field, "path": value})

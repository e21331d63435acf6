"""Where the repository is (the embedded corpora, weights/, runs/, artifacts/ live under it)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

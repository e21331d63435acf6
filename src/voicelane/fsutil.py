"""Atomic, crash-safe file writes (temp file in the same folder, fsync, rename) and folder swaps."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

CHUNK = 1 << 20


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def canonical_json(obj: Any) -> str:
    """Compact, key-sorted JSON: the form every hash in voicelane is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    text = json.dumps(obj, sort_keys=True, indent=indent, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> tuple[str, int]:
    """Stream a file; return (hex digest, byte count) in constant memory."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def read_json(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """A JSON object from a file; None when absent, unreadable or not an object."""
    if path is None:
        return None
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --------------------------------------------------------------------------------------------
# folder swaps: readers see the previous folder or the new one, never a mix

OLD_MARK = ".old-"


def fsync_dir(path: str | os.PathLike) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every regular file and folder under root (so a rename publishes durable bytes)."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(folder)


def remove_tree(path: str | os.PathLike) -> None:
    path = os.fspath(path)
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def dir_lock(folder: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock on a folder itself (no lock file; no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _old_prefix(final: Path, old_prefix: str | None) -> str:
    return old_prefix if old_prefix is not None else f"{OLD_MARK}{final.name}."


def recover_swap(final: str | os.PathLike, old_prefix: str | None = None) -> None:
    """Undo an interrupted swap: a crash after the old folder was moved aside and before the new
    one moved in leaves no ``final`` and an old folder. Put the newest back; drop the others."""
    final = Path(final)
    olds = sorted(
        final.parent.glob(_old_prefix(final, old_prefix) + "*"), key=lambda p: p.lstat().st_mtime_ns, reverse=True
    )
    if olds and not os.path.lexists(final):
        os.rename(olds.pop(0), final)
    for leftover in olds:
        remove_tree(leftover)


def swap_dir(
    staging: str | os.PathLike,
    final: str | os.PathLike,
    *,
    check: Callable[[Path], None] | None = None,
    then: Callable[[], None] | None = None,
    old_prefix: str | None = None,
) -> None:
    """Replace the folder ``final`` by ``staging`` (same filesystem).

    The staged tree is fsynced; under a lock on the parent folder an interrupted earlier swap is
    recovered, ``check(staging)`` runs (it raises to refuse: nothing is touched), the previous
    folder moves aside, the staged one moves in, then ``then()`` runs. If anything fails, the
    previous folder is back in place and the staged one is back at ``staging`` (the caller
    removes it); the error propagates. On success the previous folder is removed."""
    staging, final = Path(staging), Path(final)
    fsync_tree(staging)
    final.parent.mkdir(parents=True, exist_ok=True)
    with dir_lock(final.parent):
        recover_swap(final, old_prefix)
        if check is not None:
            check(staging)
        old: Path | None = None
        if os.path.lexists(final):
            old = final.parent / f"{_old_prefix(final, old_prefix)}{secrets.token_hex(6)}"
            os.rename(final, old)
        moved_in = False
        try:
            os.replace(staging, final)
            moved_in = True
            fsync_dir(final.parent)
            if then is not None:
                then()
        except BaseException:
            if moved_in:
                os.rename(final, staging)
            if old is not None:
                os.rename(old, final)
            fsync_dir(final.parent)
            raise
        if old is not None:
            remove_tree(old)

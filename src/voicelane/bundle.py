"""Export and validation of ``voice_bundle/1`` (SPEC §8).

A bundle is the directory ``<root>/bundles/<voice_profile_id>/voice_bundle/`` holding the model,
its config, a real synthesised sample, the evaluation report and ``manifest.json`` (path, sha256
and size of every file). ``validate_voice_bundle`` is the single gate: a bundle that fails it is
never served and never reported as success. ``export_bundle`` builds a bundle in a private
staging directory, validates it there and only then swaps it into place, so readers see either
the previous valid bundle or the new valid one, never a partial one.

Validation order (the first failure wins; the same first failure as the validator this one
replaces: the manifest, then the files in manifest order):

1. ``manifest_missing`` - no ``manifest.json`` (or no bundle directory at all);
2. ``manifest_invalid`` - unreadable, not UTF-8 JSON, or not matching the JSON Schema;
3. for every file entry, in listing order, all its checks before the next entry's:
   ``path_unsafe``, ``duplicate_path``, ``required_file_missing``, ``bytes_mismatch``
   (``fstat`` - a truncated or padded file is reported without hashing it), then
   ``checksum_mismatch`` (streamed sha256, constant memory; upper-case hex is accepted);
4. every file of ``REQUIRED_ROLES`` is listed, else ``required_file_missing`` - except under
   ``level="compat"`` for a manifest in the old minimal layout (only the five required fields),
   which then validates with ``level: "compat"``. Such a bundle is never served (it has no
   voicelane model/config); the service refuses it with ``bundle_compat_only``.

``ValidationResult.to_legacy()`` (or ``validate_voice_bundle(dir, legacy=True)``) gives the old
result shape ``{ok: true, profileId, filesValidated}`` / ``{ok: false, failure: {code, message,
details}}``.

Files are opened component by component below the bundle's real path with ``O_NOFOLLOW``
(where the platform supports ``dir_fd``), after checking that the resolved real path stays
inside the bundle, so a symlink can never make the validator read outside the bundle, even if
it is swapped in while validation runs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from voicelane.errors import VoicelaneError, disk_full_error
from voicelane.fsutil import CHUNK, recover_swap, remove_tree, swap_dir

BUNDLE_VERSION = "voice_bundle/1"
MANIFEST_NAME = "manifest.json"
BUNDLE_DIRNAME = "voice_bundle"
REQUIRED_ROLES: dict[str, str] = {
    "model": "model.safetensors",
    "config": "voice_config.json",
    "sample": "sample.wav",
    "eval": "eval.json",
}
REQUIRED_FIELDS = ("bundle_version", "voice_profile_id", "display_name", "created_at", "files")
LEVELS = ("full", "compat")
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

_PROFILE_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_CREATED_AT_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z")
_DRIVE_RE = re.compile(r"[A-Za-z]:")
_STAGING_PREFIX = ".staging-"
_OLD_PREFIX = ".old-"
_LOCK_NAME = ".export.lock"


# --------------------------------------------------------------------------------------------
# results


@dataclass
class ValidationResult:
    ok: bool
    profile_id: str | None = None
    files_validated: int = 0
    manifest: dict | None = None
    error: dict | None = None  # {code, message, details}
    level: str | None = None  # "full", or "compat" (old minimal layout, never served)

    def to_dict(self) -> dict:
        if self.ok:
            out = {"ok": True, "profile_id": self.profile_id, "files_validated": self.files_validated}
            if self.level == "compat":
                out["level"] = "compat"
            return out
        return {"ok": False, "error": dict(self.error or {})}

    def to_legacy(self) -> dict:
        """The old validator's result shape (drop-in for existing callers)."""
        if self.ok:
            return {"ok": True, "profileId": self.profile_id, "filesValidated": self.files_validated}
        err = self.error or {}
        return {
            "ok": False,
            "failure": {
                "code": err.get("code"),
                "message": err.get("message"),
                "details": dict(err.get("details") or {}),
            },
        }

    @property
    def code(self) -> str | None:
        """The validator code of a failure (None when ok)."""
        return None if self.ok else (self.error or {}).get("code")


class _Fail(Exception):
    """Internal: first validation failure, turned into a ValidationResult."""

    def __init__(self, code: str, message: str, **details: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


# --------------------------------------------------------------------------------------------
# schema


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The shipped voice_bundle/1 JSON Schema (draft 2020-12)."""
    text = resources.files("voicelane").joinpath("schemas", "voice_bundle.schema.json")
    return json.loads(text.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _schema_validator():
    from jsonschema import Draft202012Validator

    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _pointer(parts) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _check_manifest_schema(manifest: Any) -> None:
    from jsonschema.exceptions import best_match

    error = best_match(_schema_validator().iter_errors(manifest))
    if error is not None:
        pointer = _pointer(error.absolute_path)
        raise _Fail(
            "manifest_invalid",
            f"manifest.json does not match {BUNDLE_VERSION}: {pointer or '/'}: {error.message}",
            pointer=pointer,
            schema_path=_pointer(error.absolute_schema_path),
            validator=error.validator,
        )
    # JSON Schema `pattern` is a search and `$` also matches before a trailing newline in
    # Python's engine; re-check the anchored fields strictly.
    if not _PROFILE_ID_RE.fullmatch(manifest["voice_profile_id"]):
        raise _Fail(
            "manifest_invalid",
            "manifest.json: /voice_profile_id is not a valid id",
            pointer="/voice_profile_id",
            validator="pattern",
        )
    created = manifest["created_at"]
    if not _CREATED_AT_RE.fullmatch(created) or _parse_utc(created) is None:
        raise _Fail(
            "manifest_invalid",
            "manifest.json: /created_at is not an RFC 3339 UTC timestamp (…Z)",
            pointer="/created_at",
            validator="format",
        )


def _parse_utc(text: str) -> _dt.datetime | None:
    try:
        value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


# --------------------------------------------------------------------------------------------
# paths


def normalise_bundle_path(path: Any) -> tuple[str | None, str | None]:
    """Return (normalised relative path, None) or (None, reason it is unsafe).

    Normalisation only drops ``.`` components; anything else odd is refused rather than
    guessed at: empty, NUL, backslash, absolute, drive letter, ``..``, empty components.
    """
    if not isinstance(path, str) or path == "":
        return None, "empty path"
    if "\x00" in path:
        return None, "NUL byte in path"
    if "\\" in path:
        return None, "backslash in path"
    if path.startswith("/"):
        return None, "absolute path"
    if _DRIVE_RE.match(path):
        return None, "drive letter in path"
    parts = path.split("/")
    if ".." in parts:
        return None, "'..' component"
    if "" in parts:
        return None, "empty path component"
    parts = [p for p in parts if p != "."]
    if not parts:
        return None, "path names the bundle directory itself"
    norm = "/".join(parts)
    if norm == MANIFEST_NAME:
        return None, "manifest.json cannot list itself"
    return norm, None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


_HAVE_DIR_FD = (
    os.open in os.supports_dir_fd
    and os.stat in os.supports_dir_fd
    and hasattr(os, "O_NOFOLLOW")
    and hasattr(os, "O_DIRECTORY")
)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


class _Bundle:
    """Confined access to one bundle directory."""

    def __init__(self, bundle_dir: str | os.PathLike):
        self.dir = os.fspath(bundle_dir)
        self.real = os.path.realpath(self.dir)
        self.manifest_real = os.path.join(self.real, MANIFEST_NAME)

    def resolve(self, index: int, raw: Any) -> tuple[str, str]:
        """Path checks for one entry: (normalised path, relative real path). Raises _Fail."""
        norm, reason = normalise_bundle_path(raw)
        if norm is None:
            raise _Fail(
                "path_unsafe", f"files[{index}]: unsafe path {raw!r}: {reason}", index=index, path=raw, reason=reason
            )
        real = os.path.realpath(os.path.join(self.real, *norm.split("/")))
        if not _inside(real, self.real):
            raise _Fail(
                "path_unsafe",
                f"files[{index}]: {norm!r} resolves outside the bundle (symlink)",
                index=index,
                path=norm,
                reason="resolves outside the bundle",
            )
        if real == self.real or os.path.normcase(real) == os.path.normcase(self.manifest_real):
            raise _Fail(
                "path_unsafe",
                f"files[{index}]: {norm!r} resolves to the bundle directory or manifest",
                index=index,
                path=norm,
                reason="resolves to the bundle or its manifest",
            )
        return norm, os.path.relpath(real, self.real)

    @contextlib.contextmanager
    def open_file(self, index: int, norm: str, rel_real: str) -> Iterator[int]:
        """Open a listed regular file without following any symlink; yields a raw fd."""
        parts = rel_real.split(os.sep)
        opened: list[int] = []
        try:
            try:
                if _HAVE_DIR_FD:
                    dir_fd = os.open(self.real, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
                    opened.append(dir_fd)
                    for part in parts[:-1]:
                        dir_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
                        opened.append(dir_fd)
                    st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
                else:  # pragma: no cover - platforms without dir_fd (Windows)
                    dir_fd = None
                    st = os.lstat(os.path.join(self.real, rel_real))
            except OSError as exc:
                raise self._open_failure(index, norm, exc) from None
            self._check_regular(index, norm, st)
            flags = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY
            try:
                if dir_fd is not None:
                    fd = os.open(parts[-1], flags, dir_fd=dir_fd)
                else:  # pragma: no cover
                    fd = os.open(os.path.join(self.real, rel_real), flags)
            except OSError as exc:
                raise self._open_failure(index, norm, exc) from None
            opened.append(fd)
            fst = os.fstat(fd)
            self._check_regular(index, norm, fst)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                raise _Fail(
                    "path_unsafe",
                    f"files[{index}]: {norm!r} changed during validation",
                    index=index,
                    path=norm,
                    reason="file replaced during validation",
                )
            yield fd
        finally:
            for fd in reversed(opened):
                os.close(fd)

    @staticmethod
    def _open_failure(index: int, norm: str, exc: OSError) -> _Fail:
        """The failure for an OSError met while walking to or opening a listed file."""
        if isinstance(exc, FileNotFoundError):
            return _Fail("required_file_missing", f"files[{index}]: {norm!r} does not exist", index=index, path=norm)
        if isinstance(exc, NotADirectoryError):
            return _Fail(
                "required_file_missing",
                f"files[{index}]: {norm!r} does not exist (a parent is not a folder)",
                index=index,
                path=norm,
            )
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            return _Fail(
                "path_unsafe",
                f"files[{index}]: {norm!r} became a symlink during validation",
                index=index,
                path=norm,
                reason="symlink race",
            )
        return _Fail(
            "required_file_missing",
            f"files[{index}]: {norm!r} cannot be read: {exc.strerror}",
            index=index,
            path=norm,
            reason=exc.strerror,
        )

    @staticmethod
    def _check_regular(index: int, norm: str, st: os.stat_result) -> None:
        if stat.S_ISREG(st.st_mode):
            return
        if stat.S_ISDIR(st.st_mode):
            raise _Fail(
                "required_file_missing",
                f"files[{index}]: {norm!r} is a folder, not a file",
                index=index,
                path=norm,
                reason="not a regular file",
            )
        if stat.S_ISLNK(st.st_mode):
            raise _Fail(
                "path_unsafe",
                f"files[{index}]: {norm!r} became a symlink during validation",
                index=index,
                path=norm,
                reason="symlink race",
            )
        raise _Fail(
            "path_unsafe",
            f"files[{index}]: {norm!r} is not a regular file",
            index=index,
            path=norm,
            reason="special file (fifo, socket or device)",
        )

    def read_manifest(self) -> Any:
        manifest_path = os.path.join(self.dir, MANIFEST_NAME)
        if not os.path.lexists(manifest_path):
            raise _Fail("manifest_missing", f"no {MANIFEST_NAME} in {self.dir}", bundle_dir=self.dir)
        real = os.path.realpath(manifest_path)
        if not _inside(real, self.real):
            raise _Fail(
                "path_unsafe",
                f"{MANIFEST_NAME} is a symlink leaving the bundle",
                path=MANIFEST_NAME,
                reason="resolves outside the bundle",
            )
        if not os.path.exists(real):
            raise _Fail("manifest_missing", f"{MANIFEST_NAME} is a dangling symlink", bundle_dir=self.dir)
        try:
            st = os.stat(real)
            if not stat.S_ISREG(st.st_mode):
                raise _Fail(
                    "manifest_invalid",
                    f"{MANIFEST_NAME} is not a regular file",
                    pointer="",
                    reason="not a regular file",
                )
            fd = os.open(real, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY)
            with os.fdopen(fd, "rb") as fh:
                fst = os.fstat(fh.fileno())
                if not stat.S_ISREG(fst.st_mode):
                    raise _Fail(
                        "manifest_invalid",
                        f"{MANIFEST_NAME} is not a regular file",
                        pointer="",
                        reason="not a regular file",
                    )
                # size the read from fstat: read(MAX) would preallocate MAX bytes
                raw = fh.read(min(fst.st_size, MAX_MANIFEST_BYTES) + 1)
        except _Fail:
            raise
        except OSError as exc:
            raise _Fail(
                "manifest_invalid", f"{MANIFEST_NAME} cannot be read: {exc.strerror}", pointer="", reason=exc.strerror
            ) from None
        if len(raw) > MAX_MANIFEST_BYTES:
            raise _Fail(
                "manifest_invalid",
                f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes",
                pointer="",
                reason="too large",
            )
        try:
            return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
        except UnicodeDecodeError as exc:
            raise _Fail(
                "manifest_invalid", f"{MANIFEST_NAME} is not UTF-8: {exc.reason}", pointer="", reason="not UTF-8"
            ) from None
        except json.JSONDecodeError as exc:
            raise _Fail(
                "manifest_invalid",
                f"{MANIFEST_NAME} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                pointer="",
                line=exc.lineno,
                column=exc.colno,
            ) from None
        except ValueError as exc:
            raise _Fail("manifest_invalid", f"{MANIFEST_NAME} is not valid JSON: {exc}", pointer="") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _hash_fd(fd: int) -> tuple[str, int]:
    """Stream an open file: (sha256 hex, bytes read), one reused buffer (constant memory)."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    with os.fdopen(os.dup(fd), "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            total += n
    return h.hexdigest(), total


# --------------------------------------------------------------------------------------------
# validation


def is_minimal_layout(manifest: Any) -> bool:
    """The old minimal manifest: only the five required fields (no voicelane additions)."""
    return isinstance(manifest, dict) and set(manifest) <= set(REQUIRED_FIELDS)


def _entry_fail(code: str, index: int, norm: str, detail: str, **fields: Any) -> _Fail:
    """A failure about files[index], with its index and path among the details."""
    return _Fail(code, f"files[{index}]: {norm!r} {detail}", index=index, path=norm, **fields)


def _check_entry(bundle: _Bundle, index: int, entry: dict, seen: dict[str, int]) -> str:
    """Every check of one listed file, in the old validator's order; returns its path."""
    norm, rel_real = bundle.resolve(index, entry["path"])
    if norm in seen:
        first = seen[norm]
        raise _entry_fail("duplicate_path", index, norm, f"is already listed at files[{first}]", first_index=first)
    seen[norm] = index
    expected = entry["bytes"]
    with bundle.open_file(index, norm, rel_real) as fd:
        size = os.fstat(fd).st_size
        if size != expected:
            detail = f"has {size} bytes, manifest says {expected}"
            raise _entry_fail("bytes_mismatch", index, norm, detail, expected_bytes=expected, actual_bytes=size)
        digest, size = _hash_fd(fd)
    if size != expected:
        detail = f"changed size during validation ({size} bytes, manifest says {expected})"
        raise _entry_fail("bytes_mismatch", index, norm, detail, expected_bytes=expected, actual_bytes=size)
    if digest != entry["sha256"].lower():
        detail = "sha256 differs from the manifest"
        raise _entry_fail(
            "checksum_mismatch", index, norm, detail, expected_sha256=entry["sha256"], actual_sha256=digest
        )
    return norm


def _check_roles(manifest: dict, seen: dict[str, int], level: str) -> str:
    missing = [(role, path) for role, path in REQUIRED_ROLES.items() if path not in seen]
    if not missing:
        return "full"
    if level == "compat" and is_minimal_layout(manifest):
        return "compat"
    role, path = missing[0]
    hint = (
        " (old minimal layout: it validates with level='compat' but is never served)"
        if is_minimal_layout(manifest)
        else ""
    )
    raise _Fail(
        "required_file_missing", f"the bundle does not list its {role} file {path!r}{hint}", role=role, path=path
    )


def validate_voice_bundle(
    bundle_dir: str | os.PathLike, level: str = "full", legacy: bool = False
) -> ValidationResult | dict:
    """Validate a voice_bundle/1 directory; never raises for a bad bundle.

    Returns ``ValidationResult(ok=True, profile_id, files_validated, level)`` or the first failure
    as ``ValidationResult(ok=False, error={code, message, details})``. ``level="compat"`` also
    accepts the old minimal layout. ``legacy=True`` returns the old result shape as a dict (and
    implies ``level="compat"``, as the old validator accepted minimal bundles).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    if legacy:
        return validate_voice_bundle(bundle_dir, level="compat").to_legacy()
    manifest: Any = None
    try:
        bundle = _Bundle(bundle_dir)
        if not os.path.isdir(bundle.real):
            raise _Fail(
                "manifest_missing",
                f"bundle folder {os.fspath(bundle_dir)} does not exist",
                bundle_dir=os.fspath(bundle_dir),
            )
        manifest = bundle.read_manifest()
        _check_manifest_schema(manifest)
        entries = manifest["files"]
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            _check_entry(bundle, index, entry, seen)
        got_level = _check_roles(manifest, seen, level)
    except _Fail as fail:
        ok_manifest = manifest if isinstance(manifest, dict) else None
        pid = ok_manifest.get("voice_profile_id") if ok_manifest else None
        return ValidationResult(
            ok=False,
            profile_id=pid if isinstance(pid, str) else None,
            manifest=ok_manifest,
            error={"code": fail.code, "message": fail.message, "details": fail.details},
        )
    return ValidationResult(
        ok=True,
        profile_id=manifest["voice_profile_id"],
        files_validated=len(entries),
        manifest=manifest,
        level=got_level,
    )


def require_valid(bundle_dir: str | os.PathLike) -> ValidationResult:
    """Validate; raise ``VoicelaneError(<validator code>)`` on failure."""
    result = validate_voice_bundle(bundle_dir)
    if not result.ok:
        err = result.error or {}
        details = dict(err.get("details") or {})
        details.setdefault("bundle_dir", os.fspath(bundle_dir))
        raise VoicelaneError(err.get("code", "bundle_invalid"), err.get("message", "bundle is invalid"), details)
    return result


# --------------------------------------------------------------------------------------------
# ids and timestamps


def validate_profile_id(profile_id: Any) -> str:
    if not isinstance(profile_id, str) or not _PROFILE_ID_RE.fullmatch(profile_id):
        raise VoicelaneError(
            "profile_id_invalid",
            f"invalid voice profile id {profile_id!r}: use 1-64 characters "
            "from a-z, 0-9, '_' and '-', starting with a letter or digit",
            {"profile_id": profile_id if isinstance(profile_id, str) else repr(profile_id)},
        )
    return profile_id


def bundle_dir_for(root: str | os.PathLike, profile_id: str) -> Path:
    """``root/bundles/<profile_id>/voice_bundle``."""
    return Path(root) / "bundles" / validate_profile_id(profile_id) / BUNDLE_DIRNAME


def created_at_from(source_date_epoch: str | None, fallback_iso: str) -> str:
    """The manifest timestamp: ``SOURCE_DATE_EPOCH`` (integer seconds) when set, else the
    fallback (e.g. derived from the dataset); always ``YYYY-MM-DDTHH:MM:SSZ``."""
    if source_date_epoch is not None and source_date_epoch.strip() != "":
        text = source_date_epoch.strip()
        if not re.fullmatch(r"[0-9]{1,12}", text):
            raise VoicelaneError(
                "invalid_argument",
                f"SOURCE_DATE_EPOCH must be integer seconds, got {source_date_epoch!r}",
                {"SOURCE_DATE_EPOCH": source_date_epoch},
            )
        try:
            moment = _dt.datetime.fromtimestamp(int(text), tz=_dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise VoicelaneError(
                "invalid_argument", f"SOURCE_DATE_EPOCH out of range: {text}", {"SOURCE_DATE_EPOCH": source_date_epoch}
            ) from None
    else:
        moment = _parse_utc(fallback_iso) if isinstance(fallback_iso, str) else None
        if moment is None:
            raise VoicelaneError(
                "invalid_argument",
                f"created_at fallback must be an ISO 8601 timestamp with a time zone, got {fallback_iso!r}",
                {"fallback": repr(fallback_iso)},
            )
        moment = moment.astimezone(_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# export


@contextlib.contextmanager
def _export_lock(profile_dir: Path) -> Iterator[None]:
    """One exporter per profile at a time (advisory lock; no-op without fcntl)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(profile_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _recover(profile_dir: Path, final: Path) -> None:
    """Clean up after an export that crashed mid-way (we hold the lock, so none is running):
    an interrupted swap is undone; staging folders are never valid bundles."""
    recover_swap(final, _OLD_PREFIX)
    for leftover in profile_dir.glob(_STAGING_PREFIX + "*"):
        remove_tree(leftover)


def _copy_source(src: Path, dst: Path, rel: str) -> None:
    try:
        st = os.stat(src)
    except OSError as exc:
        raise VoicelaneError(
            "required_file_missing",
            f"cannot export {rel!r}: source {src} is missing or unreadable ({exc.strerror})",
            {"path": rel, "source": str(src)},
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise VoicelaneError(
            "required_file_missing",
            f"cannot export {rel!r}: source {src} is not a regular file",
            {"path": rel, "source": str(src)},
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as fin, open(dst, "xb", buffering=0) as fout:
        while n := fin.readinto(buf):
            fout.write(view[:n])
        os.fsync(fout.fileno())


def require_valid_bundle(folder: Path, stage: str = "export") -> None:
    """Raise the validator's code unless ``folder`` is a valid bundle: the ``check`` of every
    ``swap_dir`` that publishes a bundle, so only a validated bundle is ever swapped in."""
    checked = validate_voice_bundle(folder)
    if not checked.ok:
        err = checked.error or {}
        raise VoicelaneError(
            err.get("code", "bundle_invalid"),
            f"{stage}ed bundle failed validation: {err.get('message')}",
            {**(err.get("details") or {}), "stage": stage},
        )


def export_bundle(
    root: str | os.PathLike,
    profile_id: str,
    display_name: str,
    files: dict[str, str | os.PathLike],
    created_at: str,
    extra: dict | None = None,
) -> ValidationResult:
    """Build ``root/bundles/<profile_id>/voice_bundle`` from ``files`` ({path in bundle: source}).

    Files are copied into a fresh staging folder, hashed, ``manifest.json`` is written last,
    the staging folder is validated, and only a valid bundle is swapped into place. On any
    failure the staging folder is removed, the previous bundle is left untouched, and a
    ``VoicelaneError`` (the validator's code, or ``path_unsafe`` / ``duplicate_path`` /
    ``required_file_missing`` / ``invalid_argument`` for bad arguments) is raised.
    Returns the validation result of the final bundle folder.
    """
    from voicelane.fsutil import sha256_file

    validate_profile_id(profile_id)
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(REQUIRED_FIELDS))
    if clash:
        raise VoicelaneError(
            "invalid_argument", f"extra manifest fields may not override {', '.join(clash)}", {"fields": clash}
        )
    plan: dict[str, Path] = {}
    for rel, src in files.items():
        norm, reason = normalise_bundle_path(rel)
        if norm is None:
            raise VoicelaneError(
                "path_unsafe", f"cannot export to unsafe bundle path {rel!r}: {reason}", {"path": rel, "reason": reason}
            )
        if norm in plan:
            raise VoicelaneError("duplicate_path", f"bundle path {norm!r} given twice", {"path": norm})
        plan[norm] = Path(src)

    profile_dir = Path(root) / "bundles" / profile_id
    final = profile_dir / BUNDLE_DIRNAME
    profile_dir.mkdir(parents=True, exist_ok=True)
    with _export_lock(profile_dir):
        _recover(profile_dir, final)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=profile_dir))
        try:
            entries = []
            for rel in sorted(plan):
                dst = staging.joinpath(*rel.split("/"))
                _copy_source(plan[rel], dst, rel)
                digest, size = sha256_file(dst)
                entries.append({"path": rel, "sha256": digest, "bytes": size})
            manifest = {
                **extra,
                "bundle_version": BUNDLE_VERSION,
                "voice_profile_id": profile_id,
                "display_name": display_name,
                "created_at": created_at,
                "files": entries,
            }
            try:
                text = json.dumps(manifest, sort_keys=True, indent=2, allow_nan=False) + "\n"
            except (TypeError, ValueError) as exc:
                raise VoicelaneError("invalid_argument", f"manifest fields are not plain JSON: {exc}") from None
            with open(staging / MANIFEST_NAME, "xb") as fh:
                fh.write(text.encode("utf-8"))
            swap_dir(staging, final, check=require_valid_bundle, old_prefix=_OLD_PREFIX)
        except BaseException as exc:
            remove_tree(staging)  # the previous bundle is untouched
            full = disk_full_error(exc, "exporting the bundle", str(final))
            if full is not None:
                raise full from None
            raise
    result = validate_voice_bundle(final)
    if not result.ok:  # pragma: no cover - only if someone edits the bundle concurrently
        err = result.error or {}
        raise VoicelaneError(err.get("code", "bundle_invalid"), err.get("message", ""), err.get("details") or {})
    return result


__all__ = [
    "BUNDLE_VERSION",
    "REQUIRED_ROLES",
    "MANIFEST_NAME",
    "ValidationResult",
    "validate_voice_bundle",
    "require_valid",
    "bundle_dir_for",
    "export_bundle",
    "created_at_from",
    "validate_profile_id",
    "load_schema",
    "normalise_bundle_path",
]

"""The voice registry: where validated production bundles are published for the service to serve.

Layout under a registry root (the service's ``VOICELANE_DATA_DIR`` by default, so a service
started with default settings reads it)::

    <root>/bundles/<profile>/voice_bundle/        the version served now (a voice_bundle/1 folder)
    <root>/bundles/<profile>/versions/v<NNNN>/     earlier versions, newest KEEP_VERSIONS kept
    <root>/bundles/<profile>/registry.json         voice_registry/1: current version + history

``publish`` accepts only a bundle that validates (every file re-hashed), is a production bundle,
``promotable`` and whose ``eval.json`` gates passed (re-checked against its own thresholds): a
failed gate never publishes. The new version is copied into a staging folder beside the live
one, validated there, and exchanged with the live folder in one ``renameat2(RENAME_EXCHANGE)``
(a reader sees the old folder or the new one, never none; where the call is missing, two
renames with recovery). The service notices the new ``manifest.json`` inode on its next rescan
(``VOICELANE_VOICE_RESCAN_S``) and serves the new voice without a restart. ``rollback`` exchanges
the live folder with the newest earlier version the same way.

Below the service and ops layers: the CLI, the orchestrator and the service all use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_json, fsync_tree, read_json, sha256_file

SCHEMA = "voice_registry/1"
REGISTRY_FILE = "registry.json"
LIVE = "voice_bundle"
VERSIONS = "versions"
KEEP_VERSIONS = 3
_STAGING = ".publish-"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


def default_root(env: Mapping[str, str] | None = None, cwd: Path | None = None, fallback: Path | None = None) -> Path:
    """VOICELANE_REGISTRY_DIR, else the service's VOICELANE_DATA_DIR, else ``fallback``, else ./var
    (the service's default data dir); relative paths are taken from ``cwd``."""
    env = os.environ if env is None else env
    raw = (env.get("VOICELANE_REGISTRY_DIR") or env.get("VOICELANE_DATA_DIR") or "").strip()
    if not raw and fallback is not None:
        return Path(fallback)
    p = Path(raw or "var").expanduser()
    return p if p.is_absolute() else ((cwd or Path.cwd()) / p).resolve()


def profile_dir(root: Path, profile: str) -> Path:
    from voicelane.bundle import validate_profile_id

    return Path(root) / "bundles" / validate_profile_id(profile)


def live_dir(root: Path, profile: str) -> Path:
    return profile_dir(root, profile) / LIVE


@dataclass
class Published:
    profile: str
    version: int
    bundle: Path
    manifest_sha256: str
    previous: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "version": self.version,
            "bundle": str(self.bundle),
            "manifest_sha256": self.manifest_sha256,
            "previous": self.previous,
        }


# --- the gate ------------------------------------------------------------------------------------


def check_publishable(bundle_dir: Path) -> dict[str, Any]:
    """The manifest of a bundle that may be served; raises with a stable code otherwise."""
    from voicelane.bundle import validate_voice_bundle
    from voicelane.evaluate import check_gates

    res = validate_voice_bundle(bundle_dir)
    if not res.ok:
        err = res.error or {}
        raise VoicelaneError(
            "bundle_invalid",
            f"the bundle does not validate: {err.get('message')}",
            {"bundle": str(bundle_dir), "validator_code": err.get("code")},
        )
    man = res.manifest or {}
    if man.get("lane") != "production":
        raise VoicelaneError(
            "bundle_invalid",
            f"the bundle's lane is {man.get('lane')!r}: only production bundles are published",
            {"bundle": str(bundle_dir), "lane": man.get("lane")},
        )
    ev = read_json(Path(bundle_dir) / "eval.json") or {}
    gates = ev.get("gates") or {}
    thresholds = gates.get("thresholds") if isinstance(gates.get("thresholds"), dict) else {}
    failed = check_gates(ev, thresholds) if thresholds else [{"gate": "thresholds", "value": None}]
    if man.get("promotable") is not True or gates.get("passed") is not True or failed:
        raise VoicelaneError(
            "eval_gate_failed",
            "the voice did not pass its evaluation gates; it is not published: "
            + ", ".join(f"{g['gate']}={g.get('value')}" for g in failed),
            {"bundle": str(bundle_dir), "promotable": man.get("promotable")},
        )
    return man


# --- the folder exchange -----------------------------------------------------------------------


def _renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> None:
    """Swap two existing folders atomically (Linux renameat2); else two renames, a then b."""
    fn = _renameat2()
    if fn is not None and fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return
    # no RENAME_EXCHANGE here (old kernel/libc or filesystem): a short window without `b`
    tmp = b.parent / f"{_STAGING}x-{secrets.token_hex(4)}"
    os.rename(b, tmp)
    try:
        os.rename(a, b)
    except BaseException:
        os.rename(tmp, b)
        raise
    os.rename(tmp, a)


@contextlib.contextmanager
def _locked(pdir: Path) -> Iterator[None]:
    import fcntl

    pdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(pdir / ".registry.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _recover(pdir)
        yield
    finally:
        os.close(fd)


def _recover(pdir: Path) -> None:
    """After a crash: staging folders are never live; a missing live folder comes back from the
    newest ``.publish-x-`` folder the two-rename fallback left."""
    leftovers = sorted(pdir.glob(_STAGING + "*"), key=lambda p: p.lstat().st_mtime_ns, reverse=True)
    live = pdir / LIVE
    if not live.exists():
        moved = [p for p in leftovers if p.name.startswith(_STAGING + "x-")]
        if moved:
            os.rename(moved[0], live)
            leftovers.remove(moved[0])
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True)


# --- the record --------------------------------------------------------------------------------


def read_record(root: Path, profile: str) -> dict[str, Any]:
    doc = read_json(profile_dir(root, profile) / REGISTRY_FILE)
    if doc and doc.get("schema") == SCHEMA:
        return doc
    return {"schema": SCHEMA, "profile": profile, "current": None, "versions": []}


def _versions_on_disk(pdir: Path) -> list[int]:
    try:
        names = os.listdir(pdir / VERSIONS)
    except OSError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _VERSION_RE.match(n)))


def _vdir(pdir: Path, n: int) -> Path:
    return pdir / VERSIONS / f"v{n:04d}"


def _manifest_sha(bundle: Path) -> str:
    return sha256_file(bundle / "manifest.json")[0]


# --- certificates (from `voicelane verify`) ------------------------------------------------------


def _bundle_bound(cert: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        b
        for b in cert.get("bound") or []
        if isinstance(b, dict) and b.get("role") in ("bundle_manifest", "bundle_file")
    ]


def certificate_integrity(cert: dict[str, Any], bundle_dir: Path) -> dict[str, Any]:
    """Re-hash every bundle file a verify certificate bound, in ``bundle_dir`` as it is now."""
    changed = []
    bound = _bundle_bound(cert)
    for b in bound:
        rel = str(b.get("name") or "").removeprefix("bundle/")
        try:
            digest, size = sha256_file(Path(bundle_dir) / rel)
        except OSError:
            digest, size = None, None
        if ".." in rel.split("/") or digest != b.get("sha256") or size != b.get("bytes"):
            changed.append(rel)
    ok = bool(bound) and any(b.get("role") == "bundle_manifest" for b in bound) and not changed
    return {
        "certificateId": cert.get("certificateId"),
        "certificateHash": cert.get("certificateHash"),
        "status": cert.get("status"),
        "integrityOk": ok,
        "changed": changed,
    }


def certificate_of(bundle_dir: Path) -> dict[str, Any] | None:
    """The certificate the registry recorded for the live version of ``bundle_dir``'s profile, re-checked."""
    bundle_dir = Path(bundle_dir)
    rec = read_json(bundle_dir.parent / REGISTRY_FILE) or {}
    entry = next((v for v in rec.get("versions") or [] if v.get("version") == rec.get("current")), None)
    cert = (entry or {}).get("certificate")
    return certificate_integrity(cert, bundle_dir) if isinstance(cert, dict) else None


def _certificate_entry(cert: dict[str, Any], bundle_dir: Path) -> dict[str, Any]:
    """What of a verify output document is kept with a version: refused unless issued and matching."""
    c = cert.get("certificate") if isinstance(cert.get("certificate"), dict) else cert
    if c.get("status") != "issued":
        raise VoicelaneError(
            "verify_failed",
            f"the certificate {c.get('certificateId')} was not issued "
            f"(status {c.get('status')!r}): verify did not pass",
            {"certificate": c.get("certificateId")},
        )
    kept = {k: c.get(k) for k in ("certificateId", "certificateHash", "status", "pack", "policy", "code")}
    kept["bound"] = _bundle_bound(c)
    check = certificate_integrity(kept, bundle_dir)
    if not check["integrityOk"]:
        raise VoicelaneError(
            "certificate_stale",
            "the certificate binds other bundle files: " + ", ".join(check["changed"] or ["no bundle files bound"]),
            {"certificate": c.get("certificateId")},
        )
    return kept


# --- publish / rollback ------------------------------------------------------------------------


def publish(
    bundle_src: Path,
    root: Path | None = None,
    profile: str | None = None,
    source: dict[str, Any] | None = None,
    certificate: dict[str, Any] | None = None,
) -> Published:
    """Copy a publishable bundle into the registry as the profile's new live version (with the verify
    certificate that binds it, when given: the service re-checks it whenever it loads the bundle)."""
    bundle_src = Path(bundle_src)
    man = check_publishable(bundle_src)
    cert_entry = _certificate_entry(certificate, bundle_src) if certificate is not None else None
    profile = profile or str(man.get("voice_profile_id"))
    if man.get("voice_profile_id") != profile:
        raise VoicelaneError(
            "invalid_argument",
            f"the bundle is profile {man.get('voice_profile_id')!r}, not {profile!r}",
            {"profile": profile},
        )
    root = Path(root) if root is not None else default_root()
    pdir = profile_dir(root, profile)
    with _locked(pdir):
        rec = read_record(root, profile)
        staging = pdir / f"{_STAGING}{secrets.token_hex(6)}"
        try:
            shutil.copytree(bundle_src, staging, symlinks=True)
            fsync_tree(staging)
            check_publishable(staging)  # what was copied is what was checked
            version = (
                max(
                    [
                        rec.get("current") or 0,
                        *_versions_on_disk(pdir),
                        *(int(v.get("version") or 0) for v in rec.get("versions") or []),
                    ]
                )
                + 1
            )
            previous = None
            if (pdir / LIVE).is_dir():  # version 0: a bundle that was put here outside the registry
                previous = int(rec.get("current") or 0)
                exchange(staging, pdir / LIVE)  # staging now holds the previous live version
                (pdir / VERSIONS).mkdir(exist_ok=True)
                shutil.rmtree(_vdir(pdir, previous), ignore_errors=True)
                os.rename(staging, _vdir(pdir, previous))
            else:
                os.rename(staging, pdir / LIVE)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        sha = _manifest_sha(pdir / LIVE)
        from voicelane.status import now_iso

        entry = {
            "version": version,
            "manifest_sha256": sha,
            "published_at": now_iso(),
            "created_at": man.get("created_at"),
            "source": source or {"bundle": str(bundle_src)},
        }
        if cert_entry is not None:
            entry["certificate"] = cert_entry
        rec["versions"] = [v for v in rec.get("versions") or [] if v.get("version") != version] + [entry]
        rec["current"] = version
        _prune(pdir, rec)
        atomic_write_json(pdir / REGISTRY_FILE, rec)
    return Published(profile, version, pdir / LIVE, sha, previous)


def rollback(root: Path | None, profile: str) -> Published:
    """Serve the newest earlier version again (it is validated first); the displaced live version
    is kept as a version, so a second rollback goes one further back."""
    from voicelane.bundle import validate_voice_bundle

    root = Path(root) if root is not None else default_root()
    pdir = profile_dir(root, profile)
    if not (pdir / LIVE).is_dir():
        raise VoicelaneError(
            "invalid_argument",
            f"no voice is published for profile {profile!r} in {root}",
            {"profile": profile, "registry": str(root)},
        )
    with _locked(pdir):
        rec = read_record(root, profile)
        current = rec.get("current")
        older = [n for n in _versions_on_disk(pdir) if current is None or n < int(current)]
        if not older:
            raise VoicelaneError(
                "invalid_argument",
                f"profile {profile!r} has no earlier version to roll back to",
                {"profile": profile, "current": current},
            )
        target = older[-1]
        res = validate_voice_bundle(_vdir(pdir, target))
        if not res.ok:
            raise VoicelaneError(
                "bundle_invalid",
                f"version {target} no longer validates: {(res.error or {}).get('message')}",
                {"profile": profile, "version": target},
            )
        exchange(_vdir(pdir, target), pdir / LIVE)  # the displaced live folder now sits at v<target>
        os.rename(_vdir(pdir, target), _vdir(pdir, int(current if current is not None else 0)))
        rec["current"] = target
        rec.setdefault("rollbacks", []).append({"from": current, "to": target})
        atomic_write_json(pdir / REGISTRY_FILE, rec)
        sha = _manifest_sha(pdir / LIVE)
    return Published(profile, target, pdir / LIVE, sha, current)


def _prune(pdir: Path, rec: dict[str, Any]) -> None:
    on_disk = _versions_on_disk(pdir)
    for n in on_disk[:-KEEP_VERSIONS] if len(on_disk) > KEEP_VERSIONS else []:
        shutil.rmtree(_vdir(pdir, n), ignore_errors=True)
    kept = set(_versions_on_disk(pdir)) | {rec.get("current")}
    rec["versions"] = [v for v in rec.get("versions") or [] if v.get("version") in kept]


def status(root: Path | None = None) -> list[dict[str, Any]]:
    """Every profile in the registry: the live version, its manifest hash, the versions kept."""
    root = Path(root) if root is not None else default_root()
    out = []
    try:
        names = sorted(os.listdir(root / "bundles"))
    except OSError:
        return out
    for name in names:
        pdir = root / "bundles" / name
        if not (pdir / LIVE).is_dir():
            continue
        rec = read_record(root, name)
        out.append(
            {
                "profile": name,
                "current": rec.get("current"),
                "kept": _versions_on_disk(pdir),
                "manifest_sha256": _manifest_sha(pdir / LIVE) if (pdir / LIVE / "manifest.json").is_file() else None,
            }
        )
    return out

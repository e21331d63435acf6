"""The voice registry: which bundles the service speaks with.

Scans every bundle root for ``bundles/<profile>/voice_bundle``. A bundle is served only when

1. ``validate_voice_bundle`` passes (every file hashed against the manifest) at the full level
   (a bundle in the old minimal layout validates only at the compat level and is refused with
   ``bundle_compat_only``),
2. its manifest says ``lane: "production"`` (experimental outputs are never served) and not
   ``promotable: false`` (a production run whose evaluation gates failed),
3. the manifest's ``voice_profile_id`` equals the folder name, and
4. the voice loads (``voicelane.speak.load_bundle_voice``, which validates once more).

A bundle is re-validated and reloaded when its ``manifest.json`` changes (inode, mtime or
size: bundle export swaps whole directories, so a new export always changes the inode).
Refused bundles are remembered with their reason so operators can see why a voice is missing.
A bundle published into the registry with a ``voicelane verify`` certificate (``registry.json``)
has that certificate's bundle files re-hashed at every load: ``certificate.integrityOk`` in the
profile, and a refusal (``certificate_stale``) when the files are no longer the certified ones.
The first root that holds a profile wins.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from voicelane.errors import VoicelaneError

log = logging.getLogger("voicelane.service.voices")

Loader = Callable[[Path, str, int], tuple[Any, Any]]


def _default_loader(bundle_dir: Path, engine: str, threads: int):
    from voicelane.speak import load_bundle_voice

    return load_bundle_voice(bundle_dir, engine, threads)


def _default_validator(bundle_dir: Path):
    from voicelane.bundle import validate_voice_bundle

    return validate_voice_bundle(bundle_dir, level="compat")  # so old minimal bundles get their own reason


@dataclass
class ServedVoice:
    profile_id: str
    bundle_dir: Path
    manifest: dict[str, Any]
    fingerprint: tuple
    manifest_sha256: str
    voice: Any
    files_validated: int
    loaded_at: float = field(default_factory=time.time)
    certificate: dict[str, Any] | None = None  # registry.certificate_of: {certificateId, integrityOk, ...}

    @property
    def sample_rate(self) -> int:
        eng = self.manifest.get("engine") or {}
        return int(eng.get("sample_rate") or 16000)

    def public(self, default: bool = False) -> dict[str, Any]:
        m = self.manifest
        consent = m.get("consent")
        return {
            "profileId": self.profile_id,
            "displayName": m.get("display_name"),
            "lane": m.get("lane"),
            "promotable": m.get("promotable"),
            "language": m.get("language"),
            "createdAt": m.get("created_at"),
            "engine": m.get("engine"),
            "eval": m.get("eval"),
            "consentRecorded": bool(consent),
            "baseWeights": ((m.get("provenance") or {}).get("base_weights") or {}).get("id"),
            "bundleVersion": m.get("bundle_version"),
            "manifestSha256": self.manifest_sha256,
            "filesValidated": self.files_validated,
            "certificate": self.certificate,
            "runtime": type(self.voice).__name__,
            "default": default,
        }


@dataclass
class RefusedBundle:
    profile_id: str
    bundle_dir: Path
    fingerprint: tuple | None
    code: str
    message: str

    def public(self) -> dict[str, Any]:
        return {"profileId": self.profile_id, "code": self.code, "message": self.message}


def _fingerprint(bundle_dir: Path) -> tuple | None:
    try:
        st = os.lstat(bundle_dir / "manifest.json")
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class VoiceRegistry:
    def __init__(
        self,
        roots: list[Path],
        engine: str = "auto",
        threads: int = 1,
        loader: Loader | None = None,
        validator: Callable[[Path], Any] | None = None,
    ):
        self.roots = [Path(r) for r in roots]
        self.engine = engine
        self.threads = threads
        self.loader = loader or _default_loader
        self.validator = validator or _default_validator
        self.served: dict[str, ServedVoice] = {}
        self.refused: dict[str, RefusedBundle] = {}
        self._lock = threading.Lock()  # guards the two dicts (swapped whole)
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_refresh: float | None = None

    # --- queries ------------------------------------------------------------------------
    def get(self, profile_id: str) -> ServedVoice | None:
        with self._lock:
            return self.served.get(profile_id)

    def refused_for(self, profile_id: str) -> RefusedBundle | None:
        with self._lock:
            return self.refused.get(profile_id)

    def snapshot(self) -> tuple[dict[str, ServedVoice], dict[str, RefusedBundle]]:
        with self._lock:
            return dict(self.served), dict(self.refused)

    def __len__(self) -> int:
        with self._lock:
            return len(self.served)

    # --- scanning -----------------------------------------------------------------------
    def candidates(self) -> list[tuple[str, Path]]:
        seen: set[str] = set()
        out: list[tuple[str, Path]] = []
        for root in self.roots:
            base = root / "bundles"
            try:
                names = sorted(os.listdir(base))
            except OSError:
                continue
            for name in names:
                bdir = base / name / "voice_bundle"
                if name in seen or name.startswith(".") or not bdir.is_dir():
                    continue
                seen.add(name)
                out.append((name, bdir))
        return out

    def refresh(self) -> dict[str, list[str]]:
        """Rescan the roots; (re)load what changed. Returns {loaded, refused, removed}."""
        with self._refresh_lock:
            old_served, old_refused = self.snapshot()
            served: dict[str, ServedVoice] = {}
            refused: dict[str, RefusedBundle] = {}
            changes: dict[str, list[str]] = {"loaded": [], "refused": [], "removed": []}
            for name, bdir in self.candidates():
                fp = _fingerprint(bdir)
                prev = old_served.get(name)
                if prev is not None and prev.bundle_dir == bdir and prev.fingerprint == fp and fp is not None:
                    served[name] = prev
                    continue
                prev_r = old_refused.get(name)
                if prev_r is not None and prev_r.bundle_dir == bdir and prev_r.fingerprint == fp:
                    refused[name] = prev_r
                    continue
                result = self._load(name, bdir, fp)
                if isinstance(result, ServedVoice):
                    served[name] = result
                    changes["loaded"].append(name)
                    log.info("serving voice %s from %s", name, bdir)
                else:
                    refused[name] = result
                    changes["refused"].append(name)
                    log.warning("refusing bundle %s: %s: %s", bdir, result.code, result.message)
            changes["removed"] = sorted(set(old_served) - set(served) - set(refused))
            with self._lock:
                self.served, self.refused = served, refused
            self.last_refresh = time.time()
            return changes

    def _load(self, name: str, bdir: Path, fp: tuple | None) -> ServedVoice | RefusedBundle:
        def refuse(code: str, message: str) -> RefusedBundle:
            return RefusedBundle(name, bdir, fp, code, message)

        try:
            res = self.validator(bdir)
            if not res.ok:
                err = res.error or {}
                return refuse(err.get("code", "bundle_invalid"), err.get("message", "bundle is invalid"))
            if getattr(res, "level", None) == "compat":
                return refuse(
                    "bundle_compat_only",
                    "old minimal voice_bundle/1 layout (only the five required manifest fields): it "
                    "validates under the compatibility level, but has no voicelane model, config, "
                    "sample and eval, so it is never served",
                )
            why = self._servable(name, res.manifest or {})
            if why:
                return refuse(*why)
            voice, res2 = self.loader(bdir, self.engine, self.threads)
            manifest = res2.manifest or {}
            why = self._servable(name, manifest)  # re-check what the loader validated
            if why:
                return refuse(*why)
            try:
                msha = hashlib.sha256((bdir / "manifest.json").read_bytes()).hexdigest()
            except OSError as exc:
                return refuse("manifest_missing", str(exc))
            from voicelane.registry import certificate_of

            cert = certificate_of(bdir)
            if cert is not None and not cert["integrityOk"]:
                return refuse(
                    "certificate_stale",
                    "the bundle files are not the ones its verify certificate "
                    "bound: " + ", ".join(cert["changed"] or ["no bundle files bound"]),
                )
            return ServedVoice(
                name, bdir, manifest, fp or (), msha, voice, int(res2.files_validated or 0), certificate=cert
            )
        except VoicelaneError as err:
            return refuse(err.code, err.message)
        except Exception as exc:  # noqa: BLE001 - a broken bundle must not take the service down
            return refuse("load_failed", f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _servable(name: str, manifest: dict[str, Any]) -> tuple[str, str] | None:
        lane = manifest.get("lane")
        if lane != "production":
            return (
                "lane_not_servable",
                f"bundle lane is {lane!r}: only production-lane bundles are served "
                "(experimental outputs are never promoted)",
            )
        if manifest.get("promotable") is False:
            return ("not_promotable", "the production run did not pass its evaluation gates (promotable: false)")
        if manifest.get("voice_profile_id") != name:
            return (
                "profile_mismatch",
                f"manifest voice_profile_id {manifest.get('voice_profile_id')!r} differs from the folder {name!r}",
            )
        return None

    # --- background rescans ----------------------------------------------------------------
    def start_polling(self, interval_s: float) -> None:
        if interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:
                    log.exception("voice rescan failed")

        self._thread = threading.Thread(target=loop, name="voicelane-voice-rescan", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

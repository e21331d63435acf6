"""The voice registry (src/voicelane/registry.py): versioned atomic publish, rollback, pruning,
the publish gate, and verify certificates re-checked by the service at every load. Uses the real
bundle of the shared tiny orchestrator run (tests/test_ops_support.local_run)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from test_ops_support import local_run
from voicelane import registry
from voicelane.errors import VoicelaneError


@pytest.fixture(scope="module")
def bundle() -> Path:
    lr = local_run()
    assert lr.run.rc == 0, lr.run.stdout[-3000:]
    return lr.bundle


def _variant(src: Path, dest: Path) -> Path:
    """The same voice with another display name: a different, valid bundle (manifest re-exported)."""
    from voicelane.bundle import export_bundle

    man = json.loads((src / "manifest.json").read_text("utf-8"))
    files = {f["path"]: src / f["path"] for f in man["files"]}
    extra = {
        k: v
        for k, v in man.items()
        if k not in ("bundle_version", "voice_profile_id", "display_name", "created_at", "files")
    }
    export_bundle(dest, man["voice_profile_id"], "Variant " + man["display_name"], files, man["created_at"], extra)
    return dest / "bundles" / man["voice_profile_id"] / "voice_bundle"


def test_publish_versions_rollback_and_prune(bundle, tmp_path):
    root = tmp_path / "reg"
    p1 = registry.publish(bundle, root)
    assert (p1.version, p1.previous) == (1, None) and p1.bundle == root / "bundles" / p1.profile / "voice_bundle"
    other = _variant(bundle, tmp_path / "variant")
    p2 = registry.publish(other, root)
    assert (p2.version, p2.previous) == (2, 1) and p2.manifest_sha256 != p1.manifest_sha256
    assert registry.status(root)[0]["kept"] == [1]
    back = registry.rollback(root, p1.profile)
    assert back.version == 1 and back.manifest_sha256 == p1.manifest_sha256
    assert registry.read_record(root, p1.profile)["current"] == 1
    with pytest.raises(VoicelaneError) as e:
        registry.rollback(root, p1.profile)
    assert e.value.code == "invalid_argument"
    for _ in range(5):
        registry.publish(bundle, root)
    st = registry.status(root)[0]
    assert st["current"] == 7 and len(st["kept"]) == registry.KEEP_VERSIONS
    assert not list((root / "bundles" / p1.profile).glob(".publish-*"))


def test_readers_never_see_the_live_folder_missing(bundle, tmp_path):
    root = tmp_path / "reg"
    first = registry.publish(bundle, root)
    live = first.bundle / "manifest.json"
    missing, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not os.path.exists(live):
                missing.append(1)

    t = threading.Thread(target=watch)
    t.start()
    try:
        for _ in range(4):
            registry.publish(bundle, root)
    finally:
        stop.set()
        t.join()
    assert not missing


def test_publish_refuses_what_must_not_be_served(bundle, tmp_path):
    root = tmp_path / "reg"
    broken = tmp_path / "broken" / "voice_bundle"
    shutil.copytree(bundle, broken)
    (broken / "sample.wav").write_bytes(b"RIFF")
    with pytest.raises(VoicelaneError) as e:
        registry.publish(broken, root)
    assert e.value.code == "bundle_invalid" and e.value.details["validator_code"] in (
        "bytes_mismatch",
        "checksum_mismatch",
    )
    unpromotable = _variant(bundle, tmp_path / "u")
    man = json.loads((unpromotable / "manifest.json").read_text("utf-8"))
    ev = json.loads((unpromotable / "eval.json").read_text("utf-8"))
    ev["gates"] = {"thresholds": {"wer_max": 0.0}, "failed": [{"gate": "wer_max"}], "passed": False}
    failing = _reexport_with_eval(unpromotable, tmp_path / "f", ev, dict(man, promotable=False))
    with pytest.raises(VoicelaneError) as e:
        registry.publish(failing, root)
    assert e.value.code == "eval_gate_failed"
    assert not (root / "bundles").exists()


def _reexport_with_eval(src: Path, dest: Path, ev: dict, man: dict) -> Path:
    from voicelane.bundle import export_bundle

    (dest / "src").mkdir(parents=True)
    (dest / "src" / "eval.json").write_text(json.dumps(ev), "utf-8")
    files = {
        f["path"]: (dest / "src" / "eval.json") if f["path"] == "eval.json" else src / f["path"] for f in man["files"]
    }
    extra = {
        k: v
        for k, v in man.items()
        if k not in ("bundle_version", "voice_profile_id", "display_name", "created_at", "files")
    }
    export_bundle(dest, man["voice_profile_id"], man["display_name"], files, man["created_at"], extra)
    return dest / "bundles" / man["voice_profile_id"] / "voice_bundle"


def _certificate(bundle_dir: Path, status: str = "issued") -> dict:
    """The bundle part of a verify certificate for ``bundle_dir`` as it is now."""
    from voicelane.fsutil import sha256_file

    man = json.loads((bundle_dir / "manifest.json").read_text("utf-8"))
    bound = [
        {
            "role": "bundle_manifest",
            "name": "bundle/manifest.json",
            **dict(zip(("sha256", "bytes"), sha256_file(bundle_dir / "manifest.json"))),
        }
    ]
    bound += [
        {"role": "bundle_file", "name": f"bundle/{f['path']}", "sha256": f["sha256"], "bytes": f["bytes"]}
        for f in man["files"]
    ]
    return {
        "certificate": {"status": status, "certificateId": "vlcert-test", "certificateHash": "0" * 64, "bound": bound}
    }


def test_certificates_are_bound_at_publish_and_rechecked_by_the_service(bundle, tmp_path):
    from voicelane.service.core.voices import VoiceRegistry

    root = tmp_path / "reg"
    with pytest.raises(VoicelaneError) as e:
        registry.publish(bundle, root, certificate=_certificate(bundle, status="rejected"))
    assert e.value.code == "verify_failed"
    other = _variant(bundle, tmp_path / "variant")
    with pytest.raises(VoicelaneError) as e:
        registry.publish(bundle, root, certificate=_certificate(other))
    assert e.value.code == "certificate_stale"
    pub = registry.publish(bundle, root, certificate=_certificate(bundle))
    voices = VoiceRegistry([root])
    voices.refresh()
    served = voices.get(pub.profile)
    assert served is not None and served.public()["certificate"]["integrityOk"] is True
    # the live folder replaced behind the registry's back by another valid bundle: refused
    shutil.rmtree(pub.bundle)
    shutil.copytree(other, pub.bundle)
    voices.refresh()
    assert voices.get(pub.profile) is None
    assert voices.refused_for(pub.profile).code == "certificate_stale"

"""voice_bundle/1 export and validation (SPEC §8): every validator code, on real files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from voicelane import bundle as B
from voicelane.errors import VoicelaneError

CREATED = "2026-01-01T00:00:00Z"


def make_sources(tmp_path: Path, extra: dict[str, bytes] | None = None) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    contents = {
        "model.safetensors": b"\x00model-weights" * 64,
        "voice_config.json": b'{"sample_rate": 22050}\n',
        "sample.wav": b"RIFF....WAVEfmt " + bytes(range(256)),
        "eval.json": b'{"wer": 0.1}\n',
        **(extra or {}),
    }
    out = {}
    for rel, data in contents.items():
        p = src / rel.replace("/", "__")
        p.write_bytes(data)
        out[rel] = p
    return out


def export(tmp_path: Path, pid: str = "demo_voice", **kw) -> B.ValidationResult:
    files = kw.pop("files", None) or make_sources(tmp_path)
    return B.export_bundle(
        tmp_path / "root", pid, kw.pop("display_name", "Demo Voice"), files, kw.pop("created_at", CREATED), **kw
    )


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    res = export(tmp_path)
    assert res.ok, res.error
    return B.bundle_dir_for(tmp_path / "root", "demo_voice")


def read_manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def write_manifest(d: Path, m: dict) -> None:
    (d / "manifest.json").write_text(json.dumps(m, indent=2))


def add_entry(d: Path, path: str, data: bytes = b"x") -> dict:
    """List `path` in the manifest with the hash/size of `data` (file not created)."""
    m = read_manifest(d)
    m["files"].append({"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    write_manifest(d, m)
    return m


def code(d: Path) -> str | None:
    res = B.validate_voice_bundle(d)
    assert res.ok is False, "expected the bundle to be rejected"
    assert set(res.error) == {"code", "message", "details"}
    return res.error["code"]


# ---------------------------------------------------------------------------- happy path


def test_export_then_validate_happy_path(tmp_path: Path):
    res = export(
        tmp_path,
        extra={
            "lane": "production",
            "promotable": True,
            "language": "en",
            "engine": {"name": "coqui-vits", "version": "0.28.0", "model_type": "vits", "sample_rate": 22050},
            "consent": None,
            "eval": {"wer": 0.1},
            "future_field": {"anything": [1, 2]},
        },
    )
    d = tmp_path / "root" / "bundles" / "demo_voice" / "voice_bundle"
    assert B.bundle_dir_for(tmp_path / "root", "demo_voice") == d
    assert res.ok and res.profile_id == "demo_voice" and res.files_validated == 4
    assert res.to_dict() == {"ok": True, "profile_id": "demo_voice", "files_validated": 4}
    m = read_manifest(d)
    assert m["bundle_version"] == B.BUNDLE_VERSION == "voice_bundle/1"
    assert [f["path"] for f in m["files"]] == sorted(B.REQUIRED_ROLES.values())
    for f in m["files"]:
        data = (d / f["path"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["bytes"] == len(data)
    assert m["future_field"] == {"anything": [1, 2]}
    assert sorted(os.listdir(d.parent)) == [".export.lock", "voice_bundle"]
    assert B.require_valid(d).ok


def test_export_nested_optional_file_and_dot_slash(tmp_path: Path):
    files = make_sources(tmp_path, {"onnx/model.onnx": b"onnx"})
    files["./voice_config.json"] = files.pop("voice_config.json")
    res = export(tmp_path, files=files)
    d = B.bundle_dir_for(tmp_path / "root", "demo_voice")
    assert res.files_validated == 5
    assert (d / "onnx" / "model.onnx").read_bytes() == b"onnx"
    assert "voice_config.json" in [f["path"] for f in read_manifest(d)["files"]]


def test_manifest_bytes_are_reproducible(tmp_path: Path):
    files = make_sources(tmp_path)
    extra = {
        "provenance": {
            "commit": "abc",
            "config_sha256": "0" * 64,
            "dataset_sha256": None,
            "base_weights": None,
            "license_override": False,
        }
    }
    B.export_bundle(tmp_path / "r1", "demo_voice", "Demo", files, CREATED, extra)
    # different dict order for files and extra, same content
    B.export_bundle(
        tmp_path / "r2", "demo_voice", "Demo", dict(reversed(files.items())), CREATED, dict(reversed(extra.items()))
    )
    m1 = (B.bundle_dir_for(tmp_path / "r1", "demo_voice") / "manifest.json").read_bytes()
    m2 = (B.bundle_dir_for(tmp_path / "r2", "demo_voice") / "manifest.json").read_bytes()
    assert m1 == m2
    assert m1 == (json.dumps(json.loads(m1), sort_keys=True, indent=2) + "\n").encode()
    B.export_bundle(tmp_path / "r3", "demo_voice", "Demo", files, "2026-01-02T00:00:00Z", extra)
    assert (B.bundle_dir_for(tmp_path / "r3", "demo_voice") / "manifest.json").read_bytes() != m1


def test_export_over_existing_bundle_replaces_it(tmp_path: Path):
    export(tmp_path)
    files = make_sources(tmp_path, {"model.safetensors": b"new weights"})
    res = export(tmp_path, files=files, display_name="Second")
    d = B.bundle_dir_for(tmp_path / "root", "demo_voice")
    assert res.ok and res.manifest["display_name"] == "Second"
    assert (d / "model.safetensors").read_bytes() == b"new weights"
    assert sorted(os.listdir(d.parent)) == [".export.lock", "voice_bundle"]


@pytest.mark.parametrize("bad_export", ["missing_role", "missing_source", "bad_created_at", "unsafe_dest"])
def test_failed_export_keeps_previous_bundle_and_leaves_no_staging(tmp_path: Path, bad_export):
    export(tmp_path)
    d = B.bundle_dir_for(tmp_path / "root", "demo_voice")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    files = make_sources(tmp_path, {"model.safetensors": b"replacement"})
    kw: dict = {}
    expected = {
        "missing_role": "required_file_missing",
        "missing_source": "required_file_missing",
        "bad_created_at": "manifest_invalid",
        "unsafe_dest": "path_unsafe",
    }[bad_export]
    if bad_export == "missing_role":
        del files["sample.wav"]
    elif bad_export == "missing_source":
        files["eval.json"] = tmp_path / "nope.json"
    elif bad_export == "bad_created_at":
        kw["created_at"] = "2026-01-01 00:00:00"
    else:
        files["../escape.bin"] = files["eval.json"]
    with pytest.raises(VoicelaneError) as exc:
        export(tmp_path, files=files, **kw)
    assert exc.value.code == expected
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert sorted(os.listdir(d.parent)) == [".export.lock", "voice_bundle"]
    assert B.validate_voice_bundle(d).ok
    assert not (tmp_path / "root" / "bundles" / "escape.bin").exists()


def test_export_recovers_from_crash_mid_swap(tmp_path: Path):
    export(tmp_path)
    d = B.bundle_dir_for(tmp_path / "root", "demo_voice")
    os.rename(d, d.parent / ".old-deadbeef")  # crash after moving the old bundle away
    (d.parent / ".staging-zzz").mkdir()  # and a leftover staging folder
    with pytest.raises(VoicelaneError):
        export(tmp_path, files={"eval.json": make_sources(tmp_path)["eval.json"]})
    assert sorted(os.listdir(d.parent)) == [".export.lock", "voice_bundle"]
    assert B.validate_voice_bundle(d).ok


def test_export_rejects_extra_overriding_required_fields(tmp_path: Path):
    with pytest.raises(VoicelaneError) as exc:
        export(tmp_path, extra={"voice_profile_id": "other"})
    assert exc.value.code == "invalid_argument"
    assert not (tmp_path / "root" / "bundles" / "demo_voice" / "voice_bundle").exists()


# ---------------------------------------------------------------------------- manifest


def test_manifest_missing(bundle_dir: Path, tmp_path: Path):
    (bundle_dir / "manifest.json").unlink()
    assert code(bundle_dir) == "manifest_missing"
    assert code(tmp_path / "does-not-exist") == "manifest_missing"


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe{}", b"[]", b'{"files": [], "files": []}'])
def test_manifest_invalid_json(bundle_dir: Path, raw: bytes):
    (bundle_dir / "manifest.json").write_bytes(raw)
    assert code(bundle_dir) == "manifest_invalid"


def test_manifest_invalid_nan(bundle_dir: Path):
    text = (bundle_dir / "manifest.json").read_text()
    (bundle_dir / "manifest.json").write_text('{\n  "eval": {"wer": NaN},' + text[1:])
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "manifest_invalid" and "NaN" in res.error["message"]


def test_manifest_too_large(bundle_dir: Path, monkeypatch):
    size = (bundle_dir / "manifest.json").stat().st_size
    monkeypatch.setattr(B, "MAX_MANIFEST_BYTES", size)
    assert B.validate_voice_bundle(bundle_dir).ok
    monkeypatch.setattr(B, "MAX_MANIFEST_BYTES", size - 1)
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "manifest_invalid" and res.error["details"]["reason"] == "too large"


def test_manifest_invalid_duplicate_key(bundle_dir: Path):
    text = (bundle_dir / "manifest.json").read_text()
    assert text.startswith("{\n")
    (bundle_dir / "manifest.json").write_text('{\n  "display_name": "Shadow",' + text[1:])
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "manifest_invalid" and "duplicate" in res.error["message"]


@pytest.mark.parametrize(
    "mutate, pointer",
    [
        (lambda m: m.pop("display_name"), ""),
        (lambda m: m.pop("files"), ""),
        (lambda m: m.update(bundle_version="voice_bundle/2"), "/bundle_version"),
        (lambda m: m["files"][0].update(sha256="GG" * 32), "/files/0/sha256"),
        (lambda m: m["files"][0].update(sha256="ab" * 31), "/files/0/sha256"),
        (lambda m: m["files"][0].update(sha256="ab" * 32 + "\n"), "/files/0/sha256"),
        (lambda m: m["files"][1].update(bytes=-1), "/files/1/bytes"),
        (lambda m: m["files"][1].update(bytes="12"), "/files/1/bytes"),
        (lambda m: m.update(created_at="2026-01-01T00:00:00+02:00"), "/created_at"),
        (lambda m: m.update(created_at="2026-13-01T00:00:00Z"), "/created_at"),
        (lambda m: m.update(voice_profile_id="Demo Voice"), "/voice_profile_id"),
        (lambda m: m.update(voice_profile_id="demo\n"), "/voice_profile_id"),
        (lambda m: m.update(lane="staging"), "/lane"),
        (lambda m: m.update(consent={"speaker_name": "x"}), "/consent"),
    ],
)
def test_manifest_invalid_schema(bundle_dir: Path, mutate, pointer):
    m = read_manifest(bundle_dir)
    mutate(m)
    write_manifest(bundle_dir, m)
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "manifest_invalid"
    assert res.error["details"]["pointer"] == pointer


def test_schema_is_valid_draft_2020_12_and_shipped():
    schema = B.load_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"bundle_version", "voice_profile_id", "display_name", "created_at", "files"}
    path = Path(B.__file__).parent / "schemas" / "voice_bundle.schema.json"
    assert json.loads(path.read_text()) == schema


# ---------------------------------------------------------------------------- files


def test_required_file_missing_when_listed_file_deleted(bundle_dir: Path):
    (bundle_dir / "sample.wav").unlink()
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "required_file_missing"
    assert res.error["details"]["path"] == "sample.wav"


def test_required_file_missing_when_role_not_listed(bundle_dir: Path):
    m = read_manifest(bundle_dir)
    m["files"] = [f for f in m["files"] if f["path"] != "eval.json"]
    write_manifest(bundle_dir, m)
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "required_file_missing"
    assert res.error["details"] == {"role": "eval", "path": "eval.json"}


def test_listed_folder_is_not_a_file(bundle_dir: Path):
    (bundle_dir / "sub").mkdir()
    add_entry(bundle_dir, "sub")
    assert code(bundle_dir) == "required_file_missing"


def test_bytes_mismatch_is_reported_without_hashing(bundle_dir: Path, monkeypatch):
    with open(bundle_dir / "model.safetensors", "ab") as fh:
        fh.write(b"!")
    listed = [f["path"] for f in read_manifest(bundle_dir)["files"]]
    hashed = []
    real_hash = B._hash_fd

    def counting(fd):
        hashed.append(fd)
        return real_hash(fd)

    monkeypatch.setattr(B, "_hash_fd", counting)
    res = B.validate_voice_bundle(bundle_dir)
    assert len(hashed) == listed.index("model.safetensors")  # only the files listed before it
    assert res.error["code"] == "bytes_mismatch"
    assert res.error["details"]["actual_bytes"] == res.error["details"]["expected_bytes"] + 1


def test_checksum_mismatch_same_size(bundle_dir: Path):
    p = bundle_dir / "sample.wav"
    data = bytearray(p.read_bytes())
    data[10] ^= 0x01
    p.write_bytes(bytes(data))
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "checksum_mismatch"
    assert res.error["details"]["path"] == "sample.wav"


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../outside.bin",
        "a/../../outside.bin",
        "sub\\model.bin",
        "C:/model.bin",
        "",
        "a\x00b",
        "a//b",
        "manifest.json",
        "./manifest.json",
        ".",
    ],
)
def test_path_unsafe_names(bundle_dir: Path, path: str):
    add_entry(bundle_dir, path)
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "path_unsafe", (path, res.error)


def test_path_unsafe_symlink_file_leaving_bundle(bundle_dir: Path, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x")  # matches the manifest entry: only the path check can refuse it
    (bundle_dir / "link.bin").symlink_to(secret)
    add_entry(bundle_dir, "link.bin", b"x")
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "path_unsafe"
    assert res.error["details"]["path"] == "link.bin"


def test_path_unsafe_symlinked_directory_leaving_bundle(bundle_dir: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"x")
    (bundle_dir / "sub").symlink_to(outside, target_is_directory=True)
    add_entry(bundle_dir, "sub/w.bin", b"x")
    assert code(bundle_dir) == "path_unsafe"


def test_path_unsafe_symlink_to_manifest(bundle_dir: Path):
    (bundle_dir / "alias.json").symlink_to("manifest.json")
    add_entry(bundle_dir, "alias.json")
    assert code(bundle_dir) == "path_unsafe"


def test_manifest_symlink_leaving_bundle_is_not_read(bundle_dir: Path, tmp_path: Path):
    outside = tmp_path / "m.json"
    outside.write_bytes((bundle_dir / "manifest.json").read_bytes())  # a valid manifest
    (bundle_dir / "manifest.json").unlink()
    (bundle_dir / "manifest.json").symlink_to(outside)
    assert code(bundle_dir) == "path_unsafe"


@pytest.mark.parametrize(
    "path", ["manifest.json", "./manifest.json", "", "a//b", "x/../y", "/abs", "D:x", "a\\b", "n\x00ul", "."]
)
def test_normalise_bundle_path_refuses(path: str, tmp_path: Path):
    assert B.normalise_bundle_path(path)[0] is None
    with pytest.raises(VoicelaneError) as exc:  # the exporter refuses them too
        export(tmp_path, files={**make_sources(tmp_path), path: tmp_path / "src" / "eval.json"})
    assert exc.value.code == "path_unsafe"
    assert not (tmp_path / "root" / "bundles" / "demo_voice" / "voice_bundle").exists()


def test_normalise_bundle_path_accepts():
    assert B.normalise_bundle_path("./a/./b.wav") == ("a/b.wav", None)
    assert B.normalise_bundle_path("model.safetensors") == ("model.safetensors", None)


def test_symlink_inside_bundle_is_allowed(bundle_dir: Path):
    (bundle_dir / "copy.wav").symlink_to("sample.wav")
    add_entry(bundle_dir, "copy.wav", (bundle_dir / "sample.wav").read_bytes())
    assert B.validate_voice_bundle(bundle_dir).files_validated == 5


def test_fifo_is_refused_without_blocking(bundle_dir: Path):
    os.mkfifo(bundle_dir / "pipe")
    add_entry(bundle_dir, "pipe")
    assert code(bundle_dir) == "path_unsafe"


def test_first_failure_follows_manifest_order(bundle_dir: Path):
    """The old validator's order: the manifest, then each file in manifest order (all its checks)."""
    listed = [f["path"] for f in read_manifest(bundle_dir)["files"]]
    first, second = listed[0], listed[1]
    data = bytearray((bundle_dir / first).read_bytes())
    data[-1] ^= 0x01
    (bundle_dir / first).write_bytes(bytes(data))  # checksum_mismatch at files[0]
    (bundle_dir / second).unlink()  # required_file_missing at files[1]
    add_entry(bundle_dir, "../x")  # path_unsafe at the end
    res = B.validate_voice_bundle(bundle_dir)
    assert (res.error["code"], res.error["details"]["index"]) == ("checksum_mismatch", 0)
    (bundle_dir / first).write_bytes(b"short")
    assert code(bundle_dir) == "bytes_mismatch"
    m = read_manifest(bundle_dir)
    m["created_at"] = "yesterday"  # a manifest fault wins over every file fault
    write_manifest(bundle_dir, m)
    assert code(bundle_dir) == "manifest_invalid"


def test_upper_case_sha256_is_accepted(bundle_dir: Path):
    m = read_manifest(bundle_dir)
    for f in m["files"]:
        f["sha256"] = f["sha256"].upper()
    write_manifest(bundle_dir, m)
    assert B.validate_voice_bundle(bundle_dir).ok
    p = bundle_dir / m["files"][0]["path"]
    data = bytearray(p.read_bytes())
    data[0] ^= 0x01
    p.write_bytes(bytes(data))
    assert code(bundle_dir) == "checksum_mismatch"


def _minimal_bundle(tmp_path: Path) -> Path:
    """A bundle in the old minimal layout: the five required manifest fields and its files."""
    d = tmp_path / "old" / "bundles" / "old_voice" / "voice_bundle"
    d.mkdir(parents=True)
    files = []
    for name, data in (("model.pth", b"old-model" * 100), ("config.json", b'{"x": 1}')):
        (d / name).write_bytes(data)
        files.append({"path": name, "sha256": hashlib.sha256(data).hexdigest().upper(), "bytes": len(data)})
    write_manifest(
        d,
        {
            "bundle_version": "voice_bundle/1",
            "voice_profile_id": "old_voice",
            "display_name": "Old Voice",
            "created_at": CREATED,
            "files": files,
        },
    )
    return d


def test_old_minimal_layout_validates_only_under_compat_level(tmp_path: Path):
    d = _minimal_bundle(tmp_path)
    strict = B.validate_voice_bundle(d)
    assert strict.error["code"] == "required_file_missing" and "compat" in strict.error["message"]
    res = B.validate_voice_bundle(d, level="compat")
    assert res.ok and res.level == "compat" and res.files_validated == 2
    assert res.to_dict() == {"ok": True, "profile_id": "old_voice", "files_validated": 2, "level": "compat"}
    assert B.validate_voice_bundle(d, legacy=True) == {"ok": True, "profileId": "old_voice", "filesValidated": 2}
    (d / "config.json").write_bytes(b'{"x": 2}')
    assert B.validate_voice_bundle(d, legacy=True) == {
        "ok": False,
        "failure": {
            "code": "checksum_mismatch",
            "message": "files[1]: 'config.json' sha256 differs from the manifest",
            "details": {
                "index": 1,
                "path": "config.json",
                "expected_sha256": hashlib.sha256(b'{"x": 1}').hexdigest().upper(),
                "actual_sha256": hashlib.sha256(b'{"x": 2}').hexdigest(),
            },
        },
    }
    # a voicelane manifest (additive fields present) that lacks a role never passes as compat
    m = read_manifest(d)
    m["lane"] = "production"
    write_manifest(d, m)
    (d / "config.json").write_bytes(b'{"x": 1}')
    assert B.validate_voice_bundle(d, level="compat").error["code"] == "required_file_missing"


def test_legacy_shape_of_a_full_bundle(bundle_dir: Path):
    res = B.validate_voice_bundle(bundle_dir)
    assert res.level == "full"
    assert res.to_legacy() == {"ok": True, "profileId": "demo_voice", "filesValidated": 4}
    (bundle_dir / "manifest.json").unlink()
    legacy = B.validate_voice_bundle(bundle_dir, legacy=True)
    assert legacy["ok"] is False and legacy["failure"]["code"] == "manifest_missing"
    assert set(legacy["failure"]) == {"code", "message", "details"}


@pytest.mark.parametrize("dup", ["sample.wav", "./sample.wav"])
def test_duplicate_path(bundle_dir: Path, dup: str):
    add_entry(bundle_dir, dup, (bundle_dir / "sample.wav").read_bytes())
    res = B.validate_voice_bundle(bundle_dir)
    assert res.error["code"] == "duplicate_path"
    assert res.error["details"]["path"] == "sample.wav"


def test_unknown_top_level_keys_and_unlisted_files_are_fine(bundle_dir: Path):
    m = read_manifest(bundle_dir)
    m["x_future"] = {"nested": True}
    write_manifest(bundle_dir, m)
    (bundle_dir / "README.txt").write_text("unlisted")
    assert B.validate_voice_bundle(bundle_dir).ok


# ---------------------------------------------------------------------------- helpers


def test_require_valid_raises_validator_code(bundle_dir: Path):
    assert B.require_valid(bundle_dir).profile_id == "demo_voice"
    (bundle_dir / "eval.json").write_bytes(b"{}")
    with pytest.raises(VoicelaneError) as exc:
        B.require_valid(bundle_dir)
    assert exc.value.code == "bytes_mismatch"
    assert exc.value.details["path"] == "eval.json"
    res = B.validate_voice_bundle(bundle_dir)
    assert res.to_dict() == {"ok": False, "error": res.error}


@pytest.mark.parametrize(
    "pid, ok",
    [
        ("demo_voice", True),
        ("a", True),
        ("0-x_y", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("Demo", False),
        ("_x", False),
        ("-x", False),
        ("a/b", False),
        ("..", False),
        ("demo\n", False),
        (None, False),
        (3, False),
    ],
)
def test_validate_profile_id(pid, ok, tmp_path: Path):
    if ok:
        assert B.validate_profile_id(pid) == pid
        return
    with pytest.raises(VoicelaneError) as exc:
        B.validate_profile_id(pid)
    assert exc.value.code == "profile_id_invalid"
    with pytest.raises(VoicelaneError):
        B.export_bundle(tmp_path, pid, "X", {}, CREATED)
    assert not (tmp_path / "bundles").exists()


def test_created_at_from():
    assert B.created_at_from("0", "2020-05-05T00:00:00Z") == "1970-01-01T00:00:00Z"
    assert B.created_at_from(" 1767225600 ", "x") == "2026-01-01T00:00:00Z"
    assert B.created_at_from(None, "2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z"
    assert B.created_at_from("", "2026-01-01T02:00:00.5+02:00") == "2026-01-01T00:00:00Z"
    for bad_sde in ["-1", "1.5", "abc"]:
        with pytest.raises(VoicelaneError) as exc:
            B.created_at_from(bad_sde, CREATED)
        assert exc.value.code == "invalid_argument"
    with pytest.raises(VoicelaneError):
        B.created_at_from(None, "2026-01-01T00:00:00")  # naive: ambiguous

"""Weights allowlist and licence gate (SPEC §6): code, weights and data licences checked separately."""

from __future__ import annotations

import json

import pytest

from voicelane import weights
from voicelane.errors import VoicelaneError


def write_allowlist(tmp_path, entries):
    p = tmp_path / "allow.json"
    p.write_text(json.dumps({"schema": "weights_allowlist/1", "weights": entries}))
    return p


def entry(**kw):
    e = {
        "id": "w1",
        "path": "w1",
        "file": "model.safetensors",
        "sha256": None,
        "code_license": "MPL-2.0",
        "weights_license": "MIT",
        "data_license": "CC-BY-4.0",
        "commercial_use_allowed": True,
    }
    e.update(kw)
    return e


def gate(tmp_path, accept=False, **kw):
    return weights.licence_gate("w1", accept, write_allowlist(tmp_path, [entry(**kw)]))


def test_clean_licences_pass(tmp_path):
    g = gate(tmp_path)
    assert g.passed and not g.override
    assert g.provenance()["commercial_use_allowed"] is True
    assert {c.which for c in g.checks} == {"code", "weights", "data"}


def test_unknown_id_is_rejected(tmp_path):
    with pytest.raises(VoicelaneError) as e:
        weights.licence_gate("nope", False, write_allowlist(tmp_path, [entry()]))
    assert e.value.code == "allowlist_rejected" and e.value.details["allowlisted"] == ["w1"]


@pytest.mark.parametrize(
    "field,value",
    [
        ("weights_license", "CC-BY-NC-4.0"),
        ("weights_license", "LicenseRef-Coqui-Public-Model-License-1.0.0"),
        ("data_license", "LicenseRef-Blizzard-2013-noncommercial"),
        ("code_license", "CC-BY-NC-SA-4.0"),
    ],
)
def test_noncommercial_licence_is_refused(tmp_path, field, value):
    with pytest.raises(VoicelaneError) as e:
        gate(tmp_path, **{field: value})
    assert e.value.code == "license_noncommercial"
    which = field.split("_")[0]
    assert {c["which"]: c["verdict"] for c in e.value.details["checks"]}[which] == "noncommercial"


@pytest.mark.parametrize(
    "field,value",
    [
        ("weights_license", None),
        ("code_license", ""),
        ("data_license", "unknown"),
        ("weights_license", "Some-Custom-EULA"),
    ],
)
def test_missing_or_unknown_licence_is_refused(tmp_path, field, value):
    with pytest.raises(VoicelaneError) as e:
        gate(tmp_path, **{field: value})
    assert e.value.code == "license_unknown"


def test_code_and_weights_are_checked_separately(tmp_path):
    """A permissive code licence does not launder non-commercial weights (and vice versa)."""
    with pytest.raises(VoicelaneError) as e:
        gate(tmp_path, code_license="MIT", weights_license="CC-BY-NC-4.0")
    verdicts = {c["which"]: c["verdict"] for c in e.value.details["checks"]}
    assert verdicts["code"] == "ok" and verdicts["weights"] == "noncommercial"


def test_override_is_recorded(tmp_path):
    g = gate(tmp_path, accept=True, weights_license="CC-BY-NC-4.0")
    prov = g.provenance()
    assert g.override and prov["override"] is True
    assert prov["commercial_use_allowed"] is False
    assert prov["gate"]["weights"] == "noncommercial"


def test_sha_mismatch_is_rejected(tmp_path):
    wdir = tmp_path / "w1"
    wdir.mkdir()
    (wdir / "model.safetensors").write_bytes(b"not the allowlisted bytes")
    allow = write_allowlist(tmp_path, [entry(path=str(wdir), sha256="0" * 64)])
    g = weights.licence_gate("w1", False, allow)
    with pytest.raises(VoicelaneError) as e:
        weights.verify_files(g, allow)
    assert e.value.code == "allowlist_rejected"
    (wdir / "model.safetensors").unlink()
    with pytest.raises(VoicelaneError) as e:
        weights.verify_files(g, allow)
    assert e.value.code == "base_weights_missing"


def test_shipped_allowlist_refuses_the_known_restricted_checkpoints():
    for wid in ("piper-en_US-lessac-medium", "coqui-xtts-v2"):
        with pytest.raises(VoicelaneError) as e:
            weights.licence_gate(wid)
        assert e.value.code == "license_noncommercial"


def test_shipped_base_voice_passes_the_gate_and_its_files_match():
    entries = weights.load_allowlist()
    if "voicelane-slt-base-v1" not in entries:
        pytest.skip("base voice not installed yet")
    g = weights.licence_gate("voicelane-slt-base-v1")
    assert g.passed and g.provenance()["commercial_use_allowed"] is True
    wdir = weights.verify_files(g)
    assert (wdir / "voice_config.json").exists() and (wdir / "weights_manifest.json").exists()
    assert (wdir / "model.safetensors").stat().st_size <= 60 * 1024 * 1024

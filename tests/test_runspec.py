"""RunSpec: one description of a run. Every field can be set from the CLI, from an HTTP request
body and from the orchestrator's environment, and a child runs `python -m voicelane run spec.json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import consent_file, mini_corpus
from voicelane import cli
from voicelane.errors import VoicelaneError
from voicelane.ops.common import ENV_FIELDS, run_spec_from_env
from voicelane.runspec import LANES, PRESETS, RunSpec, from_namespace, with_cli_overrides
from voicelane.service.models import TrainStartRequest
from voicelane.service.routes.train import HTTP_FIELDS, SERVICE_FIELDS, run_spec_from_request


@pytest.fixture()
def sample(tmp_path):
    """A value for every RunSpec field, none of them the default."""
    root = (tmp_path / "root").resolve()
    (root / "data").mkdir(parents=True)
    (root / "heldout").mkdir()
    consent = consent_file(root / "consent.txt")
    return root, {
        "job_type": "tts_voice_train",
        "data": root / "data",
        "profile_id": "every_field",
        "out": tmp_path / "o",
        "preset": "tiny",
        "base": "voicelane-slt-base-v1",
        "accept_license_risk": True,
        "consent_statement": consent,
        "speaker_name": "Kal",
        "heldout": root / "heldout",
        "language": "de",
        "seed": 7,
        "steps": 3,
        "display_name": "Every field",
        "min_minutes": 0.5,
        "gates": {"wer_max": 0.9},
        "eval_max": 2,
        "status_path": tmp_path / "st.json",
        "threads": 3,
        "onnx": False,
        "snapshot_every": 2,
        "select_snapshot": True,
        "finetune_scope": "decoder",
        "device": "cpu",
        "nproc": 2,
    }


def _flag_args(field: str, value) -> list[str]:
    flag = {"job_type": "--lane", "profile_id": "--profile"}.get(field, "--" + field.replace("_", "-"))
    if field == "onnx":
        return ["--no-onnx"]
    if isinstance(value, bool):
        return [flag]
    return [flag, json.dumps(value) if isinstance(value, dict) else str(value)]


def _env_value(field: str, value) -> str:
    if field == "onnx":
        return "1" if not value else "0"  # TRAIN_NO_ONNX
    if isinstance(value, bool):
        return "1" if value else "0"
    return json.dumps(value) if isinstance(value, dict) else str(value)


def test_sample_covers_every_field_with_a_non_default(sample):
    _, values = sample
    assert set(values) == set(RunSpec.model_fields)
    for name, info in RunSpec.model_fields.items():
        if not info.is_required():
            assert values[name] != info.default, name


def test_cli_sets_every_field(sample):
    _, values = sample
    argv = ["train"] + [a for f, v in values.items() for a in _flag_args(f, v)]
    spec = from_namespace(cli.build_parser().parse_args(argv))
    assert spec.model_dump() == RunSpec.build(**values).model_dump()


def test_environment_sets_every_field(sample, tmp_path):
    _, values = sample
    assert set(ENV_FIELDS) == set(RunSpec.model_fields)
    env = {ENV_FIELDS[f]: _env_value(f, v) for f, v in values.items()}
    spec = run_spec_from_env(env, cwd=tmp_path)
    assert spec.model_dump() == RunSpec.build(**values).model_dump()


def test_http_body_sets_every_field(sample):
    root, values = sample
    assert set(HTTP_FIELDS.values()) | set(SERVICE_FIELDS) == set(RunSpec.model_fields)
    body = {key: values[field] for key, field in HTTP_FIELDS.items()}
    body = {k: str(v) if isinstance(v, Path) else v for k, v in body.items()}
    req = TrainStartRequest.model_validate(json.loads(json.dumps(body)))
    spec, options = run_spec_from_request(req, values["job_type"], [root], 1, values["out"], values["status_path"])
    assert spec.model_dump() == RunSpec.build(**values).model_dump()
    assert options["jobType"] == "tts_voice_train" and options["nproc"] == 2 and options["device"] == "cpu"


def test_json_round_trip_and_validation(sample):
    _, values = sample
    spec = RunSpec.build(**values)
    assert RunSpec.from_json(spec.to_json()) == spec
    with pytest.raises(VoicelaneError) as exc:
        RunSpec.from_json(spec.to_json().replace('"tiny"', '"huge"'))
    assert exc.value.code == "invalid_argument" and exc.value.details["issues"][0]["field"] == "preset"
    with pytest.raises(VoicelaneError) as exc:
        spec.updated(snapshot_every=0)
    assert exc.value.code == "invalid_argument" and "snapshot_every" in exc.value.message
    with pytest.raises(VoicelaneError):
        RunSpec.from_json(json.dumps(spec.model_dump(mode="json") | {"unknown": 1}))


def test_extra_args_override_and_unknown_flags_are_refused(sample):
    _, values = sample
    spec = with_cli_overrides(RunSpec.build(**values), ["--steps", "9", "--device", "auto"])
    assert (spec.steps, spec.device) == (9, "auto")
    with pytest.raises(VoicelaneError) as exc:
        with_cli_overrides(spec, ["--rm-rf"])
    assert exc.value.code == "invalid_argument"


def test_lanes_and_presets_are_defined_once():
    from voicelane.engine.model import PRESETS as MODEL_PRESETS
    from voicelane.service.routes.train import TRAIN_JOB_TYPES

    assert tuple(MODEL_PRESETS) == PRESETS
    assert set(TRAIN_JOB_TYPES) == set(LANES) - {"dataset"}


def _child_spec(tmp_path: Path, job_type: str, profile_id: str, clips: int, **options: object) -> RunSpec:
    """A spec over the first ``clips`` clips of a real corpus, writing under tmp_path."""
    return RunSpec.build(
        job_type=job_type,
        data=mini_corpus(tmp_path / "data", n=clips),
        profile_id=profile_id,
        out=tmp_path / "out",
        status_path=tmp_path / "status.json",
        **options,
    )


def _run_child(spec: RunSpec, tmp_path: Path) -> subprocess.CompletedProcess:
    path = spec.write(tmp_path / "spec.json")
    return subprocess.run(
        [sys.executable, "-m", "voicelane", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


def test_child_runs_a_spec_file(tmp_path):
    spec = _child_spec(tmp_path, "dataset", "spec_child", 4, min_minutes=0)
    proc = _run_child(spec, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "ARTIFACT dataset/dataset_manifest.json"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "completed" and status["options"]["profile_id"] == "spec_child"


def test_child_refuses_an_invalid_spec(tmp_path):
    (tmp_path / "spec.json").write_text('{"data": "x"}')
    proc = subprocess.run(
        [sys.executable, "-m", "voicelane", "run", str(tmp_path / "spec.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "error: invalid_argument" in proc.stderr


@pytest.mark.slow
def test_child_trains_a_tiny_voice_from_a_spec(tmp_path):
    spec = _child_spec(
        tmp_path,
        "tts_voice_train",
        "spec_tiny",
        8,
        preset="tiny",
        steps=2,
        min_minutes=0,
        eval_max=1,
        onnx=False,
        threads=1,
    )
    proc = _run_child(spec, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "completed"
    assert (tmp_path / "out" / "bundles" / "spec_tiny" / "voice_bundle" / "manifest.json").is_file()

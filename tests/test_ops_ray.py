"""Managed jobs on Ray: the pure mapping pieces, and ONE tiny real job through a real Ray head on
loopback (1 CPU), submitted by the orchestrator with the dataset uploaded as the job's
working_dir and the bundle shipped back and validated here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from test_ops_support import TINY, RayHead, base_env, consent_of, quick_data, run_script
from voicelane.bundle import validate_voice_bundle
from voicelane.errors import VoicelaneError
from voicelane.protocol import fold
from voicelane.runner import ray as rb
from voicelane.runner.ray_job import decode_spec, encode_spec
from voicelane.runspec import RunSpec


def test_ray_states_map_to_ours():
    assert rb.map_ray_state("PENDING") == "running"
    assert rb.map_ray_state("RUNNING") == "running"
    assert rb.map_ray_state("SUCCEEDED", 0) == "completed"
    assert rb.map_ray_state("STOPPED") == "cancelled"
    assert rb.map_ray_state("FAILED", 1) == "error"
    assert rb.map_ray_state("FAILED", 2) == "blocked"
    assert rb.map_ray_state("FAILED", 130) == "cancelled"


def test_the_run_spec_travels_as_json_with_its_paths_mapped(tmp_path):
    data = quick_data(tmp_path / "data", n=2)
    spec = RunSpec.build(
        job_type="tts_voice_train",
        data=data,
        profile_id="p",
        out="o",
        heldout=data,
        consent_statement=tmp_path / "data.consent.txt",
    )
    path = spec.write(tmp_path / "spec.json")
    args = rb.cli_args_of([sys.executable, "-m", "voicelane", "run", str(path)])
    assert rb.spec_of(args, tmp_path) == spec and rb.spec_of(["dataset", "check", "x"], tmp_path) is None
    with pytest.raises(VoicelaneError):
        rb.cli_args_of(["bash", "-c", "rm -rf /"])
    runner = rb.RayRunner(address="http://127.0.0.1:8265")
    payload, out, status = runner._shared_payload(spec, {}, tmp_path)
    shipped = RunSpec.build(**decode_spec(encode_spec(payload))["spec"])
    assert out == tmp_path / "o" and status == out / "train_status.json" and not payload["fetch"]
    assert shipped.out == out and shipped.data == data and shipped.status_path == status
    staging = tmp_path / "staging"
    payload, out, status = runner._upload_payload(spec, {"TRAIN_STATUS_PATH": "s.json"}, tmp_path, staging)
    shipped = RunSpec.build(**payload["spec"])
    assert (shipped.out, shipped.status_path) == (Path("out"), Path("out/train_status.json")) and payload["fetch"]
    assert shipped.data == Path("inputs/data") and (staging / shipped.data / "metadata.csv").is_file()
    assert (staging / shipped.consent_statement).read_text() == (tmp_path / "data.consent.txt").read_text()
    assert status == tmp_path / "s.json"
    env = rb.forwarded_env(
        {
            "VOICELANE_API_TOKEN": "secret",
            "VOICELANE_THREADS": "2",
            "AWS_SECRET": "x",
            "VOICELANE_RAY_TRANSFER": "upload",
            "SOURCE_DATE_EPOCH": "1",
        }
    )
    assert env == {"VOICELANE_THREADS": "2", "SOURCE_DATE_EPOCH": "1", "PYTHONUNBUFFERED": "1"}
    assert " " not in encode_spec({"args": ["a b; rm -rf /"]})
    assert rb.RayRunner(address="http://127.0.0.1:8265").mode == "shared"
    assert rb.RayRunner(address="http://ray-head.internal:8265").mode == "upload"
    with pytest.raises(VoicelaneError) as exc:
        rb.RayRunner(address="http://ray-head.internal:8265")._command_payload(["dataset", "check", "x"], {}, tmp_path)
    assert exc.value.code == "invalid_argument"


def _tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_fetched_bundle_is_validated_before_it_is_swapped_in(tmp_path):
    from test_bundle import export, make_sources
    from voicelane.bundle import bundle_dir_for
    from voicelane.runner.ray_job import pack_outputs

    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    remote.mkdir()
    export(local, display_name="Previous")  # the bundle being served here
    before = _tree(bundle_dir_for(local / "root", "demo_voice"))
    export(remote, files=make_sources(remote, {"eval.json": b'{"wer": 0.2}\n'}))
    remote_bundle = bundle_dir_for(remote / "root", "demo_voice")
    (remote / "root" / "st.json").write_text('{"state": "completed"}')
    (remote_bundle / "sample.wav").write_bytes(b"tampered on the way")
    shipped = pack_outputs(remote / "root", remote / "root" / "st.json")
    with pytest.raises(VoicelaneError) as exc:
        rb.unpack_outputs(shipped, local / "root", local / "status.json")
    assert exc.value.code == "bundle_invalid" and exc.value.details["validator_code"] == "bytes_mismatch"
    assert _tree(bundle_dir_for(local / "root", "demo_voice")) == before
    assert sorted(p.name for p in (local / "root").iterdir()) == ["bundles"]
    assert sorted(os.listdir(bundle_dir_for(local / "root", "demo_voice").parent)) == [".export.lock", "voice_bundle"]
    export(remote, files=make_sources(remote, {"eval.json": b'{"wer": 0.2}\n'}))  # intact again
    rb.unpack_outputs(pack_outputs(remote / "root", remote / "root" / "st.json"), local / "root", local / "status.json")
    assert _tree(bundle_dir_for(local / "root", "demo_voice")) == _tree(remote_bundle) != before
    assert json.loads((local / "status.json").read_text()) == {"state": "completed"}


def test_runner_unavailable_is_a_stable_code():
    runner = rb.RayRunner(address="http://127.0.0.1:9")
    with pytest.raises(VoicelaneError) as exc:
        runner.start([sys.executable, "-m", "voicelane", "train", "--data", "x"], {}, None)
    assert exc.value.code == "managed_job_unavailable" and exc.value.details["address"] == "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def ray_head():
    pytest.importorskip("ray.job_submission", reason="ray[default] is not installed (pip install 'voicelane[ray]')")
    head = RayHead().start()
    yield head
    head.stop()


def test_managed_job_real_tiny_run_on_loopback(ray_head, tmp_path):
    data = quick_data(tmp_path / "data")
    out, status, log = tmp_path / "out", tmp_path / "status.json", tmp_path / "train.log"
    env = base_env(
        TRAIN_BACKEND="managed_job",
        RAY_ADDRESS=ray_head.address,
        VOICELANE_RAY_TRANSFER="upload",
        VOICELANE_RAY_PYTHON=sys.executable,
        AUDIO_PATH=str(data),
        CONSENT_STATEMENT=str(consent_of(data)),
        VOICE_PROFILE_ID="ray_tiny",
        OUT_DIR=str(out),
        TRAIN_STATUS_PATH=str(status),
        LOG_PATH=str(log),
        SOURCE_DATE_EPOCH="315532800",
        **TINY,
    )
    run = run_script(env, timeout=900)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    lines = run.lines
    assert lines[0].startswith("[tts-prod] head=")
    assert lines[-1] == "[tts-prod] status=done backend=managed_job served=ray_tiny version=1"
    assert "[tts-prod] ray_state=SUCCEEDED state=completed" in lines
    job_line = next(x for x in lines if "ray_job_id=" in x)
    assert "transfer=upload" in job_line
    # PROGRESS/STATS/ARTIFACT came through the Ray log and the one parser
    progress = [x for x in lines if x.startswith("[tts-prod] progress=")]
    assert progress and progress[-1].split("=")[1].split("/")[0] == progress[-1].split("/")[-1]
    view = fold(log.read_text("utf-8").splitlines())
    assert view.current == view.total > 0 and "bundles/ray_tiny/voice_bundle/manifest.json" in view.artifacts
    # the bundle was fetched back here and validates; the status says where it ran
    bundle = out / "bundles" / "ray_tiny" / "voice_bundle"
    assert validate_voice_bundle(bundle).ok
    doc = json.loads(status.read_text("utf-8"))
    assert doc["state"] == "completed" and doc["bundle"] == str(bundle)
    assert doc["managed_job"]["backend"] == "ray" and doc["managed_job"]["ray_status"] == "SUCCEEDED"
    assert doc["managed_job"]["job_id"] in job_line
    assert (out / "dataset" / "dataset_manifest.json").is_file()


def test_service_runs_jobs_on_ray_and_stops_them_when_orphaned(ray_head, tmp_path, svc_start_server, svc_kal_corpus):
    """VOICELANE_RUNNER=ray: a job runs to done through Ray with progress and artifacts in its
    record; after the service is killed, the restarted one marks the job orphaned and stops the
    Ray job its predecessor left running."""
    import time

    from ray.job_submission import JobSubmissionClient

    from test_service_jobs import start_job, wait_job

    srv = svc_start_server(
        tmp_path / "svc",
        VOICELANE_RUNNER="ray",
        RAY_ADDRESS=ray_head.address,
        VOICELANE_RAY_TRANSFER="shared",
        VOICELANE_RAY_PYTHON=sys.executable,
        VOICELANE_DATA_ROOTS=str(svc_kal_corpus.parent),
        VOICELANE_BUNDLE_ROOTS=str(tmp_path / "no_bundles"),
    )
    tiny = {"preset": "tiny", "minMinutes": 0, "evalMax": 2, "onnx": False}
    c = srv.client
    done_id = start_job(
        c, jobType="tts_voice_train", dataPath=str(svc_kal_corpus), profile="ray_svc", **(tiny | {"steps": 4})
    )
    job = wait_job(c, done_id, lambda j: j["state"] in ("done", "error", "cancelled"), timeout=900)
    assert job["state"] == "done", job
    assert job["progress"]["current"] == job["progress"]["total"] > 0
    assert "bundles/ray_svc/voice_bundle/manifest.json" in job["artifactRefs"]

    run_id = start_job(
        c, jobType="tts_voice_train", dataPath=str(svc_kal_corpus), profile="ray_orphan", **(tiny | {"steps": 5000})
    )
    wait_job(c, run_id, lambda j: j["state"] == "running" and j["progress"]["current"] >= 3, timeout=600)
    client = JobSubmissionClient(ray_head.address)
    running = [j for j in client.list_jobs() if str(j.status).endswith("RUNNING")]
    assert len(running) == 1
    srv.restart(kill=True)
    job = srv.client.get(f"/api/train/job/{run_id}").json()
    assert job["state"] == "error" and job["error"]["code"] == "orphaned", job
    details = job["error"]["details"]
    assert details["ray_job_id"] == running[0].submission_id
    deadline = time.monotonic() + 60
    while str(client.get_job_status(details["ray_job_id"])).split(".")[-1] != "STOPPED":
        assert time.monotonic() < deadline, "the orphaned Ray job is still running"
        time.sleep(0.5)
    assert srv.client.get(f"/api/train/job/{done_id}").json()["state"] == "done"

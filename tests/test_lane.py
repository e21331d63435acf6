"""The production lane end to end through the real CLI (child processes, real audio, tiny model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import soundfile as sf

from helpers import consent_file, mini_corpus, tiny_train_argv, voicelane_argv
from voicelane.bundle import validate_voice_bundle
from voicelane.protocol import fold, parse_line

RELAXED = json.dumps({"wer_max": 1.5})


def lane_cmd(data, out, *extra, lane="tts_prod_train", steps=4, consent=None):
    cmd = tiny_train_argv(*extra, lane=lane, data=data, profile="t1", out=out, eval_max=2, steps=steps)
    if consent:
        cmd += ["--consent-statement", str(consent)]
    return cmd


def run(cmd, tmp_path, name="status.json", timeout=600, **env_extra):
    env = dict(os.environ, TRAIN_STATUS_PATH=str(tmp_path / name), SOURCE_DATE_EPOCH="1767225600", **env_extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return mini_corpus(tmp_path_factory.mktemp("corpus"), "kal", n=10)


@pytest.fixture(scope="module")
def prod_runs(tmp_path_factory, corpus):
    """The same production command twice, into two output roots."""
    base = tmp_path_factory.mktemp("prod")
    consent = consent_file(base / "consent.txt")
    outs = []
    for i in range(2):
        r = run(lane_cmd(corpus, base / f"out{i}", "--gates", RELAXED, consent=consent), base, f"status{i}.json")
        outs.append((r, base / f"out{i}", base / f"status{i}.json"))
    return outs


def test_prod_lane_produces_a_valid_bundle_that_speaks(prod_runs):
    r, out, status_path = prod_runs[0]
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert all(parse_line(line).kind != "OTHER" for line in lines), "stdout must be pure protocol"
    view = fold(lines)
    assert view.current == view.total and view.total == 4 + 4
    progress = [parse_line(line).current for line in lines if line.startswith("PROGRESS")]
    assert progress == sorted(progress)
    assert view.metadata["phase"] == "bundle" and view.metadata["bundle_valid"] is True
    assert "bundles/t1/voice_bundle/manifest.json" in view.artifacts
    bdir = out / "bundles" / "t1" / "voice_bundle"
    res = validate_voice_bundle(bdir)
    assert res.ok and res.profile_id == "t1"
    manifest = json.loads((bdir / "manifest.json").read_text())
    assert manifest["lane"] == "production" and manifest["consent"]["statement_sha256"]
    assert manifest["provenance"]["dataset_sha256"] == view.metadata["dataset_sha256"]
    # a real model and a real rendered sample
    from safetensors.torch import load_file

    weights = load_file(str(bdir / "model.safetensors"))
    assert sum(v.numel() for v in weights.values()) > 10_000
    audio, sr = sf.read(bdir / "sample.wav")
    assert sr == 16000 and len(audio) > 1600 and np.abs(audio).max() > 0.01
    ev = json.loads((bdir / "eval.json").read_text())
    for key in ("wer", "wer_floor_real_audio", "mcd_db", "f0_median_hz", "duration_ratio", "content_word_recall"):
        assert key in ev
    assert 0.0 <= ev["wer_floor_real_audio"] < 0.6  # the ASR understands the real recordings
    status = json.loads(status_path.read_text())
    assert status["state"] == "completed" and status["progress"]["current"] == status["progress"]["total"]
    assert "rtf" in status["perf"]


def test_same_command_twice_is_byte_identical(prod_runs):
    (r0, out0, _), (r1, out1, _) = prod_runs
    assert r0.returncode == 0 and r1.returncode == 0
    assert r0.stdout == r1.stdout
    b0, b1 = (o / "bundles" / "t1" / "voice_bundle" for o in (out0, out1))
    assert (b0 / "manifest.json").read_bytes() == (b1 / "manifest.json").read_bytes()
    for f in json.loads((b0 / "manifest.json").read_text())["files"]:
        assert (b0 / f["path"]).read_bytes() == (b1 / f["path"]).read_bytes(), f["path"]


def test_speak_cli_with_pytorch_and_onnx(prod_runs, tmp_path):
    _, out, _ = prod_runs[0]
    bdir = out / "bundles" / "t1" / "voice_bundle"
    waves = {}
    for engine in ("pytorch", "onnx"):
        wav = tmp_path / f"{engine}.wav"
        r = subprocess.run(
            voicelane_argv("speak", bundle=bdir, text="Gate twelve is open.", out=wav, engine=engine),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        waves[engine], sr = sf.read(wav)
        assert sr == 16000 and len(waves[engine]) > 800
    assert np.allclose(waves["pytorch"], waves["onnx"], atol=2e-3)


def test_speak_refuses_a_tampered_bundle(prod_runs, tmp_path):
    import shutil

    _, out, _ = prod_runs[0]
    bdir = tmp_path / "b"
    shutil.copytree(out / "bundles" / "t1" / "voice_bundle", bdir)
    data = bytearray((bdir / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (bdir / "model.safetensors").write_bytes(bytes(data))
    r = subprocess.run(
        voicelane_argv("speak", bundle=bdir, text="Hello.", out=tmp_path / "x.wav"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0 and "checksum_mismatch" in r.stderr
    assert not (tmp_path / "x.wav").exists()
    r = subprocess.run(voicelane_argv("validate", str(bdir)), capture_output=True, text=True)
    assert r.returncode == 1 and json.loads(r.stdout)["error"]["code"] == "checksum_mismatch"


def test_consent_is_required_by_the_production_lane(corpus, tmp_path):
    r = run(lane_cmd(corpus, tmp_path / "out"), tmp_path)
    assert r.returncode == 2
    assert "consent_missing" in r.stderr and "next:" in r.stderr
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "blocked" and status["error"]["code"] == "consent_missing"
    assert status["next_action"]
    assert not (tmp_path / "out" / "bundles").exists()


def test_failed_eval_gate_never_replaces_the_served_bundle(prod_runs, corpus, tmp_path):
    import shutil

    _, out0, _ = prod_runs[0]
    out = tmp_path / "out"
    shutil.copytree(out0 / "bundles", out / "bundles")
    before = (out / "bundles" / "t1" / "voice_bundle" / "manifest.json").read_bytes()
    consent = consent_file(tmp_path / "c.txt")
    r = run(
        lane_cmd(corpus, out, "--gates", json.dumps({"wer_max": 0.0, "mcd_db_max": 0.1}), "--no-onnx", consent=consent),
        tmp_path,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["error"]["code"] == "eval_gate_failed"
    assert {f["gate"] for f in status["error"]["details"]["failed"]} == {"wer_max", "mcd_db_max"}
    assert (out / "bundles" / "t1" / "voice_bundle" / "manifest.json").read_bytes() == before
    cand = out / "candidates" / "bundles" / "t1" / "voice_bundle"
    assert validate_voice_bundle(cand).ok
    assert json.loads((cand / "manifest.json").read_text())["promotable"] is False


def test_missing_data_path_is_a_clear_error(tmp_path):
    r = run(lane_cmd(tmp_path / "nope", tmp_path / "out", lane="tts_voice_train"), tmp_path)
    assert r.returncode == 2
    assert "missing_audio_path" in r.stderr
    assert json.loads((tmp_path / "status.json").read_text())["error"]["code"] == "missing_audio_path"


def test_kill_9_then_rerun_resumes_and_finishes(corpus, tmp_path):
    out = tmp_path / "out"
    cmd = lane_cmd(corpus, out, "--no-onnx", lane="tts_voice_train", steps=400)
    env = dict(os.environ, TRAIN_STATUS_PATH=str(tmp_path / "s.json"))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True
    )
    killed_at = None
    for line in proc.stdout:
        ev = parse_line(line)
        if ev.kind == "STATS" and ev.stats.get("phase") == "train" and ev.stats["step"] >= 20:
            killed_at = ev.stats["step"]
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert killed_at is not None
    ckpt = out / "work" / "train" / "checkpoint.pt"
    assert ckpt.exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    train_steps = [
        parse_line(x).stats["step"] for x in r.stdout.splitlines() if x.startswith("STATS") and '"phase":"train"' in x
    ]
    assert train_steps[0] > 10, "the rerun resumed instead of starting over"
    assert train_steps[-1] == 400
    assert validate_voice_bundle(out / "bundles" / "t1" / "voice_bundle").ok
    assert json.loads((tmp_path / "s.json").read_text())["state"] == "completed"


def test_licence_gate_and_finetune_provenance(prod_runs, corpus, tmp_path):
    """Fine-tune from an allowlisted base: refused on a non-commercial weights licence, then run
    with an explicit override, which the bundle records."""
    import hashlib
    import shutil

    _, out0, _ = prod_runs[0]
    src = out0 / "bundles" / "t1" / "voice_bundle"
    wdir = tmp_path / "tiny-base"
    wdir.mkdir()
    for name in ("model.safetensors", "voice_config.json"):
        shutil.copyfile(src / name, wdir / name)
    allow = tmp_path / "allow.json"
    allow.write_text(
        json.dumps(
            {
                "weights": [
                    {
                        "id": "tiny-base",
                        "path": str(wdir),
                        "file": "model.safetensors",
                        "sha256": hashlib.sha256((wdir / "model.safetensors").read_bytes()).hexdigest(),
                        "code_license": "MPL-2.0",
                        "weights_license": "CC-BY-NC-4.0",
                        "data_license": "CC0-1.0",
                        "commercial_use_allowed": False,
                        "license_url": "https://example.invalid/nc",
                    }
                ]
            }
        )
    )
    consent = consent_file(tmp_path / "c.txt")
    out = tmp_path / "out"
    cmd = lane_cmd(corpus, out, "--base", "tiny-base", "--gates", RELAXED, "--no-onnx", consent=consent)
    r = run(cmd, tmp_path, VOICELANE_WEIGHTS_ALLOWLIST=str(allow))
    assert r.returncode == 2 and "license_noncommercial" in r.stderr
    assert not (out / "dataset").exists(), "the gate runs before any data is processed"
    r = run(cmd + ["--accept-license-risk"], tmp_path, VOICELANE_WEIGHTS_ALLOWLIST=str(allow))
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((out / "bundles" / "t1" / "voice_bundle" / "manifest.json").read_text())
    base = manifest["provenance"]["base_weights"]
    assert base["id"] == "tiny-base" and base["override"] is True and base["commercial_use_allowed"] is False
    assert base["weights_license"] == "CC-BY-NC-4.0" and base["code_license"] == "MPL-2.0"
    assert manifest["provenance"]["license_override"] is True
    r = run(
        lane_cmd(corpus, tmp_path / "o2", "--base", "no-such-weights", consent=consent),
        tmp_path,
        VOICELANE_WEIGHTS_ALLOWLIST=str(allow),
    )
    assert r.returncode == 2 and "allowlist_rejected" in r.stderr


def test_data_parallel_training_under_torchrun(corpus, tmp_path):
    """--nproc 2 runs the training stage under PyTorch's launcher (gloo on CPU; NCCL on GPUs)."""
    out = tmp_path / "out"
    r = run(lane_cmd(corpus, out, "--nproc", "2", "--no-onnx", lane="tts_voice_train"), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    steps = [
        parse_line(x).stats["step"] for x in r.stdout.splitlines() if x.startswith("STATS") and '"phase":"train"' in x
    ]
    assert steps and steps[-1] == 4
    assert "torch.distributed" in r.stderr or "OMP_NUM_THREADS" in r.stderr  # the launcher really ran
    assert (out / "work" / "train" / "checkpoint.pt").exists()
    assert validate_voice_bundle(out / "bundles" / "t1" / "voice_bundle").ok


def test_snapshot_selection_bundles_the_best_prompt_snapshot(corpus, tmp_path):
    import torch
    from safetensors.torch import load_file

    consent = consent_file(tmp_path / "consent.txt")
    out = tmp_path / "out"
    r = run(
        lane_cmd(corpus, out, "--gates", RELAXED, "--snapshot-every", "2", "--select-snapshot", consent=consent),
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    status = json.loads((tmp_path / "status.json").read_text())
    table = [row for row in status["snapshot_selection"] if "step" in row]
    assert [row["step"] for row in table] == [2, 4]
    assert "stability" in status["snapshot_selection"][-1]
    best = min(row["prompts_wer"] for row in table)
    # the latest snapshot within the selection margin of the best (selection.py)
    chosen = max(row["step"] for row in table if row["prompts_wer"] <= best + 0.02 + 1e-9)
    select = [json.loads(line[6:]) for line in r.stdout.splitlines() if '"phase":"select"' in line]
    assert select and select[0]["selected_step"] == chosen
    bundle = out / "bundles" / "t1" / "voice_bundle"
    assert validate_voice_bundle(bundle).ok
    assert json.loads((bundle / "voice_config.json").read_text())["selected_step"] == chosen
    shipped = load_file(str(bundle / "model.safetensors"))
    snap = torch.load(out / "work" / "train" / "snapshots" / f"step_{chosen:06d}.pt", weights_only=False)["model"]
    assert all(torch.equal(shipped[k], snap[k]) for k in snap)


def test_select_snapshot_needs_snapshots(corpus, tmp_path):
    r = run(lane_cmd(corpus, tmp_path / "out", "--select-snapshot", consent=consent_file(tmp_path / "c.txt")), tmp_path)
    assert r.returncode != 0 and "invalid_argument" in r.stderr

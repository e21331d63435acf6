"""Issue 11 fault suite: kill -9 the production lane at each stage of a tiny run, then rerun the
same command. The killed run never leaves anything that looks finished (no completed status, no
bundle at its final path unless it validates), and the rerun finishes with a valid bundle.
Slow (one partial run and one full rerun per stage): `pytest -m slow tests/faults`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from helpers import consent_file, mini_corpus, tiny_train_argv
from voicelane.bundle import validate_voice_bundle
from voicelane.protocol import parse_line

pytestmark = pytest.mark.slow

# kill when this is seen on stdout: (phase of a STATS line, minimum train step) or "start" (a timer)
STAGES = {
    "dataset": "start",  # while importing / reading the dataset
    "features": ("dataset", 0),  # the dataset STATS closes that phase: features are being made
    "train": ("train", 3),  # mid-training, after a few steps
    "evaluate": ("train", 30),  # the last training step is done: evaluating
    "export": ("evaluate", 0),  # gates passed: the bundle is being exported
    "finish": ("bundle", 0),  # bundle swapped in: the final status is being written
    "publish": ("bundle", 0),  # with --publish: the bundle is being copied into the voice registry
}


@pytest.fixture(scope="module")
def kill_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_corpus")
    mini_corpus(root / "kal10", "kal", n=10)
    consent_file(root / "consent.txt")
    return root


def _cmd(root, out):
    return tiny_train_argv(
        "--no-onnx",
        data=root / "kal10",
        profile="k1",
        out=out,
        eval_max=2,
        steps=30,
        consent_statement=root / "consent.txt",
        gates='{"wer_max": 1.5, "mcd_db_max": 30}',
    )


def _kill_at(cmd, env, trigger) -> bool:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True
    )
    killed = threading.Event()

    def kill():
        if not killed.is_set():
            killed.set()
            os.killpg(proc.pid, signal.SIGKILL)

    if trigger == "start":
        threading.Timer(4.0, kill).start()
    for line in proc.stdout:
        ev = parse_line(line)
        if (
            trigger != "start"
            and ev.kind == "STATS"
            and ev.stats.get("phase") == trigger[0]
            and ev.stats.get("step", 0) >= trigger[1]
        ):
            kill()
            break
    proc.wait(timeout=120)
    return killed.is_set()


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_9_at_a_stage_then_rerun(stage, kill_corpus, tmp_path):
    out = tmp_path / "out"
    status = tmp_path / "status.json"
    env = dict(os.environ, TRAIN_STATUS_PATH=str(status), OMP_NUM_THREADS="1")
    cmd = _cmd(kill_corpus, out)
    registry = tmp_path / "registry"
    if stage == "publish":
        cmd += ["--publish", "--registry", str(registry)]
    assert _kill_at(cmd, env, STAGES[stage]), f"the run finished before stage {stage}"
    live = registry / "bundles" / "k1" / "voice_bundle"
    if live.exists():
        assert validate_voice_bundle(live).ok, "a partial bundle is live in the registry"
    bundle = out / "bundles" / "k1" / "voice_bundle"
    if status.exists():
        assert json.loads(status.read_text()).get("state") != "completed", "a killed run looks completed"
    if bundle.exists():
        assert validate_voice_bundle(bundle).ok, "a partial bundle sits at the final path"
    dataset_manifest = out / "dataset" / "dataset_manifest.json"
    if dataset_manifest.exists():
        json.loads(dataset_manifest.read_text())  # whole, never torn
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(status.read_text())
    assert doc["state"] == "completed" and doc.get("error") in (None, {}), doc
    assert validate_voice_bundle(bundle).ok
    if stage == "publish":
        assert validate_voice_bundle(live).ok, "the rerun did not publish a valid bundle"
    print(f"{stage}: rerun {time.monotonic() - t0:.0f} s")

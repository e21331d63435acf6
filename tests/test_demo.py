"""The main job (`voicelane demo`): fine-tune the shipped base voice to the embedded kal speaker.

The default suite runs the --quick smoke variant (same path, 20 steps, 4 held-out clips); the
full demo (~15 minutes) is behind `-m slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from voicelane import weights
from voicelane.bundle import validate_voice_bundle
from voicelane.demo import BASE_ID, DEMO_PROFILE
from voicelane.protocol import fold, parse_line

pytestmark = pytest.mark.skipif(BASE_ID not in weights.load_allowlist(), reason="base voice not installed")


def _run_demo(out, *flags, timeout=1800):
    env = dict(os.environ, TRAIN_STATUS_PATH=str(out.parent / "status.json"))  # never the repo's artifacts/
    return subprocess.run(
        [sys.executable, "-m", "voicelane", "demo", "--out", str(out), "--protocol", *flags],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _check_bundle(out):
    bdir = out / "bundles" / DEMO_PROFILE / "voice_bundle"
    assert validate_voice_bundle(bdir).ok
    manifest = json.loads((bdir / "manifest.json").read_text())
    base = manifest["provenance"]["base_weights"]
    assert base["id"] == BASE_ID and base["commercial_use_allowed"] is True and base["override"] is False
    assert base["weights_license"] == "MIT" and base["code_license"] == "MPL-2.0"
    assert manifest["consent"]["statement_sha256"] and manifest["lane"] == "production"
    audio, sr = sf.read(out / "demo_sample.wav")
    assert sr == 16000 and len(audio) / sr > 2.0 and np.abs(audio).max() > 0.05
    return bdir, manifest


def test_demo_quick_runs_the_whole_path(tmp_path):
    r = _run_demo(tmp_path / "demo", "--quick")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines and all(parse_line(x).kind != "OTHER" for x in lines)
    view = fold(lines)
    assert view.current == view.total
    assert view.artifacts[-1] == f"bundles/{DEMO_PROFILE}/voice_bundle/manifest.json"
    _check_bundle(tmp_path / "demo")
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "completed"


@pytest.mark.slow
def test_full_demo_meets_the_voice_targets(tmp_path):
    """Issue targets: held-out kal WER <= 0.25, median F0 within 15% of real kal, MCD to kal
    below the base voice's."""
    r = _run_demo(tmp_path / "demo")
    assert r.returncode == 0, r.stderr[-3000:]
    bdir, manifest = _check_bundle(tmp_path / "demo")
    ev = json.loads((bdir / "eval.json").read_text())
    assert ev["wer"] <= 0.25
    assert abs(ev["f0_median_hz"] - ev["f0_median_real_hz"]) / ev["f0_median_real_hz"] <= 0.15
    base_eval = json.loads((weights.verify_files(weights.licence_gate(BASE_ID)) / "weights_manifest.json").read_text())[
        "training"
    ].get("eval_on_kal")
    if base_eval:
        assert ev["mcd_db"] < base_eval["mcd_db"]

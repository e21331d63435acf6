"""The CLI surface: dataset check, validate, base list, exit codes and hints."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import mini_corpus


def vl(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "voicelane", *args], capture_output=True, text=True, timeout=timeout)


def test_dataset_check_reports_and_exits_by_outcome(tmp_path):
    data = mini_corpus(tmp_path / "d", "kal", n=4)
    r = vl("dataset", "check", str(data), "--min-minutes", "0", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["totals"]["kept"] == 4 and report["error"] is None
    r = vl("dataset", "check", str(data))  # default minimum is 5 minutes: too small
    assert r.returncode == 2 and "dataset_too_small" in r.stderr and "next:" in r.stderr
    meta = data / "metadata.csv"
    meta.write_bytes(b"\xef\xbb\xbf" + meta.read_bytes())
    r = vl("dataset", "check", str(data), "--min-minutes", "0")
    assert r.returncode == 2 and "metadata_invalid" in r.stderr and "line 1" in r.stderr


def test_missing_dataset_path(tmp_path):
    r = vl("dataset", "check", str(tmp_path / "absent"))
    assert r.returncode == 2 and "missing_audio_path" in r.stderr


def test_validate_reports_manifest_missing(tmp_path):
    r = vl("validate", str(tmp_path))
    assert r.returncode == 1 and json.loads(r.stdout)["error"]["code"] == "manifest_missing"


def test_base_list_shows_licence_verdicts():
    r = vl("base", "list")
    assert r.returncode == 0
    assert "piper-en_US-lessac-medium" in r.stdout and "noncommercial" in r.stdout

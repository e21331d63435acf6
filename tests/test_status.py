import json
import os

from voicelane.errors import VoicelaneError
from voicelane.status import StatusWriter, default_status_path, read_status

REQUIRED = {"schema", "job_type", "lane", "state", "status", "progress", "stats", "artifacts",
            "started_at", "updated_at", "finished_at"}


def test_running_then_completed(tmp_path):
    p = tmp_path / "s.json"
    w = StatusWriter(p, "tts_prod_train", "production", total=5)
    doc = read_status(p)
    assert REQUIRED <= set(doc)
    assert doc["state"] == doc["status"] == "running" and doc["finished_at"] is None
    w.progress(2, 5)
    w.artifact("a.json")
    w.completed()
    doc = read_status(p)
    assert doc["state"] == "completed" and doc["finished_at"]
    assert doc["progress"] == {"current": 2, "total": 5} and doc["artifacts"] == ["a.json"]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_error_and_blocked_carry_code_and_next_action(tmp_path):
    p = tmp_path / "s.json"
    StatusWriter(p, "train", "experimental").failed(VoicelaneError("non_finite_loss", "nan", {"step": 3}))
    doc = read_status(p)
    assert doc["state"] == "error" and doc["error"]["code"] == "non_finite_loss"
    assert doc["next_action"]
    StatusWriter(p, "tts_prod_train", "production").failed(VoicelaneError("consent_missing", "no"))
    assert read_status(p)["state"] == "blocked"
    StatusWriter(p, "tts_prod_train", "production").failed(VoicelaneError("cancelled", "stop"))
    assert read_status(p)["state"] == "cancelled"


def test_status_path_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAIN_STATUS_PATH", str(tmp_path / "x.json"))
    assert default_status_path("train") == tmp_path / "x.json"
    monkeypatch.delenv("TRAIN_STATUS_PATH")
    assert str(default_status_path("train")).endswith("artifacts/train_status.train.json")


def test_status_is_valid_json_even_when_read_mid_run(tmp_path):
    p = tmp_path / "s.json"
    w = StatusWriter(p, "train", "experimental", total=100)
    for i in range(50):
        w.progress(i, 100)
        json.loads(p.read_text())

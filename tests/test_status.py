import json
import os

from voicelane.errors import VoicelaneError
from voicelane.status import StatusWriter, default_status_path, finalize, read_status

REQUIRED = {
    "schema",
    "job_type",
    "lane",
    "state",
    "status",
    "progress",
    "stats",
    "artifacts",
    "started_at",
    "updated_at",
    "finished_at",
}


def test_running_then_completed(tmp_path):
    p = tmp_path / "s.json"
    w = StatusWriter(p, "tts_prod_train", "production", total=5)
    doc = read_status(p)
    assert REQUIRED <= set(doc)
    assert doc["state"] == doc["status"] == "running" and doc["finished_at"] is None
    w.progress(2, 5)
    w.artifact("a.json")
    finalize(w.path, doc=w.doc)
    doc = read_status(p)
    assert doc["state"] == "completed" and doc["finished_at"]
    assert doc["progress"] == {"current": 2, "total": 5} and doc["artifacts"] == ["a.json"]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_error_and_blocked_carry_code_and_next_action(tmp_path):
    p = tmp_path / "s.json"
    finalize(StatusWriter(p, "train", "experimental").path, VoicelaneError("non_finite_loss", "nan", {"step": 3}))
    doc = read_status(p)
    assert doc["state"] == "error" and doc["error"]["code"] == "non_finite_loss"
    assert doc["next_action"]
    finalize(p, VoicelaneError("consent_missing", "no"), fresh=True)
    assert read_status(p)["state"] == "blocked"
    finalize(p, VoicelaneError("cancelled", "stop"), fresh=True)
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


def test_finalize_never_unfinishes_and_fills_a_missing_document(tmp_path):
    p = tmp_path / "s.json"
    doc = finalize(p, {"code": "orphaned", "message": "gone"}, state="error", job_type="train", only_if_running=True)
    assert REQUIRED <= set(doc) and doc["lane"] == "experimental" and doc["error"]["code"] == "orphaned"
    assert doc["next_action"] and read_status(p)["state"] == "error"
    w = StatusWriter(p, "train", "experimental")
    finalize(w.path, doc=w.doc)
    finalize(p, {"code": "cancelled", "message": "late"}, state="cancelled", only_if_running=True)
    assert read_status(p)["state"] == "completed" and "error" not in read_status(p)
    finalize(p, VoicelaneError("bundle_invalid", "fetched bundle is bad"), extra_field=1)
    assert read_status(p)["state"] == "error" and read_status(p)["extra_field"] == 1

"""Issue 11 defect #2 over HTTP: a symlink inside a registered dataset or a served bundle that
points outside its root is never followed by a real `voicelane serve` (the dataset code and the
bundle validator are tested directly in test_ingest.py and test_bundle.py)."""

from __future__ import annotations

import shutil

from helpers import mini_corpus
from test_service_jobs import wait_job
from test_service_voice import _copy_bundle


def test_symlinks_out_of_their_roots_are_refused(tmp_path, svc_start_server, svc_prod_bundle):
    outside = tmp_path / "outside"
    outside.mkdir()
    data_root = tmp_path / "data"
    ds = mini_corpus(data_root / "ds", n=12)
    first = sorted((ds / "wavs").iterdir())[0]
    shutil.copyfile(first, outside / "secret.flac")
    (ds / "wavs" / "escape.flac").symlink_to(outside / "secret.flac")
    with open(ds / "metadata.csv", "a", encoding="utf-8") as fh:
        fh.write("escape|A recording that lives outside the data root.\n")
    shutil.copytree(ds, outside / "elsewhere")
    (data_root / "elsewhere").symlink_to(outside / "elsewhere", target_is_directory=True)

    bundles = tmp_path / "bundles_root"
    _copy_bundle(svc_prod_bundle.bundle_dir, bundles, "inside")
    escaped = _copy_bundle(svc_prod_bundle.bundle_dir, bundles, "linked")
    # the same bytes (the checksum matches), only the place is wrong
    shutil.move(escaped / "model.safetensors", outside / "model.safetensors")
    (escaped / "model.safetensors").symlink_to(outside / "model.safetensors")

    srv = svc_start_server(
        tmp_path / "work",
        VOICELANE_DATA_ROOTS=str(data_root),
        VOICELANE_BUNDLE_ROOTS=str(bundles),
        VOICELANE_DEFAULT_PROFILE="inside",
    )
    c = srv.client

    # a dataset folder that is itself a symlink out of the data root: refused before any job
    r = c.post("/api/train/dataset", json={"mode": "check", "dataPath": "elsewhere", "minMinutes": 0})
    assert r.status_code == 400 and r.json()["error"] == "path_not_allowed", r.text
    assert c.get("/api/train/jobs").json()["total"] == 0

    # a clip inside the dataset that links out: the job runs, that clip is rejected, never read
    r = c.post("/api/train/dataset", json={"mode": "check", "dataPath": "ds", "minMinutes": 0})
    assert r.status_code == 200, r.text
    job = wait_job(c, r.json()["jobId"], lambda j: j["state"] not in ("pending", "running"), timeout=300)
    assert job["state"] == "done", job
    report = job["metadata"]["report"]
    assert {x["id"]: x["reason"] for x in report["rejected"]} == {"escape": "path_not_allowed"}
    assert "escape" not in [e["id"] for e in report.get("entries", [])]

    # a bundle file that links out: the bundle is refused with path_unsafe, its twin is served
    p = c.get("/api/voice/profiles").json()
    assert [x["profileId"] for x in p["profiles"]] == ["inside"], p
    assert {x["profileId"]: x["code"] for x in p["refused"]} == {"linked": "path_unsafe"}
    r = c.post("/api/voice/speak", json={"text": "Hello.", "voiceProfile": "linked"})
    assert r.status_code == 503 and r.json()["details"]["reason"] == "path_unsafe", r.text
    r = c.post("/api/voice/speak", json={"text": "Hello.", "voiceProfile": "inside"})
    assert r.status_code == 200 and r.content[:4] == b"RIFF", r.text[:300]

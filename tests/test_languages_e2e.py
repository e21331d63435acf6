"""A non-English voice end to end (issue 10 "Done means", small): Italian speech rendered by
Festival at test time -> dataset check -> production lane fine-tuned from the English base
(cross-lingual init) -> a validated bundle that `voicelane speak` and /api/voice/speak voice in
Italian, refusing text it cannot say."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from helpers import REPO, consent_file, tiny_train_argv, voicelane_argv
from voicelane.bundle import validate_voice_bundle
from voicelane.engine import frontend

pytestmark = pytest.mark.slow

SENTENCES = [
    "La bambina cerca quattro bicchieri, e poi torna a casa.",
    "Un turista prende il cappello nero sotto la pioggia.",
    "Quando arriva la dottoressa?",
    "La maestra apre un libro antico davanti alla chiesa.",
    "Il medico porta tre mele verdi prima di cena.",
    "Mio fratello ha trovato la chiave della porta.",
    "La nonna prepara un piatto di pasta per la festa di domenica.",
    "Il capitano aspetta una tazza di caffe lungo il fiume.",
    "Dove hai messo le scarpe nuove?",
    "Lo studente chiude il quaderno giallo in fretta.",
]


def _festival_italian() -> bool:
    return shutil.which("text2wave") is not None and Path("/usr/share/festival/voices/italian").is_dir()


@pytest.fixture(scope="module")
def italian_corpus(tmp_path_factory):
    if not _festival_italian():
        pytest.skip("Festival's Italian voice is not installed (apt-get install festival festvox-italp16k)")
    sys.path.insert(0, str(REPO / "bench" / "multilingual"))
    import italian_corpus as ic

    root = tmp_path_factory.mktemp("it")
    ic.render(root / "train", "it", SENTENCES[:8])
    ic.render(root / "heldout", "ith", SENTENCES[8:])
    consent_file(root / "consent.txt")
    return root


def _run(cmd, tmp, timeout=900):
    env = dict(os.environ, TRAIN_STATUS_PATH=str(tmp / "status.json"), SOURCE_DATE_EPOCH="1767225600")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def italian_run(italian_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("it_run")
    gates = json.dumps(
        {"mcd_db_max": 100.0, "per_broad_max": 2.0, "duration_ratio_max": 10.0, "duration_ratio_min": 0.0}
    )
    cmd = tiny_train_argv(
        "--no-onnx",
        language="it-IT",
        base="voicelane-slt-base-v1",
        data=italian_corpus / "train",
        heldout=italian_corpus / "heldout",
        profile="it_test",
        out=out,
        steps=3,
        consent_statement=italian_corpus / "consent.txt",
        gates=gates,
    )
    r = _run(cmd, out)
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def test_dataset_check_accepts_italian(italian_corpus, tmp_path):
    r = _run(voicelane_argv("dataset check", str(italian_corpus / "train"), language="it", min_minutes=0), tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = _run(voicelane_argv("dataset check", str(italian_corpus / "train"), language="tlh"), tmp_path)
    assert r.returncode != 0 and "language_unsupported" in r.stdout + r.stderr


def test_italian_bundle_is_valid_and_keeps_its_inventory(italian_run):
    bdir = italian_run / "bundles" / "it_test" / "voice_bundle"
    assert validate_voice_bundle(bdir).ok
    manifest = json.loads((bdir / "manifest.json").read_text("utf-8"))
    assert manifest["language"] == "it"
    cfg = json.loads((bdir / "voice_config.json").read_text("utf-8"))
    assert cfg["symbols"] == list(frontend.inventory("it").symbols)
    assert cfg["arch"]["num_chars"] == len(cfg["symbols"]) > len(frontend.SYMBOLS)
    status = json.loads((italian_run / "status.json").read_text("utf-8"))
    init = {row["token"]: row["from"] for row in status["crosslingual_init"]}
    assert init["ˈa"] == "ˈɑ" and init["r"] in frontend.SYMBOL_TO_ID
    ev = json.loads((bdir / "eval.json").read_text("utf-8"))
    assert ev["wer"] is None and ev["language"] == "it"  # no Italian ASR: the proxy instead
    assert ev["per_broad_floor_real_audio"] < 0.6  # the real Italian recordings, heard as manner classes
    assert 0.0 <= ev["per_broad"] <= 1.5 and 0.0 <= ev["per"] <= 1.5


def test_voicelane_speak_voices_italian_and_refuses_other_scripts(italian_run, tmp_path):
    bdir = italian_run / "bundles" / "it_test" / "voice_bundle"
    wav = tmp_path / "it.wav"
    r = _run(
        voicelane_argv("speak", bundle=bdir, text="Buongiorno, il treno parte alle otto.", out=wav, engine="pytorch"),
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    audio, sr = sf.read(wav)
    assert sr == 16000 and len(audio) > 0.5 * sr
    r = _run(
        voicelane_argv("speak", bundle=bdir, text="Привет, мир", out=tmp_path / "ru.wav", engine="pytorch"), tmp_path
    )
    assert r.returncode != 0 and "text_unvoiceable" in r.stdout + r.stderr


def test_service_speaks_italian(italian_run, tmp_path, svc_start_server):
    srv = svc_start_server(
        tmp_path,
        VOICELANE_BUNDLE_ROOTS=str(italian_run),
        VOICELANE_DEFAULT_PROFILE="it_test",
        VOICELANE_DATA_ROOTS=str(tmp_path / "no_data"),
    )
    r = srv.client.post("/api/voice/speak", json={"text": "Dove si trova la stazione?", "voiceProfile": "it_test"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav", r.text[:500]
    audio, sr = sf.read(io.BytesIO(r.content))
    assert sr == 16000 and len(audio) > 0.3 * sr
    r = srv.client.post("/api/voice/speak", json={"text": "Hello 世界", "voiceProfile": "it_test"})
    body = r.json()
    assert r.status_code == 400 and "text_unvoiceable" in (body["error"], body["details"].get("code")), r.text[:500]

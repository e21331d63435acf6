"""The shipped base voice: trained on the embedded `slt` corpus, every input licence-clean.

`voicelane base train` reproduces it; `--install` copies the weights into `weights/<id>/`,
writes the weights manifest and updates the allowlist.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from voicelane import weights
from voicelane.demo import BASE_ID, corpus
from voicelane.fsutil import atomic_write_json, sha256_file
from voicelane.lane import run_lane
from voicelane.paths import REPO_ROOT
from voicelane.protocol import Emitter
from voicelane.runspec import RunSpec

BASE_STEPS = 6000


def print_allowlist() -> None:
    entries = weights.load_allowlist()
    for wid, e in sorted(entries.items()):
        gate = {w: weights.classify(e.get(f"{w}_license")) for w in ("code", "weights", "data")}
        print(
            f"{wid}\tcode={e.get('code_license')}\tweights={e.get('weights_license')}\t"
            f"data={e.get('data_license')}\tcommercial={e.get('commercial_use_allowed')}\tgate={gate}"
        )


def base_options(out: Path, steps: int | None, threads: int) -> RunSpec:
    return RunSpec.build(
        job_type="tts_prod_train",
        data=corpus("slt"),
        profile_id="slt_base",
        out=out,
        preset="cpu",
        consent_statement=corpus("slt") / "CONSENT.txt",
        heldout=corpus("slt_heldout"),
        display_name="voicelane base voice (slt)",
        steps=steps or BASE_STEPS,
        threads=threads,
        gates={"wer_max": 0.15},
        snapshot_every=500,
        select_snapshot=True,
    )


def base_on_demo_speaker(voice_dir: Path) -> dict:
    """The base voice, not fine-tuned, measured against the kal held-out recordings: the
    reference point that shows a fine-tuned demo voice moved to the new speaker."""
    import soundfile as sf

    from voicelane.engine.voice import Voice
    from voicelane.evaluate import HEADLINE_METRICS, Clip, evaluate

    folder = corpus("kal_heldout")
    clips = []
    for row in (folder / "metadata.csv").read_text("utf-8").splitlines():
        cid, text = row.split("|")[:2]
        clips.append(Clip(cid, text, sf.read(folder / "wavs" / f"{cid}.flac", dtype="float32")[0]))
    res = evaluate(Voice.load(voice_dir).synthesize, clips, prompts=[])
    return {k: res[k] for k in (*HEADLINE_METRICS, "n_heldout")}


def install_base(bundle_dir: Path, eval_summary: dict, steps: int, minutes: float) -> Path:
    dest = REPO_ROOT / "weights" / BASE_ID
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "voice_config.json"):
        shutil.copyfile(bundle_dir / name, dest / name)
    eval_on_kal = base_on_demo_speaker(dest)
    digest, size = sha256_file(dest / "model.safetensors")
    cfg_digest, _ = sha256_file(dest / "voice_config.json")
    manifest = json.loads((bundle_dir / "manifest.json").read_text("utf-8"))
    entry = {
        "id": BASE_ID,
        "path": f"weights/{BASE_ID}",
        "file": "model.safetensors",
        "engine": "voicelane-forwardtts-world (coqui-tts ForwardTTS/SpeedySpeech + WORLD)",
        "engine_version": manifest.get("engine", {}).get("library"),
        "model_type": "ForwardTTS (SpeedySpeech conv encoder/decoder, external durations)",
        "config_sha256": cfg_digest,
        "dataset_sha256": manifest["provenance"]["dataset_sha256"],
        "steps": steps,
        "selected_step": json.loads((dest / "voice_config.json").read_text("utf-8")).get("selected_step"),
        "sha256": digest,
        "bytes": size,
        "code_license": "MPL-2.0",
        "weights_license": "MIT",
        "data_license": "LicenseRef-Festival-EST-BSD-style",
        "commercial_use_allowed": True,
        "license_url": "https://www.cstr.ed.ac.uk/projects/festival/ (festvox-us-slt-hts COPYING); "
        "https://github.com/idiap/coqui-ai-TTS/blob/main/LICENSE.txt",
        "notes": "Trained by voicelane on corpora/slt (sentences written for voicelane, rendered with "
        "Festival's cmu_us_slt_arctic_hts voice). Code: coqui-tts (MPL-2.0); weights: MIT.",
        "training": {
            "hardware": "2-core CPU (no GPU)",
            "train_minutes": round(minutes, 1),
            "selection": "snapshot every 500 steps; the one with the lowest regression-prompt WER",
            "eval": eval_summary,
            "eval_on_kal": eval_on_kal,
        },
    }
    atomic_write_json(dest / "weights_manifest.json", entry)
    allow_path = weights.PACKAGE_DATA / "weights_allowlist.json"
    doc = json.loads(allow_path.read_text("utf-8")) if allow_path.exists() else {"weights": []}
    doc["weights"] = [w for w in doc["weights"] if w["id"] != BASE_ID] + [entry]
    doc["weights"].sort(key=lambda w: w["id"])
    atomic_write_json(allow_path, doc)
    return dest


def train_base(out: Path, steps: int | None, threads: int, protocol: bool, do_install: bool) -> int:
    from voicelane.engine.train import read_train_seconds
    from voicelane.progress import make_reporter

    opts = base_options(Path(out), steps, threads)
    rep = make_reporter(protocol=protocol)
    try:
        result = run_lane(opts, Emitter(sys.stdout), rep)
    finally:
        rep.close()
    # the training time of every session of a resumed run, not just this one
    minutes = read_train_seconds(Path(out) / "work" / "train" / "train_time.json") / 60
    rep.summary(result)
    if do_install:
        dest = install_base(Path(result["bundle"]), result["eval"], opts.steps, minutes)
        print(f"installed base weights in {dest}", file=sys.stderr)
    return 0

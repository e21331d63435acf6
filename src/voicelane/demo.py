"""The main job: fine-tune the shipped base voice to the embedded `kal` demo speaker, then speak.

`voicelane demo` = dataset check -> fine-tune (cpu preset) -> evaluate -> bundle -> validate ->
render a sample with the validated bundle. Human-friendly by default; `--protocol` makes stdout
the pure line protocol.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from voicelane.lane import run_lane
from voicelane.paths import REPO_ROOT
from voicelane.protocol import Emitter
from voicelane.runspec import RunSpec

DEMO_PROFILE = "demo_kal"
BASE_ID = "voicelane-slt-base-v1"
DEMO_TEXT = "Unit four, proceed to gate twelve. The demo voice is ready on this machine."


def corpus(name: str) -> Path:
    return REPO_ROOT / "corpora" / name


def demo_options(out: Path, quick: bool, threads: int) -> RunSpec:
    return RunSpec.build(
        job_type="tts_prod_train",
        data=corpus("kal"),
        profile_id=DEMO_PROFILE,
        out=out,
        preset="cpu",
        base=BASE_ID,
        consent_statement=corpus("kal") / "CONSENT.txt",
        heldout=corpus("kal_heldout"),
        display_name="Demo voice (kal, fine-tuned from the slt base)",
        steps=20 if quick else None,
        eval_max=4 if quick else None,
        threads=threads,
        gates={} if quick else None,
        min_minutes=None,
        # the last optimiser step is not always the best voice: keep a snapshot every 100 steps
        # and bundle the one that speaks the regression prompts best (selection.py)
        snapshot_every=0 if quick else 100,
        select_snapshot=not quick,
    )


def run_demo(out: Path, protocol: bool = False, quick: bool = False, threads: int = 2) -> int:
    from voicelane.progress import make_reporter
    from voicelane.speak import speak_to_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opts = demo_options(out, quick, threads)
    if quick:
        opts.gates = {"wer_max": 1.01}  # the smoke run proves the path, not the quality
    t0 = time.perf_counter()
    if protocol:
        rep = make_reporter(protocol=True)
        result = run_lane(opts, Emitter(sys.stdout), rep)
        speak_to_file(result["bundle"], DEMO_TEXT, out / "demo_sample.wav")
        return 0
    rep = make_reporter(protocol=False, stream=sys.stdout)
    log_path = out / "protocol.log"
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            result = run_lane(opts, Emitter(log), rep)
        finally:
            rep.close()
    info = speak_to_file(result["bundle"], DEMO_TEXT, out / "demo_sample.wav")
    result = dict(
        result, sample=info["out"], protocol_log=str(log_path), wall_minutes=round((time.perf_counter() - t0) / 60, 2)
    )
    rep.summary(result)
    print(f"bundle: {result['bundle']}")
    print(f"sample: {info['out']}  ({info['seconds']} s of speech, RTF {info['rtf']})")
    return 0

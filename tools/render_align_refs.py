#!/usr/bin/env python3
"""Render alignment reference sets with Festival: audio plus the exact phone times it used.

For each language, every sentence of ``corpora/text/align_<lang>.txt`` is synthesised with a
Debian Festival voice in one ``festival --batch`` script that also runs ``utt.save.segs``, so
each clip comes with the segment end times Festival rendered (the reference for
``bench/align_accuracy.py``). Output (LJSpeech layout plus ``segs/``)::

    OUT/<lang>/wavs/<id>.flac      16 kHz mono 16-bit (soxr VHQ)
    OUT/<lang>/metadata.csv        id|text
    OUT/<lang>/segs/<id>.lab       Festival segment file, UTF-8 (end time, phone)

Usage::

    .venv/bin/python tools/render_align_refs.py --out /tmp/align_refs [--lang cs --lang it]

Needs ``apt-get install festival festvox-us-slt-hts festvox-czech-dita festvox-italp16k
festvox-ca-ona-hts``. Deterministic: the same input gives the same files.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from render_corpus import TARGET_SR, RenderError, run_tool, to_pcm16

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXT_DIR = REPO_ROOT / "corpora" / "text"


@dataclass(frozen=True)
class RefVoice:
    festival_name: str
    package: str
    encoding: str  # what the voice's text front end expects


VOICES = {
    "en": RefVoice("cmu_us_slt_arctic_hts", "festvox-us-slt-hts", "ascii"),
    "cs": RefVoice("czech_dita", "festvox-czech-dita", "iso-8859-2"),
    "it": RefVoice("lp_diphone", "festvox-italp16k", "latin-1"),
    "ca": RefVoice("upc_ca_ona_hts", "festvox-ca-ona-hts", "latin-1"),
}


def scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_one(voice: RefVoice, sentence: str, work: Path) -> tuple[np.ndarray, int, str]:
    wav, lab, scm = work / "out.wav", work / "out.lab", work / "run.scm"
    for p in (wav, lab):
        p.unlink(missing_ok=True)
    script = (
        f"(voice_{voice.festival_name})\n(set! utt (SynthText {scheme_string(sentence)}))\n"
        f'(utt.save.wave utt "{wav}" \'riff)\n(utt.save.segs utt "{lab}")\n'
    )
    scm.write_bytes(script.encode(voice.encoding))
    proc = subprocess.run(["festival", "--batch", str(scm)], capture_output=True, text=True, errors="replace")
    if proc.returncode != 0 or not wav.is_file() or not lab.is_file():
        raise RenderError(f"festival failed for {sentence!r}: {proc.stderr.strip()[-400:]}")
    data, sr = sf.read(str(wav), dtype="float64", always_2d=True)
    segs = lab.read_bytes().decode(voice.encoding)
    return data.mean(axis=1), int(sr), segs


def render_language(lang: str, out: Path) -> int:
    voice = VOICES[lang]
    sentences = [s.strip() for s in (TEXT_DIR / f"align_{lang}.txt").read_text("utf-8").splitlines() if s.strip()]
    folder = out / lang
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    (folder / "segs").mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="voicelane-alignref-") as tmp:
        for i, sentence in enumerate(sentences, 1):
            clip_id = f"{lang}_{i:04d}"
            mono, sr, segs = render_one(voice, sentence, Path(tmp))
            pcm = to_pcm16(mono, sr)
            sf.write(str(folder / "wavs" / f"{clip_id}.flac"), pcm, TARGET_SR, format="FLAC", subtype="PCM_16")
            (folder / "segs" / f"{clip_id}.lab").write_text(segs, encoding="utf-8")
            rows.append(f"{clip_id}|{sentence}\n")
    (folder / "metadata.csv").write_text("".join(rows), encoding="utf-8")
    return len(rows)


def read_segs(path: Path) -> list[tuple[float, str]]:
    """Festival segment file -> [(end_s, phone)] (header lines up to '#' skipped)."""
    out = []
    body = path.read_text("utf-8").split("#", 1)[1]
    for line in body.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((float(parts[0]), parts[2]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lang", action="append", choices=sorted(VOICES))
    args = ap.parse_args(argv)
    for lang in args.lang or sorted(VOICES):
        n = render_language(lang, args.out)
        print(f"{lang}: {n} clips -> {args.out / lang}")
    return 0


if __name__ == "__main__":
    run_tool(main)

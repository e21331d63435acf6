#!/usr/bin/env python3
"""Render the embedded voicelane demo corpora with Festival.

Each sentence list under ``corpora/text/`` is synthesised one sentence at a
time with ``text2wave``, converted to mono, resampled to 16 kHz with soxr
(VHQ) and written as 16-bit FLAC in an LJSpeech-style folder::

    corpora/<name>/wavs/<id>.flac
    corpora/<name>/metadata.csv     (id|text|text, no header)
    corpora/<name>/SOURCE.md
    corpora/<name>/SHA256SUMS

Rendering is deterministic: running it twice yields byte-identical files.
Any failure (text2wave error, missing output, unexpected sample rate) aborts
the run; a corpus folder is only replaced once all its clips rendered
(clips are staged in a temporary directory outside the repository).

Usage::

    .venv/bin/python tools/render_corpus.py              # render all four
    .venv/bin/python tools/render_corpus.py --only kal   # render one
    .venv/bin/python tools/render_corpus.py --check      # verify SHA256SUMS
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import soundfile as sf
import soxr

TARGET_SR = 16000
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO_ROOT / "corpora"


@dataclass(frozen=True)
class Voice:
    name: str  # Festival voice name
    package: str  # Debian package providing it
    native_sr: int  # sample rate text2wave produces for this voice
    kind: str  # short description for SOURCE.md


VOICES = {
    "slt": Voice(
        name="cmu_us_slt_arctic_hts",
        package="festvox-us-slt-hts",
        native_sr=32000,
        kind=(
            "HTS statistical parametric (HMM) voice, a statistical model trained "
            'on the CMU ARCTIC recordings of the US English speaker "slt"'
        ),
    ),
    "kal": Voice(
        name="kal_diphone",
        package="festvox-kallpc16k",
        native_sr=16000,
        kind="US English LPC diphone voice (concatenation of a fixed diphone inventory)",
    ),
}


@dataclass(frozen=True)
class CorpusSpec:
    name: str  # output folder under the corpora root
    text: str  # sentence list under <root>/text/
    voice: str  # key into VOICES
    prefix: str  # clip id prefix
    role: str  # one line description


CORPORA = [
    CorpusSpec("slt", "slt_train.txt", "slt", "slt", "base-voice training corpus"),
    CorpusSpec("kal", "kal_train.txt", "kal", "kal", "operator demo training corpus"),
    CorpusSpec("slt_heldout", "heldout.txt", "slt", "slth", "held-out test set (slt voice)"),
    CorpusSpec("kal_heldout", "heldout.txt", "kal", "kalh", "held-out test set (kal voice)"),
]
CORPORA_BY_NAME = {c.name: c for c in CORPORA}


class RenderError(RuntimeError):
    pass


# --------------------------------------------------------------------------- helpers


def read_sentences(path: Path) -> list[str]:
    """Read one sentence per line; reject anything that would break metadata.csv."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise RenderError(f"{path}: has a UTF-8 BOM")
    if b"\r" in raw:
        raise RenderError(f"{path}: has CR characters; use \\n line endings")
    text = raw.decode("ascii")  # plain ASCII only; raises on anything else
    sentences = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        s = line.strip()
        if not s:
            continue
        if s != line:
            raise RenderError(f"{path}:{lineno}: leading/trailing whitespace")
        if "|" in s:
            raise RenderError(f"{path}:{lineno}: contains '|'")
        key = " ".join(s.lower().split())
        if key in seen:
            raise RenderError(f"{path}:{lineno}: duplicate of line {seen[key]}")
        seen[key] = lineno
        sentences.append(s)
    if not sentences:
        raise RenderError(f"{path}: no sentences")
    return sentences


def run_checked(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RenderError(
            f"command failed (exit {proc.returncode}): {cmd!r}\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return proc


def festival_version() -> str:
    return run_checked(["festival", "--version"]).stdout.strip()


def dpkg_version(package: str) -> str:
    out = run_checked(["dpkg-query", "-W", "-f=${Version}", package]).stdout.strip()
    if not out:
        raise RenderError(f"dpkg-query: no version for {package}")
    return out


def synth(text2wave: str, voice: Voice, sentence: str, workdir: Path) -> tuple[np.ndarray, int]:
    """Synthesise one sentence; return (mono float64 samples, sample rate)."""
    txt = workdir / "in.txt"
    wav = workdir / "out.wav"
    txt.write_text(sentence + "\n", encoding="ascii")
    if wav.exists():
        wav.unlink()
    cmd = [text2wave, "-eval", f"(voice_{voice.name})", str(txt), "-o", str(wav)]
    proc = run_checked(cmd)
    err = (proc.stderr or "") + (proc.stdout or "")
    if "error" in err.lower():
        raise RenderError(f"text2wave reported an error for {sentence!r}:\n{err.strip()}")
    if not wav.exists() or wav.stat().st_size <= 44:
        raise RenderError(f"text2wave produced no audio for {sentence!r}")
    data, sr = sf.read(str(wav), dtype="float64", always_2d=True)
    if sr != voice.native_sr:
        # Festival silently falls back to its default voice if the requested
        # one cannot be loaded; the sample rate gives that away.
        raise RenderError(
            f"voice {voice.name}: expected {voice.native_sr} Hz output, got {sr} Hz (is the voice installed?)"
        )
    mono = data.mean(axis=1)
    if mono.size == 0 or not np.any(mono):
        raise RenderError(f"text2wave produced silence for {sentence!r}")
    return mono, sr


def to_pcm16(mono: np.ndarray, sr: int) -> np.ndarray:
    if sr != TARGET_SR:
        mono = soxr.resample(mono, sr, TARGET_SR, quality="VHQ")
    q = np.round(np.asarray(mono, dtype=np.float64) * 32768.0)
    return np.clip(q, -32768, 32767).astype(np.int16)


def write_flac(path: Path, pcm: np.ndarray) -> None:
    sf.write(str(path), pcm, TARGET_SR, format="FLAC", subtype="PCM_16", compression_level=1.0)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksum_targets(folder: Path) -> list[str]:
    rels = ["metadata.csv"] + [f"wavs/{p.name}" for p in (folder / "wavs").glob("*.flac")]
    return sorted(rels)


def write_sha256sums(folder: Path) -> None:
    lines = [f"{sha256_file(folder / rel)}  {rel}\n" for rel in checksum_targets(folder)]
    (folder / "SHA256SUMS").write_text("".join(lines), encoding="ascii", newline="\n")


def source_md(
    spec: CorpusSpec, voice: Voice, fest_ver: str, versions: dict[str, str], n_clips: int, total_s: float
) -> str:
    return f"""# {spec.name}: provenance

Synthetic speech corpus ({spec.role}) for voicelane, LJSpeech layout:
`wavs/<id>.flac` plus `metadata.csv` (`id|text|text`, no header).

## Generator

- Festival: `{fest_ver}` (Debian package `festival` {versions["festival"]})
- Voice: `{voice.name}` (Debian package `{voice.package}` {versions[voice.package]})
- Voice type: {voice.kind}.
- No new recordings of any real person were made for this corpus; every clip
  is machine-synthesised.

## Licences

- Audio was produced with the Festival/festvox voice above, which is
  distributed under a free EST/BSD-style licence (Edinburgh Speech Tools /
  CMU permissive licence: use, modification and redistribution permitted,
  keeping copyright notices and without using the authors' names for
  endorsement). See `/usr/share/doc/{voice.package}/copyright`.
- Sentence texts (`../text/{spec.text}`): written for voicelane by the
  project and released under the project's licence (MIT).

## Rendering

Rendered by `tools/render_corpus.py` (run as
`.venv/bin/python tools/render_corpus.py`), one sentence per call:

    text2wave -eval "(voice_{voice.name})" <sentence>.txt -o <clip>.wav

then downmixed to mono float, resampled from {voice.native_sr} Hz to {TARGET_SR} Hz with
soxr (quality `VHQ`), rounded to 16-bit and written as FLAC (PCM_16).
Rendering is deterministic; `tools/render_corpus.py --check` verifies
`SHA256SUMS` (metadata.csv and every FLAC).

## Contents

- Sample rate: {TARGET_SR} Hz, mono, 16-bit FLAC
- Clips: {n_clips} (ids `{spec.prefix}_0001` .. `{spec.prefix}_{n_clips:04d}`)
- Total duration: {total_s / 60:.2f} minutes ({total_s:.1f} s)
"""


# --------------------------------------------------------------------------- render


def render_corpus(
    spec: CorpusSpec, root: Path, fest_ver: str, versions: dict[str, str], text2wave: str, verbose: bool
) -> tuple[int, float]:
    voice = VOICES[spec.voice]
    sentences = read_sentences(root / "text" / spec.text)
    final = root / spec.name
    # Stage outside the corpora tree so a half-rendered folder never shows up
    # in the repository (or gets committed) while rendering is in progress.
    stage = Path(tempfile.mkdtemp(prefix=f"voicelane-{spec.name}-"))
    (stage / "wavs").mkdir()
    rows = []
    total_samples = 0
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="voicelane-render-") as tmp:
            work = Path(tmp)
            for i, sentence in enumerate(sentences, 1):
                clip_id = f"{spec.prefix}_{i:04d}"
                mono, sr = synth(text2wave, voice, sentence, work)
                pcm = to_pcm16(mono, sr)
                write_flac(stage / "wavs" / f"{clip_id}.flac", pcm)
                total_samples += pcm.shape[0]
                rows.append(f"{clip_id}|{sentence}|{sentence}\n")
                if verbose and (i % 50 == 0 or i == len(sentences)):
                    print(f"  {spec.name}: {i}/{len(sentences)} ({time.monotonic() - t0:.0f} s)", flush=True)
        (stage / "metadata.csv").write_text("".join(rows), encoding="utf-8", newline="\n")
        total_s = total_samples / TARGET_SR
        (stage / "SOURCE.md").write_text(
            source_md(spec, voice, fest_ver, versions, len(rows), total_s), encoding="utf-8", newline="\n"
        )
        write_sha256sums(stage)
        # Keep files that are not generated here (e.g. CONSENT.txt).
        if final.exists():
            for extra in final.iterdir():
                if extra.name not in {"wavs", "metadata.csv", "SOURCE.md", "SHA256SUMS"}:
                    shutil.move(str(extra), str(stage / extra.name))
            shutil.rmtree(final)
        shutil.move(str(stage), str(final))
        final.chmod(0o755)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return len(rows), total_s


# --------------------------------------------------------------------------- check


def check_folder(folder: Path) -> list[str]:
    problems = []
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return [f"{folder}: SHA256SUMS missing"]
    listed: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(encoding="ascii").splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            problems.append(f"{sums}:{n}: malformed line")
            continue
        listed[rel] = digest
    expected = checksum_targets(folder)
    if list(listed) != expected:
        missing = sorted(set(expected) - set(listed))
        stale = sorted(set(listed) - set(expected))
        if missing:
            problems.append(
                f"{folder}: not in SHA256SUMS: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
            )
        if stale:
            problems.append(
                f"{folder}: listed but missing: {', '.join(stale[:5])}" + (" ..." if len(stale) > 5 else "")
            )
        if not missing and not stale:
            problems.append(f"{folder}: SHA256SUMS not sorted by path")
    for rel, digest in listed.items():
        p = folder / rel
        if p.is_file() and sha256_file(p) != digest:
            problems.append(f"{folder}: checksum mismatch: {rel}")
    # metadata ids must match the flac files
    meta = folder / "metadata.csv"
    if meta.is_file():
        ids = [row.split("|", 1)[0] for row in meta.read_text(encoding="utf-8").splitlines() if row]
        flacs = sorted(p.stem for p in (folder / "wavs").glob("*.flac"))
        if sorted(ids) != flacs:
            problems.append(f"{folder}: metadata.csv ids do not match wavs/*.flac")
    return problems


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--root",
        type=Path,
        default=DEFAULT_ROOT,
        help="corpora root holding text/ and the output folders (default: %(default)s)",
    )
    ap.add_argument(
        "--only", action="append", choices=sorted(CORPORA_BY_NAME), help="render/check only this corpus (repeatable)"
    )
    ap.add_argument("--check", action="store_true", help="verify SHA256SUMS of each corpus folder instead of rendering")
    ap.add_argument("--text2wave", default="text2wave", help="text2wave executable")
    ap.add_argument("-q", "--quiet", action="store_true", help="less progress output")
    args = ap.parse_args(argv)

    root = args.root.resolve()
    specs = [CORPORA_BY_NAME[n] for n in args.only] if args.only else CORPORA

    if args.check:
        bad = 0
        for spec in specs:
            folder = root / spec.name
            problems = check_folder(folder)
            if problems:
                bad += 1
                for p in problems:
                    print(f"FAIL {p}", file=sys.stderr)
            else:
                n = len(checksum_targets(folder))
                print(f"OK   {spec.name}: {n} files match SHA256SUMS")
        return 1 if bad else 0

    if shutil.which(args.text2wave) is None:
        print(
            f"error: {args.text2wave} not found; apt-get install festival festvox-us-slt-hts festvox-kallpc16k",
            file=sys.stderr,
        )
        return 2
    fest_ver = festival_version()
    versions = {"festival": dpkg_version("festival")}
    for spec in specs:
        pkg = VOICES[spec.voice].package
        versions.setdefault(pkg, dpkg_version(pkg))

    t_all = time.monotonic()
    for spec in specs:
        t0 = time.monotonic()
        n, secs = render_corpus(spec, root, fest_ver, versions, args.text2wave, not args.quiet)
        print(
            f"{spec.name}: {n} clips, {secs / 60:.2f} min audio, rendered in {time.monotonic() - t0:.0f} s", flush=True
        )
    print(f"total render time {time.monotonic() - t_all:.0f} s")
    return 0


def run_tool(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s status; a RenderError ends the tool with its message and status 1."""
    try:
        sys.exit(main())
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_tool(main)

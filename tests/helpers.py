"""Shared test helpers: small real datasets cut from the embedded corpora."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = REPO / "corpora"


def mini_corpus(dest: Path, name: str = "kal", n: int = 12, start: int = 0) -> Path:
    """Copy the first n clips of an embedded corpus into dest (LJSpeech layout)."""
    src = CORPORA / name
    rows = (src / "metadata.csv").read_text("utf-8").splitlines()[start : start + n]
    (dest / "wavs").mkdir(parents=True, exist_ok=True)
    for row in rows:
        clip_id = row.split("|", 1)[0]
        shutil.copyfile(src / "wavs" / f"{clip_id}.flac", dest / "wavs" / f"{clip_id}.flac")
    (dest / "metadata.csv").write_text("\n".join(rows) + "\n", "utf-8")
    return dest


def kal_entries(n: int) -> list[dict]:
    """The first n clips of the embedded kal corpus as the manifest entries ``engine.data.prepare_all`` reads."""
    entries = []
    for row in (CORPORA / "kal" / "metadata.csv").read_text("utf-8").splitlines()[:n]:
        clip_id, text = row.split("|")[:2]
        path = CORPORA / "kal" / "wavs" / f"{clip_id}.flac"
        entries.append(
            {"id": clip_id, "abs_path": path, "text": text, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        )
    return entries


def voicelane_argv(command: str, *flags: str, **options: object) -> list[str]:
    """``python -m voicelane COMMAND --option value ... FLAGS``; an option's underscores become dashes."""
    argv = [sys.executable, "-m", "voicelane", *command.split()]
    for name, value in options.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    return [*argv, *flags]


def tiny_train_argv(*flags: str, **options: object) -> list[str]:
    """``voicelane train --protocol`` of the production lane on the tiny preset, with no minimum
    of minutes, on one thread; ``options`` (data, out, profile, ...) add to or override those."""
    tiny = {"lane": "tts_prod_train", "preset": "tiny", "min_minutes": 0, "threads": 1}
    return voicelane_argv("train", "--protocol", *flags, **(tiny | options))


def consent_file(dest: Path) -> Path:
    dest.write_text(
        "speaker_name: test speaker\nasserted_by: voicelane tests\n"
        "I consent to my voice being used to train a synthetic voice.\n",
        "utf-8",
    )
    return dest


# JSON that strict parsing refuses (NaN/Infinity, numbers that overflow to them, nesting past the
# depth limit of 32): the parser's unit test and the HTTP routes' test take the same bodies
NON_STRICT_JSON = [
    "NaN",
    '{"text": NaN}',
    '{"jobType": "train", "steps": Infinity}',
    '{"jobType": "train", "minMinutes": -Infinity}',
    '{"jobType": "train", "gates": {"wer_max": NaN}}',
    '{"jobType": "train", "gates": {"wer_max": 1e999}}',
    "[" * 5000 + "]" * 5000,
    '{"a":' * 33 + "1" + "}" * 33,
]

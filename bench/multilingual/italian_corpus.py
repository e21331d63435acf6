#!/usr/bin/env python3
"""Build a small Italian speech corpus with Festival (festvox-italp16k, voice lp_diphone) for the
non-English end-to-end run and the fine-tune-vs-scratch measurement (docs/model-choice.md).

Sentences are composed deterministically from Italian phrase lists (seeded), ASCII only (no
accented letters, so Festival's Latin-1 front end and gruut read the same text), numbers written
as words. Audio: tools/render_corpus.py's synth/resample/FLAC path, LJSpeech layout::

    OUT/train/{wavs/*.flac, metadata.csv}    OUT/heldout/{wavs/*.flac, metadata.csv}

    .venv/bin/python bench/multilingual/italian_corpus.py --out runs/it_corpus [--train 200 --heldout 24]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import render_corpus as rc

VOICE = rc.Voice(
    name="lp_diphone", package="festvox-italp16k", native_sr=16000, kind="Italian female LPC diphone voice"
)

SUBJECTS = [
    "Il medico",
    "La maestra",
    "Mio fratello",
    "Una ragazza",
    "Il vecchio pescatore",
    "La signora Rossi",
    "Il nostro vicino",
    "Un ragazzo alto",
    "La nonna",
    "Il capitano",
    "Mia cugina",
    "Lo studente",
    "La cantante",
    "Il panettiere",
    "Un turista",
    "La dottoressa",
    "Il sindaco",
    "Mio padre",
    "La bambina",
    "Il cuoco",
]
VERBS = [
    "ha comprato",
    "cerca",
    "porta",
    "guarda",
    "ha trovato",
    "prepara",
    "vende",
    "ha dimenticato",
    "aspetta",
    "ricorda",
    "disegna",
    "pulisce",
    "chiude",
    "apre",
    "regala",
    "prende",
]
OBJECTS = [
    "una borsa rossa",
    "il giornale di oggi",
    "tre mele verdi",
    "la chiave della porta",
    "un libro antico",
    "due biglietti del treno",
    "la lettera della zia",
    "un piatto di pasta",
    "il cappello nero",
    "una bottiglia di vino",
    "le scarpe nuove",
    "un mazzo di fiori",
    "la mappa della citta",
    "quattro bicchieri",
    "una tazza di caffe",
    "il regalo per Marco",
    "una scatola di legno",
    "la bicicletta blu",
    "sei uova fresche",
    "il quaderno giallo",
]
TAILS = [
    "questa mattina",
    "prima di cena",
    "vicino alla stazione",
    "dopo il lavoro",
    "nel mercato del paese",
    "sotto la pioggia",
    "alle nove di sera",
    "con molta pazienza",
    "senza dire niente",
    "in fretta",
    "per la festa di domenica",
    "davanti alla chiesa",
    "lungo il fiume",
    "al secondo piano",
    "durante le vacanze",
    "tra le montagne",
]
QUESTIONS = [
    "Dove hai messo {o}?",
    "Perche {s_l} non {v3} {o}?",
    "Quando arriva {s_l}?",
    "Chi ha visto {o} {t}?",
    "Vuoi venire con noi {t}?",
]
CLAUSES = [
    "ma nessuno se ne accorge",
    "e poi torna a casa",
    "mentre fuori nevica",
    "perche domani parte",
    "quando il sole tramonta",
    "anche se e molto stanco",
    "e tutti sono contenti",
]
V3 = {"ha comprato": "compra", "ha trovato": "trova", "ha dimenticato": "dimentica"}


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s, v, o, t = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(TAILS)
        kind = rng.random()
        if kind < 0.55:
            text = f"{s} {v} {o} {t}."
        elif kind < 0.8:
            text = f"{s} {v} {o}, {rng.choice(CLAUSES)}."
        else:
            q = rng.choice(QUESTIONS)
            text = q.format(o=o, t=t, s_l=s[0].lower() + s[1:], v3=V3.get(v, v))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def render(folder: Path, prefix: str, texts: list[str]) -> float:
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    rows, total = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts, 1):
            clip = f"{prefix}_{i:04d}"
            mono, sr = rc.synth("text2wave", VOICE, text, Path(tmp))
            pcm = rc.to_pcm16(mono, sr)
            rc.write_flac(folder / "wavs" / f"{clip}.flac", pcm)
            total += len(pcm)
            rows.append(f"{clip}|{text}|{text}\n")
    (folder / "metadata.csv").write_text("".join(rows), encoding="utf-8")
    return total / rc.TARGET_SR


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--heldout", type=int, default=24)
    a = ap.parse_args(argv)
    texts = sentences(a.train + a.heldout, seed=10)
    tr = render(a.out / "train", "it", texts[: a.train])
    ho = render(a.out / "heldout", "ith", texts[a.train :])
    print(f"train: {a.train} clips, {tr / 60:.2f} min; heldout: {a.heldout} clips, {ho / 60:.2f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

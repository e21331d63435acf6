#!/usr/bin/env python3
"""Build src/voicelane/data/phoneme_inventories.json from the installed gruut language packages.

A language's inventory is every token its gruut lexicon (``lexicon.db``, the same data its g2p
model was trained on) produces after voicelane's normalisation (``frontend.normalize_phonemes``),
plus the phonemes gruut-ipa lists for the language (post-lexical rules such as voicing
assimilation or glottal onsets use those). The file also stores each token's nearest English
base sound by articulatory features (panphon), used for alignment and embedding initialisation.

Deterministic: sorted tokens, sorted keys. Rerun after upgrading gruut or a gruut-lang package
(pinned in requirements.lock) and commit the result; voices already trained keep their own
inventory in voice_config.json.

    .venv/bin/python tools/build_inventories.py [--check]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import sqlite3
import sys
from pathlib import Path

from voicelane.engine import crosslingual, frontend

GRUUT_IPA_DIR = {
    "cs": "cs-cz",
    "de": "de-de",
    "es": "es-es",
    "fr": "fr-fr",
    "it": "it-it",
    "lb": "lb-lb",
    "ru": "ru-ru",
    "sv": "sv-se",
    "ar": "ar",
    "fa": "fa",
    "nl": "nl",
    "pt": "pt",
    "sw": "sw",
}


def lexicon_tokens(package: str) -> set[str]:
    lang_dir = Path(importlib.import_module(package).get_lang_dir())
    con = sqlite3.connect(f"file:{lang_dir / 'lexicon.db'}?mode=ro", uri=True)
    try:
        tokens: set[str] = set()
        for (pron,) in con.execute("SELECT phonemes FROM word_phonemes"):
            tokens.update(frontend.normalize_phonemes(pron.split()))
        return tokens
    finally:
        con.close()


def gruut_ipa_tokens(code: str) -> set[str]:
    import gruut_ipa

    name = GRUUT_IPA_DIR.get(code)
    path = Path(gruut_ipa.__file__).parent / "data" / (name or "") / "phonemes.txt"
    if not name or not path.is_file():
        return set()
    out = set()
    for line in path.read_text("utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.update(frontend.normalize_phonemes([line.split()[0]]))
    return out


def build() -> dict:
    languages, nearest = {}, {}
    for lang in sorted(frontend.LANGUAGES.values(), key=lambda x: x.code):
        if lang.code == "en-us":
            continue
        tokens = sorted(lexicon_tokens(lang.package) | gruut_ipa_tokens(lang.code))
        languages[lang.code] = tokens
        for t in tokens:
            base = t.lstrip("ˈˌ")
            if base not in nearest:
                nearest[base] = crosslingual.compute_nearest_base(base)
    versions = {lang.package: md.version(lang.package) for lang in frontend.LANGUAGES.values()}
    versions |= {"gruut": md.version("gruut"), "gruut-ipa": md.version("gruut-ipa"), "panphon": md.version("panphon")}
    return {
        "schema": "voicelane-phoneme-inventories/1",
        "built_with": dict(sorted(versions.items())),
        "languages": languages,
        "nearest_base": dict(sorted(nearest.items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the committed file is out of date")
    a = ap.parse_args(argv)
    text = json.dumps(build(), ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    path = frontend._INVENTORY_FILE
    if a.check:
        ok = path.is_file() and path.read_text("utf-8") == text
        print("OK" if ok else f"{path} is out of date")
        return 0 if ok else 1
    path.write_text(text, encoding="utf-8")
    data = json.loads(text)
    for code, toks in data["languages"].items():
        new = [t for t in toks if t not in frontend.SYMBOL_TO_ID]
        print(f"{code}: {len(toks)} tokens, {len(new)} new to the English base")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Text front end: text -> words -> phoneme tokens (gruut, MIT; no espeak in the runtime path).

English (``en-us``) keeps the fixed 80-token inventory the shipped base weights were trained on:
stressed/unstressed vowels, consonants and a few prosody tokens, each with an ARPAbet spelling
for the pocketsphinx forced aligner (see ``align.py``).

Every other language gruut ships (``LANGUAGES``) gets its own inventory: the 80 English tokens
first (so English weights load unchanged and shared sounds keep their trained embeddings),
then the language's own IPA phonemes, as gruut's lexicon for that language spells them
(``data/phoneme_inventories.json``, built by ``tools/build_inventories.py``). The inventory a
voice was trained with is stored in its ``voice_config.json`` (``symbols``) and the served
voice phonemizes against exactly that list: a sound outside it, a word in another script, or
a digit/symbol the language's rules could not verbalise is ``text_unvoiceable``, never a guess.

Sounds the English base never saw are timed by the aligner and initialised in the model
through their nearest English phoneme by articulatory features (``crosslingual.py``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from voicelane.errors import VoicelaneError

PAD = "<pad>"
START = "^"  # leading silence left after trimming
MINOR = "|"  # comma-like pause
END_TOKENS = {".": "<.>", "?": "<?>", "!": "<!>"}  # sentence end; absorbs trailing silence

VOWELS = {
    "ɑ": "AA",
    "æ": "AE",
    "ʌ": "AH",
    "ə": "AH",
    "ɐ": "AH",
    "ɔ": "AO",
    "aʊ": "AW",
    "aɪ": "AY",
    "ɛ": "EH",
    "ɚ": "ER",
    "ɝ": "ER",
    "eɪ": "EY",
    "e": "EY",
    "ɪ": "IH",
    "ᵻ": "IH",
    "ɨ": "IH",
    "i": "IY",
    "oʊ": "OW",
    "o": "OW",
    "ɔɪ": "OY",
    "ʊ": "UH",
    "u": "UW",
}
CONSONANTS = {
    "b": "B",
    "t͡ʃ": "CH",
    "tʃ": "CH",
    "d": "D",
    "ð": "DH",
    "f": "F",
    "ɡ": "G",
    "g": "G",
    "h": "HH",
    "x": "HH",
    "d͡ʒ": "JH",
    "dʒ": "JH",
    "k": "K",
    "l": "L",
    "l̩": "L",
    "m": "M",
    "m̩": "M",
    "n": "N",
    "n̩": "N",
    "ŋ": "NG",
    "p": "P",
    "ɹ": "R",
    "r": "R",
    "s": "S",
    "ʃ": "SH",
    "t": "T",
    "ɾ": "D",
    "ʔ": "T",
    "θ": "TH",
    "v": "V",
    "w": "W",
    "j": "Y",
    "z": "Z",
    "ʒ": "ZH",
}
STRESS = ("ˈ", "ˌ")

# One canonical token per sound (aliases fold onto the first spelling of their ARPAbet phone).
_CANON_VOWELS = ["ɑ", "æ", "ʌ", "ə", "ɔ", "aʊ", "aɪ", "ɛ", "ɚ", "eɪ", "ɪ", "i", "oʊ", "ɔɪ", "ʊ", "u"]
_CANON_CONS = [
    "b",
    "t͡ʃ",
    "d",
    "ð",
    "f",
    "ɡ",
    "h",
    "d͡ʒ",
    "k",
    "l",
    "m",
    "n",
    "ŋ",
    "p",
    "ɹ",
    "s",
    "ʃ",
    "t",
    "ɾ",
    "θ",
    "v",
    "w",
    "j",
    "z",
    "ʒ",
    "ʔ",
]
_ALIASES = {
    "ɐ": "ə",
    "ɝ": "ɚ",
    "e": "eɪ",
    "ᵻ": "ɪ",
    "ɨ": "ɪ",
    "o": "oʊ",
    "tʃ": "t͡ʃ",
    "g": "ɡ",
    "x": "h",
    "dʒ": "d͡ʒ",
    "l̩": "l",
    "m̩": "m",
    "n̩": "n",
    "r": "ɹ",
}

SYMBOLS: list[str] = (
    [PAD, START, MINOR, *END_TOKENS.values()] + [s + v for v in _CANON_VOWELS for s in ("", *STRESS)] + _CANON_CONS
)
SYMBOL_TO_ID = {s: i for i, s in enumerate(SYMBOLS)}
PROSODY_TOKENS = {START, MINOR, *END_TOKENS.values()}
BASE_PHONEMES: tuple[str, ...] = tuple(_CANON_VOWELS + _CANON_CONS)  # unstressed English sounds


@dataclass(frozen=True)
class Language:
    code: str  # what voicelane stores (voice_config.json, manifests)
    gruut: str  # gruut's language name
    package: str  # the gruut-lang-* distribution holding its lexicon and g2p model
    name: str
    script: str  # Unicode script name every letter of the input must belong to
    numbers: bool  # gruut (num2words) verbalises digits in this language


LANGUAGES: dict[str, Language] = {
    lang.code.split("-")[0]: lang
    for lang in (
        Language("ar", "ar", "gruut_lang_ar", "Arabic (needs vocalised text)", "ARABIC", True),
        Language("ca", "ca-ce", "gruut_lang_ca", "Catalan (Central)", "LATIN", True),
        Language("cs", "cs-cz", "gruut_lang_cs", "Czech", "LATIN", True),
        Language("de", "de-de", "gruut_lang_de", "German", "LATIN", True),
        Language("en-us", "en-us", "gruut_lang_en", "English (US pronunciations)", "LATIN", True),
        Language("es", "es-es", "gruut_lang_es", "Spanish (Castilian)", "LATIN", True),
        Language("fa", "fa", "gruut_lang_fa", "Persian (Farsi)", "ARABIC", True),
        Language("fr", "fr-fr", "gruut_lang_fr", "French", "LATIN", True),
        Language("it", "it-it", "gruut_lang_it", "Italian", "LATIN", True),
        Language("lb", "lb", "gruut_lang_lb", "Luxembourgish", "LATIN", False),
        Language("nl", "nl", "gruut_lang_nl", "Dutch", "LATIN", True),
        Language("pt", "pt", "gruut_lang_pt", "Portuguese (Brazilian)", "LATIN", True),
        Language("ru", "ru-ru", "gruut_lang_ru", "Russian", "CYRILLIC", True),
        Language("sv", "sv-se", "gruut_lang_sv", "Swedish", "LATIN", True),
        Language("sw", "sw", "gruut_lang_sw", "Swahili", "LATIN", False),
    )
}
SUPPORTED_LANGUAGES = tuple(sorted(lang.code for lang in LANGUAGES.values()))
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


def language_info(language: str) -> Language:
    """The engine language for a BCP-47 tag (``ru``, ``ru-RU``, ``pt-BR``, ``en-us``, ``cs_CZ``).

    The primary subtag decides; region/script subtags are accepted (gruut has one variety per
    language: ``LANGUAGES[..].name`` says which)."""
    tag = (language or "").strip()
    primary = tag.replace("_", "-").split("-")[0].lower()
    if not _BCP47.match(tag) or primary not in LANGUAGES:
        raise VoicelaneError(
            "language_unsupported",
            f"language {language!r} is not supported by this engine",
            {"language": language, "supported": list(SUPPORTED_LANGUAGES)},
        )
    return LANGUAGES[primary]


def check_language(language: str) -> str:
    """Canonical language code (``en-us``, ``cs``, ``ru``, ...) or ``language_unsupported``."""
    return language_info(language).code


def frontend_info(language: str) -> dict[str, str]:
    """Front-end versions a voice was trained with (voice_config.json ``frontend``)."""
    import importlib.metadata as md

    lang = language_info(language)
    return {
        "language": lang.code,
        "gruut_language": lang.gruut,
        "gruut": md.version("gruut"),
        lang.package: md.version(lang.package),
    }


def languages_table() -> list[dict[str, object]]:
    """What `voicelane languages` prints: one row per language, with the versions in use."""
    import importlib.metadata as md

    rows = []
    for lang in sorted(LANGUAGES.values(), key=lambda x: x.code):
        try:
            version = md.version(lang.package)
        except md.PackageNotFoundError:
            version = None
        rows.append(
            {
                "code": lang.code,
                "name": lang.name,
                "gruut": lang.gruut,
                "package": lang.package,
                "package_version": version,
                "script": lang.script.title(),
                "numbers": lang.numbers,
                "phonemes": len(inventory(lang.code).symbols),
            }
        )
    return rows


# --- per-language inventories ---------------------------------------------------------------

_INVENTORY_FILE = Path(__file__).resolve().parent.parent / "data" / "phoneme_inventories.json"


@dataclass(frozen=True)
class Inventory:
    """The token list a voice's embedding table is indexed by."""

    language: str
    symbols: tuple[str, ...]

    @property
    def index(self) -> dict[str, int]:
        return _index(self.symbols)

    @property
    def new_symbols(self) -> tuple[str, ...]:
        """Tokens the English base has no embedding for."""
        return self.symbols[len(SYMBOLS) :]


@lru_cache(maxsize=64)
def _index(symbols: tuple[str, ...]) -> dict[str, int]:
    return {s: i for i, s in enumerate(symbols)}


@lru_cache(maxsize=1)
def _inventory_data() -> dict[str, list[str]]:
    return json.loads(_INVENTORY_FILE.read_text("utf-8"))["languages"]


@lru_cache(maxsize=32)
def inventory(language: str) -> Inventory:
    """The inventory a new voice of `language` is trained with (English: the base's 80 tokens)."""
    code = check_language(language)
    if code == "en-us":
        return Inventory(code, tuple(SYMBOLS))
    extra = [t for t in _inventory_data()[code] if t not in SYMBOL_TO_ID]
    return Inventory(code, tuple(SYMBOLS) + tuple(extra))


def inventory_from_config(language: str, symbols: list[str]) -> Inventory:
    """The inventory stored in a voice_config.json (must extend the English base's tokens)."""
    if list(symbols[: len(SYMBOLS)]) != SYMBOLS or len(set(symbols)) != len(symbols):
        raise VoicelaneError(
            "manifest_invalid",
            "voice config symbols do not extend this engine's base inventory",
            {"symbols": len(symbols)},
        )
    return Inventory(check_language(language), tuple(symbols))


_VOWEL_LETTERS = set("aeiouyɑɐɒæɛɜəɘɞɪɨʉʊʏøœɔɤɯʌɵɶɚɝᵻ")
_PRIMARY_MARKS = {"ˈ", "'"}
_SECONDARY_MARKS = {"ˌ"}
_DROPPED_MARKS = {"²", "¹", "‿"}  # Swedish tone-accent marks, linking marks


def is_vowel(token: str) -> bool:
    base = token.lstrip("ˈˌ")
    return bool(base) and base[0] in _VOWEL_LETTERS


def normalize_phonemes(phonemes: list[str]) -> list[str]:
    """gruut's phonemes of one word -> tokens: NFC, stress written ˈ/ˌ and carried from a
    syllable's onset consonant onto its vowel, tone-accent marks dropped, a detached length
    mark joined to the sound before it."""
    out: list[str] = []
    pending = ""
    for raw in phonemes:
        ph = unicodedata.normalize("NFC", raw)
        stress = ""
        while ph and (ph[0] in _PRIMARY_MARKS or ph[0] in _SECONDARY_MARKS or ph[0] in _DROPPED_MARKS):
            mark, ph = ph[0], ph[1:]
            if mark in _PRIMARY_MARKS:
                stress = "ˈ"
            elif mark in _SECONDARY_MARKS and not stress:
                stress = "ˌ"
        ph = "".join(c for c in ph if c not in _DROPPED_MARKS and c not in _PRIMARY_MARKS)
        if not ph:
            pending = stress or pending
            continue
        if ph == "ː" and out:
            out[-1] += ph
            continue
        stress = stress or pending
        if is_vowel(ph):
            out.append(stress + ph)
            pending = ""
        else:
            out.append(ph)
            pending = stress
    return out


def _speakable_or_raise(word: str, lang: Language) -> None:
    """Refuse what gruut would otherwise 'pronounce' by guessing: other scripts, digits the
    language cannot verbalise, words that are only symbols."""
    letters = [c for c in word if unicodedata.category(c)[0] == "L"]
    digits = [c for c in word if unicodedata.category(c) == "Nd"]
    if digits:
        hint = "" if lang.numbers else f"; gruut cannot read numbers in {lang.name}: write them as words"
        raise VoicelaneError(
            "text_unvoiceable",
            f"the word {word!r} has digits the front end cannot read{hint}",
            {"word": word, "language": lang.code},
        )
    if not letters:
        raise VoicelaneError(
            "text_unvoiceable",
            f"{word!r} is a symbol the voice cannot read; write it as words",
            {"word": word, "language": lang.code},
        )
    scripts = {unicodedata.name(c, "UNKNOWN").split(" ")[0] for c in letters}
    if scripts - {lang.script}:
        raise VoicelaneError(
            "text_unvoiceable",
            f"the word {word!r} is not written in the {lang.script.title()} script of {lang.name}",
            {"word": word, "language": lang.code, "scripts": sorted(scripts)},
        )


def arpabet(token: str) -> str | None:
    """ARPAbet phone of an English base token, or None for prosody tokens.

    KeyError for tokens of other languages: ``align.token_arpabet`` maps those onto the en-us
    phone set."""
    if token in PROSODY_TOKENS or token == PAD:
        return None
    base = token.lstrip("".join(STRESS))
    return VOWELS.get(base) or CONSONANTS[base]


def words_ipa(text: str, language: str, symbols: tuple[str, ...] | None = None) -> list[tuple[str, list[str]]]:
    """Alignment API: ``[(word, [token, ...]), ...]`` for the spoken words of a transcript.

    Exactly the phonemes the acoustic model is trained on for `language` (the tokens of
    ``phonemize``, in the language's inventory or the voice's `symbols`): IPA from gruut after
    ``normalize_phonemes`` (stress ``ˈ``/``ˌ`` on vowels only, length ``ː`` kept, e.g. Czech
    ``[("přijďte", ["p", "r̝", "ɪ", "j", "c", "t", "ɛ"])]``). English words use the base's
    folded spellings (``ˈeɪ``, ``t͡ʃ``...). Words appear as gruut normalised them: numbers,
    dates and abbreviations already expanded ("25" -> "dvacet", "pět"). Prosody tokens are left
    out. Raises ``language_unsupported`` / ``text_unvoiceable`` like ``phonemize``."""
    out: list[tuple[str, list[str]]] = []
    for utt in phonemize_sentences(text, language, symbols):
        out.extend((w.text, list(w.tokens)) for w in utt.words if w.tokens and w.tokens[0] not in PROSODY_TOKENS)
    return out


def nearest_base_phoneme(ipa: str) -> str:
    """The English base sound (unstressed, in ``BASE_PHONEMES``) closest to `ipa`."""
    from voicelane.engine import crosslingual

    return crosslingual.nearest_base(ipa.lstrip("".join(STRESS)))


@dataclass
class Word:
    text: str
    tokens: list[str]


@dataclass
class Utterance:
    words: list[Word] = field(default_factory=list)  # includes prosody pseudo-words
    symbol_to_id: dict[str, int] = field(default_factory=lambda: SYMBOL_TO_ID, repr=False, compare=False)

    @property
    def tokens(self) -> list[str]:
        return [t for w in self.words for t in w.tokens]

    @property
    def ids(self) -> list[int]:
        return [self.symbol_to_id[t] for t in self.tokens]

    @property
    def spoken_words(self) -> list[str]:
        return [w.text for w in self.words if w.tokens and w.tokens[0] not in PROSODY_TOKENS]


def canonical_phoneme(ph: str) -> str:
    ph = unicodedata.normalize("NFC", ph).replace("ː", "")
    stress = ""
    if ph and ph[0] in STRESS:
        stress, ph = ph[0], ph[1:]
    ph = _ALIASES.get(ph, ph)
    if ph in _CANON_VOWELS:
        return stress + ph
    if ph in _CANON_CONS:
        return ph
    raise KeyError(ph)


_CLEAN = re.compile(r"\s+")
MAX_TOKEN_CHARS = 64  # longer "words" (600 digits, a pasted hash) are refused, not guessed at
MAX_NUMBER_DIGITS = 15  # longer digit runs are read digit by digit ("4 0 9 ...")
_TOKEN = re.compile(r"\S+")
_LONG_DIGITS = re.compile(r"[0-9]{%d,}" % (MAX_NUMBER_DIGITS + 1))


def bound_tokens(text: str) -> str:
    """Refuse over-long tokens (``text_unvoiceable`` with the offending span) and spell out long
    digit runs, so the number normaliser only ever sees numbers it can read."""
    for m in _TOKEN.finditer(text):
        if len(m.group()) > MAX_TOKEN_CHARS:
            raise VoicelaneError(
                "text_unvoiceable",
                f"a {len(m.group())}-character word is longer than the {MAX_TOKEN_CHARS} characters a word may have",
                {"span": [m.start(), m.end()], "excerpt": m.group()[:32], "maxTokenChars": MAX_TOKEN_CHARS},
            )
    return _LONG_DIGITS.sub(lambda m: " ".join(m.group()), text)


def _gruut_sentences(text: str, language: str, **kw):
    """gruut's sentences, with its internal failures (number/date normalisers) turned into
    ``text_unvoiceable`` naming the span it could not read."""
    from gruut import sentences

    from voicelane.engine.lexicon_index import ensure_indexed

    ensure_indexed(language)
    try:
        return list(sentences(text, lang=language, **kw))
    except VoicelaneError:
        raise
    except Exception as exc:  # noqa: BLE001 - any normaliser crash is a text the voice cannot read
        raise VoicelaneError(
            "text_unvoiceable",
            f"the front end cannot read this text ({type(exc).__name__})",
            {"span": [0, len(text)], "excerpt": text[:64]},
        ) from None


PHONEMIZE_CACHE_SIZE = 512  # sentences (phonemize), ~4 KB each; repeated whole texts hit the cache below


@lru_cache(maxsize=PHONEMIZE_CACHE_SIZE)
def _phonemize_cached(
    text: str, language: str, symbols: tuple[str, ...] | None = None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(word, tokens) pairs. English folds gruut's phonemes onto the base inventory; other
    languages keep their IPA tokens, which must all be in `symbols` (the voice's inventory)."""
    lang = language_info(language)
    known = _index(symbols or inventory(lang.code).symbols)
    out: list[tuple[str, tuple[str, ...]]] = []
    for sent in _gruut_sentences(text, lang.gruut):
        for w in sent:
            if w.is_major_break:
                out.append((w.text, (END_TOKENS.get(w.text.strip()[:1], END_TOKENS["."]),)))
            elif w.is_break:
                out.append((w.text, (MINOR,)))
            elif w.phonemes:
                if lang.code != "en-us":
                    _speakable_or_raise(w.text, lang)
                out.append((w.text, _word_tokens(w.text, w.phonemes, lang, known)))
    return tuple(out)


def _word_tokens(word: str, phonemes: list[str], lang: Language, known: dict[str, int]) -> tuple[str, ...]:
    if lang.code == "en-us":
        toks = []
        for ph in phonemes:
            try:
                toks.append(canonical_phoneme(ph))
            except KeyError:
                raise _unvoiceable_sound(word, ph, lang) from None
        return tuple(toks)
    toks = normalize_phonemes(phonemes)
    for t in toks:
        if t not in known:
            raise _unvoiceable_sound(word, t, lang)
    return tuple(toks)


def _unvoiceable_sound(word: str, phoneme: str, lang: Language) -> VoicelaneError:
    return VoicelaneError(
        "text_unvoiceable",
        f"the word {word!r} has a sound the voice cannot make ({phoneme!r})",
        {"word": word, "phoneme": phoneme, "language": lang.code},
    )


def phonemize(text: str, language: str = "en-us", symbols: tuple[str, ...] | None = None) -> Utterance:
    """Text to an utterance that always starts with START and ends with an end token.

    `symbols`: the voice's inventory (voice_config.json); default: the language's inventory."""
    language = check_language(language)
    symbols = tuple(symbols) if symbols is not None else inventory(language).symbols
    text = bound_tokens(_CLEAN.sub(" ", unicodedata.normalize("NFC", text)).strip())
    words = [Word(t, list(toks)) for t, toks in _phonemize_cached(text, language, symbols)]
    spoken = [w for w in words if w.tokens[0] not in PROSODY_TOKENS]
    if not spoken:
        raise VoicelaneError("text_unvoiceable", "the text contains no pronounceable words", {"text_chars": len(text)})
    # collapse repeated breaks, drop breaks before the first word
    cleaned: list[Word] = [Word(START, [START])]
    for w in words:
        is_break = w.tokens[0] in PROSODY_TOKENS
        if is_break and cleaned[-1].tokens[0] in PROSODY_TOKENS:
            if w.tokens[0] in END_TOKENS.values() and cleaned[-1].tokens[0] != START:
                cleaned[-1] = w  # an end token wins over a minor break
            continue
        cleaned.append(w)
    if cleaned[-1].tokens[0] not in END_TOKENS.values():
        if cleaned[-1].tokens[0] == MINOR:
            cleaned.pop()
        cleaned.append(Word(".", [END_TOKENS["."]]))
    return Utterance(cleaned, _index(symbols))


def normalized_words(text: str, language: str = "en-us") -> list[str]:
    """The spoken words as gruut expands them (numbers, dates, abbreviations): ASR references."""
    return [w.lower() for w in phonemize(text, language).spoken_words]


MAX_SENTENCE_WORDS = 60


SENTENCE_CACHE_SIZE = 512  # whole texts, ~3.5 KB each: repeated callouts skip the front end (~0.002 ms)


def phonemize_sentences(text: str, language: str = "en-us", symbols: tuple[str, ...] | None = None) -> list[Utterance]:
    """Split text into sentences (gruut) and phonemize each; long sentences are cut at breaks
    so that no utterance exceeds what the model was trained on. `symbols` as in `phonemize`."""
    language = check_language(language)
    symbols = tuple(symbols) if symbols is not None else inventory(language).symbols
    return list(_phonemize_sentences_cached(text, language, symbols))


@lru_cache(maxsize=SENTENCE_CACHE_SIZE)
def _phonemize_sentences_cached(text: str, language: str, symbols: tuple[str, ...]) -> tuple[Utterance, ...]:
    return tuple(_phonemize_sentences(text, language, symbols))


def _phonemize_sentences(text: str, language: str, symbols: tuple[str, ...]) -> list[Utterance]:
    text = bound_tokens(_CLEAN.sub(" ", unicodedata.normalize("NFC", text)).strip())
    out: list[Utterance] = []
    for sent in _gruut_sentences(text, language_info(language).gruut, major_breaks=True):
        raw = sent.text_with_ws if hasattr(sent, "text_with_ws") else sent.text
        try:
            utt = phonemize(raw, language, symbols)
        except VoicelaneError as err:
            if err.code == "text_unvoiceable" and "no pronounceable" in err.message:
                continue  # e.g. a stray "..." sentence
            raise
        out.extend(_split_long(utt))
    if not out:
        raise VoicelaneError("text_unvoiceable", "the text contains no pronounceable words", {"text_chars": len(text)})
    return out


def _split_long(utt: Utterance) -> list[Utterance]:
    words = utt.words
    if len(utt.spoken_words) <= MAX_SENTENCE_WORDS:
        return [utt]
    chunks: list[Utterance] = []
    cur: list[Word] = []
    count = 0
    for w in words[1:]:
        cur.append(w)
        if w.tokens[0] not in PROSODY_TOKENS:
            count += 1
        if count >= MAX_SENTENCE_WORDS or (count >= MAX_SENTENCE_WORDS // 2 and w.tokens[0] == MINOR):
            if cur[-1].tokens[0] == MINOR:
                cur[-1] = Word(".", [END_TOKENS["."]])
            elif cur[-1].tokens[0] not in END_TOKENS.values():
                cur.append(Word(".", [END_TOKENS["."]]))
            chunks.append(Utterance([Word(START, [START])] + cur, utt.symbol_to_id))
            cur, count = [], 0
    if count:
        chunks.append(Utterance([Word(START, [START])] + cur, utt.symbol_to_id))
    return chunks

"""Text front end: text -> words -> phoneme tokens (gruut, MIT; no espeak in the runtime path).

The token inventory is fixed (model embeddings depend on it): stressed/unstressed vowels,
consonants, and a few prosody tokens. Every token also has an ARPAbet spelling so that the
pocketsphinx forced aligner can time it (see ``align.py``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from voicelane.errors import VoicelaneError

PAD = "<pad>"
START = "^"          # leading silence left after trimming
MINOR = "|"          # comma-like pause
END_TOKENS = {".": "<.>", "?": "<?>", "!": "<!>"}  # sentence end; absorbs trailing silence

VOWELS = {
    "ɑ": "AA", "æ": "AE", "ʌ": "AH", "ə": "AH", "ɐ": "AH", "ɔ": "AO", "aʊ": "AW", "aɪ": "AY",
    "ɛ": "EH", "ɚ": "ER", "ɝ": "ER", "eɪ": "EY", "e": "EY", "ɪ": "IH", "ᵻ": "IH", "ɨ": "IH",
    "i": "IY", "oʊ": "OW", "o": "OW", "ɔɪ": "OY", "ʊ": "UH", "u": "UW",
}
CONSONANTS = {
    "b": "B", "t͡ʃ": "CH", "tʃ": "CH", "d": "D", "ð": "DH", "f": "F", "ɡ": "G", "g": "G",
    "h": "HH", "x": "HH", "d͡ʒ": "JH", "dʒ": "JH", "k": "K", "l": "L", "l̩": "L", "m": "M",
    "m̩": "M", "n": "N", "n̩": "N", "ŋ": "NG", "p": "P", "ɹ": "R", "r": "R", "s": "S", "ʃ": "SH",
    "t": "T", "ɾ": "D", "ʔ": "T", "θ": "TH", "v": "V", "w": "W", "j": "Y", "z": "Z", "ʒ": "ZH",
}
STRESS = ("ˈ", "ˌ")

# One canonical token per sound (aliases fold onto the first spelling of their ARPAbet phone).
_CANON_VOWELS = ["ɑ", "æ", "ʌ", "ə", "ɔ", "aʊ", "aɪ", "ɛ", "ɚ", "eɪ", "ɪ", "i", "oʊ", "ɔɪ", "ʊ", "u"]
_CANON_CONS = ["b", "t͡ʃ", "d", "ð", "f", "ɡ", "h", "d͡ʒ", "k", "l", "m", "n", "ŋ", "p", "ɹ",
               "s", "ʃ", "t", "ɾ", "θ", "v", "w", "j", "z", "ʒ", "ʔ"]
_ALIASES = {"ɐ": "ə", "ɝ": "ɚ", "e": "eɪ", "ᵻ": "ɪ", "ɨ": "ɪ", "o": "oʊ", "tʃ": "t͡ʃ", "g": "ɡ",
            "x": "h", "dʒ": "d͡ʒ", "l̩": "l", "m̩": "m", "n̩": "n", "r": "ɹ"}

SYMBOLS: list[str] = (
    [PAD, START, MINOR, *END_TOKENS.values()]
    + [s + v for v in _CANON_VOWELS for s in ("", *STRESS)]
    + _CANON_CONS
)
SYMBOL_TO_ID = {s: i for i, s in enumerate(SYMBOLS)}
PROSODY_TOKENS = {START, MINOR, *END_TOKENS.values()}

SUPPORTED_LANGUAGES = ("en-us",)


@dataclass
class Word:
    text: str
    tokens: list[str]


@dataclass
class Utterance:
    words: list[Word] = field(default_factory=list)  # includes prosody pseudo-words

    @property
    def tokens(self) -> list[str]:
        return [t for w in self.words for t in w.tokens]

    @property
    def ids(self) -> list[int]:
        return [SYMBOL_TO_ID[t] for t in self.tokens]

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


def arpabet(token: str) -> str | None:
    """ARPAbet phone of a token, or None for prosody tokens."""
    if token in PROSODY_TOKENS or token == PAD:
        return None
    base = token.lstrip("".join(STRESS))
    return VOWELS.get(base) or CONSONANTS[base]


def check_language(language: str) -> str:
    lang = language.lower()
    if lang in ("en", "en-us", "en_us"):
        return "en-us"
    raise VoicelaneError("language_unsupported", f"language {language!r} is not supported by this engine",
                         {"language": language, "supported": list(SUPPORTED_LANGUAGES)})


_CLEAN = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def _phonemize_cached(text: str, language: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    from gruut import sentences

    out: list[tuple[str, tuple[str, ...]]] = []
    for sent in sentences(text, lang=language):
        for w in sent:
            if w.is_major_break:
                out.append((w.text, (END_TOKENS.get(w.text.strip()[:1], END_TOKENS["."]),)))
            elif w.is_break:
                out.append((w.text, (MINOR,)))
            elif w.phonemes:
                toks = []
                for ph in w.phonemes:
                    try:
                        toks.append(canonical_phoneme(ph))
                    except KeyError:
                        raise VoicelaneError("text_unvoiceable",
                                             f"the word {w.text!r} has a sound the voice cannot make ({ph!r})",
                                             {"word": w.text, "phoneme": ph}) from None
                out.append((w.text, tuple(toks)))
    return tuple(out)


def phonemize(text: str, language: str = "en-us") -> Utterance:
    """Text to an utterance that always starts with START and ends with an end token."""
    language = check_language(language)
    text = _CLEAN.sub(" ", unicodedata.normalize("NFC", text)).strip()
    words = [Word(t, list(toks)) for t, toks in _phonemize_cached(text, language)]
    spoken = [w for w in words if w.tokens[0] not in PROSODY_TOKENS]
    if not spoken:
        raise VoicelaneError("text_unvoiceable", "the text contains no pronounceable words",
                             {"text_chars": len(text)})
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
    return Utterance(cleaned)


def normalized_words(text: str, language: str = "en-us") -> list[str]:
    """The spoken words as gruut expands them (numbers, dates, abbreviations): ASR references."""
    return [w.lower() for w in phonemize(text, language).spoken_words]


MAX_SENTENCE_WORDS = 60


def phonemize_sentences(text: str, language: str = "en-us") -> list[Utterance]:
    """Split text into sentences (gruut) and phonemize each; long sentences are cut at breaks
    so that no utterance exceeds what the model was trained on."""
    language = check_language(language)
    text = _CLEAN.sub(" ", unicodedata.normalize("NFC", text)).strip()
    from gruut import sentences

    out: list[Utterance] = []
    for sent in sentences(text, lang=language, major_breaks=True):
        raw = sent.text_with_ws if hasattr(sent, "text_with_ws") else sent.text
        try:
            utt = phonemize(raw, language)
        except VoicelaneError as err:
            if err.code == "text_unvoiceable" and "no pronounceable" in err.message:
                continue  # e.g. a stray "..." sentence
            raise
        out.extend(_split_long(utt))
    if not out:
        raise VoicelaneError("text_unvoiceable", "the text contains no pronounceable words",
                             {"text_chars": len(text)})
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
            chunks.append(Utterance([Word(START, [START])] + cur))
            cur, count = [], 0
    if count:
        chunks.append(Utterance([Word(START, [START])] + cur))
    return chunks

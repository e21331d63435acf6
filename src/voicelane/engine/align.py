"""Forced alignment for any language, offline: pocketsphinx's en-us acoustic model, with each
language's phonemes (IPA from gruut) mapped onto the en-us phone set.

Two uses share one decoder path:

* :func:`align_words` / :func:`align_text` time words and phones of any transcript (IPA per
  word) and score the result; ``voicelane dataset align`` writes these as Praat TextGrids and
  rejects implausible ones (:func:`implausibility`).
* :func:`token_durations` gives the acoustic model its per-token durations. Each word of the
  utterance is added to the decoder under a private name spelled with our own token sequence
  (mapped to ARPAbet), so the aligner times exactly the tokens the model will see. Silences go
  to the prosody tokens: leading silence to START, trailing silence to the end token, inner
  silence to a MINOR break at that position when there is one, else it is shared by the
  neighbouring phones.

Phones outside en-us are mapped by :func:`ipa_to_arpabet`: a table for the sounds of the gruut
languages (diphthongs and affricates may become two en-us phones), then the nearest en-us phone
by panphon's articulatory features. Boundary accuracy per language is measured by
``bench/align_accuracy.py`` against Festival's own segment times (docs/alignment.md).
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from voicelane.engine import frontend
from voicelane.engine.features import SAMPLE_RATE

log = logging.getLogger(__name__)
ASR_RATE = 16000
FRAME_S = 0.01
# Added to every boundary. Measured on Festival renders (docs/alignment.md): the median signed
# error of frame-start boundaries is within 1 ms of zero, so no shift is applied.
BOUNDARY_OFFSET_S = 0.0


class AlignmentError(Exception):
    pass


# ---- IPA -> en-us phone set ------------------------------------------------------------------

ARPABET_IPA = {  # one IPA spelling per en-us phone: the targets of the feature fallback
    "AA": "ɑ",
    "AE": "æ",
    "AH": "ʌ",
    "AO": "ɔ",
    "EH": "ɛ",
    "ER": "ɝ",
    "IH": "ɪ",
    "IY": "i",
    "UH": "ʊ",
    "UW": "u",
    "EY": "e",
    "OW": "o",
    "B": "b",
    "CH": "t͡ʃ",
    "D": "d",
    "DH": "ð",
    "F": "f",
    "G": "ɡ",
    "HH": "h",
    "JH": "d͡ʒ",
    "K": "k",
    "L": "l",
    "M": "m",
    "N": "n",
    "NG": "ŋ",
    "P": "p",
    "R": "ɹ",
    "S": "s",
    "SH": "ʃ",
    "T": "t",
    "TH": "θ",
    "V": "v",
    "W": "w",
    "Y": "j",
    "Z": "z",
    "ZH": "ʒ",
}
IPA_TABLE: dict[str, tuple[str, ...]] = {
    # vowels
    "i": ("IY",),
    "y": ("IY",),
    "ɨ": ("IH",),
    "ʉ": ("UW",),
    "ɯ": ("UW",),
    "u": ("UW",),
    "ɪ": ("IH",),
    "ʏ": ("IH",),
    "ʊ": ("UH",),
    "e": ("EY",),
    "ø": ("ER",),
    "ɘ": ("AH",),
    "ɵ": ("ER",),
    "ɤ": ("AH",),
    "o": ("OW",),
    "ə": ("AH",),
    "ɛ": ("EH",),
    "œ": ("ER",),
    "ɜ": ("ER",),
    "ɞ": ("ER",),
    "ʌ": ("AH",),
    "ɔ": ("AO",),
    "æ": ("AE",),
    "ɐ": ("AH",),
    "a": ("AA",),
    "ɶ": ("AA",),
    "ɑ": ("AA",),
    "ɒ": ("AA",),
    "ɚ": ("ER",),
    "ɝ": ("ER",),
    # diphthongs en-us has
    "aɪ": ("AY",),
    "ai": ("AY",),
    "aj": ("AY",),
    "aʊ": ("AW",),
    "au": ("AW",),
    "aw": ("AW",),
    "eɪ": ("EY",),
    "ei": ("EY",),
    "ej": ("EY",),
    "ɛi": ("EY",),
    "ɛj": ("EY",),
    "oʊ": ("OW",),
    "ou": ("OW",),
    "ow": ("OW",),
    "ɔɪ": ("OY",),
    "ɔi": ("OY",),
    "ɔj": ("OY",),
    "oi": ("OY",),
    "oj": ("OY",),
    "ɔʏ": ("OY",),
    "œy": ("OY",),
    # plosives and implosives
    "p": ("P",),
    "b": ("B",),
    "t": ("T",),
    "d": ("D",),
    "ʈ": ("T",),
    "ɖ": ("D",),
    "c": ("K",),
    "ɟ": ("G",),
    "k": ("K",),
    "g": ("G",),
    "ɡ": ("G",),
    "q": ("K",),
    "ɢ": ("G",),
    "ʔ": ("T",),
    "ɓ": ("B",),
    "ɗ": ("D",),
    "ʄ": ("JH",),
    "ɠ": ("G",),
    # nasals
    "m": ("M",),
    "ɱ": ("M",),
    "n": ("N",),
    "ɳ": ("N",),
    "ɲ": ("N",),
    "ŋ": ("NG",),
    "ɴ": ("NG",),
    # trills, taps
    "r": ("R",),
    "ʀ": ("R",),
    "ɾ": ("D",),
    "ɽ": ("R",),
    "ʙ": ("B",),
    # fricatives
    "ɸ": ("F",),
    "β": ("V",),
    "f": ("F",),
    "v": ("V",),
    "θ": ("TH",),
    "ð": ("DH",),
    "s": ("S",),
    "z": ("Z",),
    "ʃ": ("SH",),
    "ʒ": ("ZH",),
    "ʂ": ("SH",),
    "ʐ": ("ZH",),
    "ç": ("HH",),
    "ʝ": ("Y",),
    "x": ("HH",),
    "ɣ": ("G",),
    "χ": ("HH",),
    "ʁ": ("R",),
    "ħ": ("HH",),
    "ʕ": ("HH",),
    "h": ("HH",),
    "ɦ": ("HH",),
    "ɕ": ("SH",),
    "ʑ": ("ZH",),
    "ɧ": ("SH",),
    "ɬ": ("S",),
    # affricates
    "ts": ("T", "S"),
    "dz": ("D", "Z"),
    "tʃ": ("CH",),
    "dʒ": ("JH",),
    "tɕ": ("CH",),
    "dʑ": ("JH",),
    "pf": ("P", "F"),
    "tʂ": ("CH",),
    "dʐ": ("JH",),
    # approximants, laterals
    "ʋ": ("V",),
    "ɹ": ("R",),
    "ɻ": ("R",),
    "j": ("Y",),
    "ɥ": ("Y",),
    "ɰ": ("W",),
    "w": ("W",),
    "l": ("L",),
    "ɫ": ("L",),
    "ɭ": ("L",),
    "ʎ": ("L",),
    "ʟ": ("L",),
}
_DROP = {"ˈ", "ˌ", "'", "ː", "ˑ", "ʲ", "ˤ", "ʰ", "ʷ", "ˠ", "ᵐ", "ⁿ", "ᵑ", "ᶬ", "\u0361", "\u035c"}
_MAX_KEY = max(len(k) for k in IPA_TABLE)


def _strip(ph: str) -> str:
    """Base letters of an IPA phone: stress, length, secondary articulation and combining
    diacritics (nasalisation, non-syllabic, ...) removed; tie bars removed."""
    out = []
    for composed in unicodedata.normalize("NFC", ph):
        if composed in IPA_TABLE:  # a letter in its own right, e.g. "ç" is not "c" + cedilla
            out.append(composed)
            continue
        out.extend(
            ch for ch in unicodedata.normalize("NFD", composed) if ch not in _DROP and not unicodedata.combining(ch)
        )
    return "".join(out)


@lru_cache(maxsize=1)
def _feature_targets() -> list[tuple[str, np.ndarray]]:
    import panphon

    ft = panphon.FeatureTable()
    out = []
    for arpa, ipa in ARPABET_IPA.items():
        vecs = ft.word_to_vector_list(ipa, numeric=True)
        out.append((arpa, np.asarray(vecs[0], dtype=np.float64)))
    return out


@lru_cache(maxsize=4096)
def _nearest_by_features(ch: str) -> tuple[str, ...]:
    import panphon

    vecs = panphon.FeatureTable().word_to_vector_list(ch, numeric=True)
    if not vecs:
        return ()
    v = np.asarray(vecs[0], dtype=np.float64)
    best = min(_feature_targets(), key=lambda t: float(np.abs(t[1] - v).sum()))
    return (best[0],)


@lru_cache(maxsize=4096)
def ipa_to_arpabet(phone: str) -> tuple[str, ...]:
    """en-us phones for one IPA phone (empty for a symbol with no sound, e.g. a break)."""
    base = _strip(phone)
    if base in IPA_TABLE:
        return IPA_TABLE[base]
    out: list[str] = []
    i = 0
    while i < len(base):  # longest known prefix first ("aɪ" before "a"), else features
        for n in range(min(_MAX_KEY, len(base) - i), 0, -1):
            part = base[i : i + n]
            if part in IPA_TABLE:
                out.extend(IPA_TABLE[part])
                i += n
                break
        else:
            out.extend(_nearest_by_features(base[i]))
            i += 1
    return tuple(out)


def token_arpabet(token: str) -> tuple[str, ...]:
    """en-us phones for one front-end token (empty for prosody tokens)."""
    if token in frontend.PROSODY_TOKENS or token == frontend.PAD:
        return ()
    try:
        phone = frontend.arpabet(token)
    except KeyError:
        phone = None
    return (phone,) if phone else ipa_to_arpabet(token)


# ---- alignment of any transcript ---------------------------------------------------------------


@dataclass
class Interval:
    label: str
    start_s: float
    end_s: float


@dataclass
class Alignment:
    words: list[Interval]
    phones: list[Interval]  # IPA labels; silences are not listed
    score: float  # mean acoustic score per speech frame (pocketsphinx ascr units)
    duration_s: float
    phone_word: list[int] = field(default_factory=list)  # word index of each phone

    def boundaries(self) -> list[float]:
        """Every phone start and end (the times a boundary metric compares)."""
        out = set()
        for p in self.phones:
            out.add(round(p.start_s, 4))
            out.add(round(p.end_s, 4))
        return sorted(out)


# Alignment searches one fixed word sequence, so the beams can be wide at no real cost; the
# default (1e-48) pruned the right path in reverberant rooms (bench: Italian with reverb, 8 of
# 20 clips found no path; with these beams none, and boundary accuracy 51 % -> 68 % within 20 ms).
ALIGN_BEAMS = {"beam": 1e-200, "pbeam": 1e-200, "wbeam": 1e-150}


def _decoder(**options):
    from pocketsphinx import Decoder

    return Decoder(samprate=ASR_RATE, bestpath=False, loglevel="FATAL", **{**ALIGN_BEAMS, **options})


def _pcm16(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def _run_alignment(wav: np.ndarray, spellings: Sequence[Sequence[str]], **options):
    """Align words spelled in en-us phones; return pocketsphinx's word entries (with phones).

    Words with an empty spelling are skipped. The first pass finds the word path, the second
    times the phones inside it.
    """
    dec = _decoder(**options)
    names = []
    for i, phones in enumerate(spellings):
        if phones:
            dec.add_word(f"vlw{i}", " ".join(phones), False)
            names.append(f"vlw{i}")
    if not names:
        raise AlignmentError("the transcript has no alignable phones")
    dec.set_align_text(" ".join(names))
    pcm = _pcm16(wav)
    for n_pass in range(2):
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        if n_pass == 0:
            if dec.hyp() is None:
                raise AlignmentError("aligner found no path through the transcript")
            dec.set_alignment()
    entries = [
        (w.name, w.start, w.duration, [(p.name, p.start, p.duration, p.score) for p in w]) for w in dec.get_alignment()
    ]
    if not entries:
        raise AlignmentError("aligner returned no segments")
    return entries


def align_segments(wav: np.ndarray, utt: frontend.Utterance) -> list[tuple[str, int, int]]:
    """Run the aligner; return [(word_index|'sil', start_frame, n_frames)] in 10 ms frames."""
    if SAMPLE_RATE != ASR_RATE:  # pragma: no cover - engine rate is 16 kHz
        raise AlignmentError("aligner expects 16 kHz audio")
    spellings = [[p for t in w.tokens for p in token_arpabet(t)] for w in utt.words]
    segs: list[tuple[str, int, int]] = []
    for name, start, dur, phones in _run_alignment(wav, spellings):
        if name.startswith("vlw"):
            segs.extend((name[3:], ph_start, ph_dur) for _n, ph_start, ph_dur, _s in phones)
        else:
            segs.append(("sil", start, dur))
    return segs


def align_words(wav: np.ndarray, sr: int, words: Sequence[tuple[str, Sequence[str]]], **options) -> Alignment:
    """Time `words` ([(text, [IPA phone, ...])]) in `wav` (mono float, any rate).

    Returns word and phone intervals (IPA labels; a phone mapped onto two en-us phones spans
    both) and the mean acoustic score per speech frame.
    """
    if sr != ASR_RATE:
        import soxr

        wav = soxr.resample(np.asarray(wav, dtype=np.float64), sr, ASR_RATE, quality="HQ")
    spellings = [[a for ph in phones for a in ipa_to_arpabet(ph)] for _t, phones in words]
    entries = _run_alignment(np.asarray(wav), spellings, **options)
    frame = FRAME_S * (100.0 / options.get("frate", 100))
    t = lambda f: max(0.0, f * frame + BOUNDARY_OFFSET_S) if f else 0.0  # noqa: E731
    out_words: list[Interval] = []
    out_phones: list[Interval] = []
    phone_word: list[int] = []
    total_score = 0
    speech_frames = 0
    for name, start, dur, phones in entries:
        if not name.startswith("vlw"):
            continue
        wi = int(name[3:])
        out_words.append(Interval(words[wi][0], t(start), t(start + dur)))
        total_score += sum(p[3] for p in phones)
        speech_frames += dur
        k = 0
        for ipa in words[wi][1]:
            n = len(ipa_to_arpabet(ipa))
            if n == 0:
                continue
            group = phones[k : k + n]
            k += n
            a, b = group[0][1], group[-1][1] + group[-1][2]
            out_phones.append(Interval(ipa, t(a), t(b)))
            phone_word.append(len(out_words) - 1)
    score = total_score / max(speech_frames, 1)
    return Alignment(out_words, out_phones, float(score), len(wav) / ASR_RATE, phone_word)


def align_text(wav: np.ndarray, sr: int, text: str, language: str, **options) -> Alignment:
    """Align a transcript in `language` (BCP-47): the words and phonemes are exactly those the
    acoustic model trains on (``frontend.words_ipa``)."""
    words = frontend.words_ipa(text, language)
    if not words:
        raise AlignmentError("the transcript has no pronounceable words")
    return align_words(wav, sr, words, **options)


def write_textgrid(al: Alignment, path) -> None:
    """Praat TextGrid (praatio, long format) with tiers `words`, `phones` and `score` (one
    interval over the clip labelled with the alignment score); written atomically."""
    import os
    import tempfile
    from pathlib import Path

    from praatio import textgrid

    end = max([al.duration_s] + [w.end_s for w in al.words])
    tg = textgrid.Textgrid()
    for name, items in (("words", al.words), ("phones", al.phones)):
        entries = [
            (round(i.start_s, 3), round(i.end_s, 3), i.label) for i in items if round(i.end_s, 3) > round(i.start_s, 3)
        ]
        tg.addTier(textgrid.IntervalTier(name, entries, 0.0, end))
    tg.addTier(textgrid.IntervalTier("score", [(0.0, end, f"{al.score:.2f}")], 0.0, end))
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        tg.save(tmp, format="long_textgrid", includeBlankSpaces=True, reportingMode="silence")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Physical limits for one phone (stretched or squeezed beyond these, the alignment is wrong).
MAX_PHONE_S = 0.6
MIN_SCORE = -60.0  # mean ascr per speech frame: right transcripts -10..-35, wrong ~-80 (docs/alignment.md)
MAX_MIN_PHONE_SHARE = 0.5  # more than half the phones at the decoder's 30 ms floor: squeezed


def implausibility(al: Alignment, min_score: float = MIN_SCORE, max_phone_s: float = MAX_PHONE_S) -> str | None:
    """Why this alignment cannot be right, or None when it is plausible."""
    if not al.phones:
        return "no phones aligned"
    if al.score < min_score:
        return f"alignment score {al.score:.0f} < {min_score:.0f} per frame"
    long = [p for p in al.phones if p.end_s - p.start_s > max_phone_s]
    if long:
        p = long[0]
        return f"phone {p.label!r} stretched to {p.end_s - p.start_s:.2f} s (> {max_phone_s:g} s) at {p.start_s:.2f} s"
    floor = sum(1 for p in al.phones if p.end_s - p.start_s <= 0.0301)
    if len(al.phones) >= 6 and floor / len(al.phones) > MAX_MIN_PHONE_SHARE:
        return (
            f"{floor} of {len(al.phones)} phones squeezed to the 30 ms minimum "
            "(the transcript is longer than the speech)"
        )
    return None


def _segments_problem(segs: list[tuple[str, int, int]]) -> str | None:
    phones = [Interval(name, start * FRAME_S, (start + n) * FRAME_S) for name, start, n in segs if name != "sil"]
    al = Alignment([], phones, 0.0, 0.0)
    return implausibility(al, min_score=float("-inf"))


def token_durations(wav: np.ndarray, utt: frontend.Utterance, total_frames: int) -> np.ndarray:
    """Durations (frames) for every token of `utt`, summing to `total_frames`.

    Raises AlignmentError("alignment_failed: ...") when the aligner found no path, or phones
    stretched or squeezed beyond the limits of :func:`implausibility` (the same check
    ``voicelane dataset align`` applies), so the lane drops such clips from training."""
    segs = align_segments(wav, utt)
    problem = _segments_problem(segs)
    if problem:
        raise AlignmentError(f"alignment_failed: {problem}")
    # the token each aligned phone belongs to (a token of another language may be spelled
    # with two en-us phones, e.g. a diphthong; prosody tokens with none)
    word_tok_idx: dict[str, list[int]] = {}
    pos = 0
    for i, w in enumerate(utt.words):
        phone_tok = [pos + j for j, t in enumerate(w.tokens) for _ in token_arpabet(t)]
        if phone_tok:
            word_tok_idx[str(i)] = phone_tok
        pos += len(w.tokens)
    tokens = utt.tokens
    dur = np.zeros(len(tokens), dtype=np.int64)
    consumed: dict[str, int] = {}
    pending_sil = 0
    last_tok = 0  # START
    for name, _start, n in segs:
        if name == "sil":
            pending_sil += n
            continue
        k = consumed.get(name, 0)
        consumed[name] = k + 1
        t = word_tok_idx[name][k]
        if pending_sil:
            _place_silence(dur, tokens, last_tok, t, pending_sil)
            pending_sil = 0
        dur[t] += n
        last_tok = t
    # trailing silence -> end token (always last)
    dur[-1] += pending_sil
    diff = total_frames - int(dur.sum())
    if diff >= 0:
        dur[-1] += diff
    else:  # aligner counted past the WORLD frame count: trim from the end
        i = len(dur) - 1
        while diff < 0 and i >= 0:
            take = min(int(dur[i]), -diff)
            dur[i] -= take
            diff += take
            i -= 1
    return dur


def _place_silence(dur: np.ndarray, tokens: list[str], prev_tok: int, next_tok: int, n: int) -> None:
    between = range(prev_tok + 1, next_tok)
    breaks = [j for j in between if tokens[j] in frontend.PROSODY_TOKENS]
    if prev_tok == 0 and dur[0] == 0:
        dur[0] += n  # leading silence
    elif breaks:
        dur[breaks[0]] += n
    else:
        half = n // 2
        dur[prev_tok] += half
        dur[next_tok] += n - half

"""Per-token durations from pocketsphinx forced alignment (offline; model ships in the wheel).

Duration-based acoustic models learn to speak far faster than models that must also learn
alignment (shared/MEASUREMENTS.md). Each word of the utterance is added to the decoder under a
private name spelled with our own token sequence (mapped to ARPAbet), so the aligner times
exactly the tokens the model will see. Silences the aligner finds go to the prosody tokens:
leading silence to START, trailing silence to the end token, inner silence to a MINOR break
at that position when there is one, else it is shared by the neighbouring phones.
"""

from __future__ import annotations

import logging

import numpy as np

from voicelane.engine import frontend
from voicelane.engine.features import SAMPLE_RATE

log = logging.getLogger(__name__)
ASR_RATE = 16000


class AlignmentError(Exception):
    pass


def _decoder():
    from pocketsphinx import Decoder

    return Decoder(samprate=ASR_RATE, bestpath=False, loglevel="FATAL")


def _pcm16(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def align_segments(wav: np.ndarray, utt: frontend.Utterance) -> list[tuple[str, int, int]]:
    """Run the aligner; return [(word_index|'sil', start_frame, n_frames)] in 10 ms frames."""
    if SAMPLE_RATE != ASR_RATE:  # pragma: no cover - engine rate is 16 kHz
        raise AlignmentError("aligner expects 16 kHz audio")
    dec = _decoder()
    names = []
    for i, w in enumerate(utt.words):
        phones = [frontend.arpabet(t) for t in w.tokens]
        phones = [p for p in phones if p]
        if phones:
            dec.add_word(f"vlw{i}", " ".join(phones), False)
            names.append(f"vlw{i}")
    dec.set_align_text(" ".join(names))
    pcm = _pcm16(wav)
    for _ in range(2):  # first pass: word alignment; second: phone alignment
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        if _ == 0:
            if dec.hyp() is None:
                raise AlignmentError("aligner found no path through the transcript")
            dec.set_alignment()
    segs: list[tuple[str, int, int]] = []
    for word in dec.get_alignment():
        if word.name.startswith("vlw"):
            for ph in word:
                segs.append((word.name[3:], ph.start, ph.duration))
        else:
            segs.append(("sil", word.start, word.duration))
    if not segs:
        raise AlignmentError("aligner returned no segments")
    return segs


def token_durations(wav: np.ndarray, utt: frontend.Utterance, total_frames: int) -> np.ndarray:
    """Durations (frames) for every token of `utt`, summing to `total_frames`."""
    segs = align_segments(wav, utt)
    # token positions of each word's phones
    word_tok_idx: dict[str, list[int]] = {}
    pos = 0
    for i, w in enumerate(utt.words):
        idx = list(range(pos, pos + len(w.tokens)))
        if frontend.arpabet(w.tokens[0]) is not None:
            word_tok_idx[str(i)] = idx
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

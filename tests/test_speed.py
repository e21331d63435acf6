"""Speed paths keep behaviour: indexed lexicon, sentence cache, WORLD options, streamed synthesis."""

from __future__ import annotations

import threading

import pytest

from helpers import CORPORA
from voicelane.engine import frontend, lexicon_index


def _unindexed_words(texts: list[str]) -> list[list[tuple[str, tuple[str, ...]]]]:
    """gruut as installed (a fresh thread gets its own, unpatched text processor)."""
    out: list = []

    def run() -> None:
        from gruut import sentences

        for text in texts:
            out.append([(w.text, tuple(w.phonemes or ())) for s in sentences(text, lang="en-us") for w in s])

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out


def test_indexed_lexicon_gives_the_same_pronunciations():
    texts = (CORPORA / "text" / "heldout.txt").read_text("utf-8").splitlines()[:25]
    texts += ["Caution, cabin pressure failing on sector one, check it now.", "Read the record; I read it."]
    expected = _unindexed_words(texts)
    got: list = []

    def run() -> None:
        from gruut import sentences

        assert lexicon_index.ensure_indexed("en-us")
        for text in texts:
            got.append([(w.text, tuple(w.phonemes or ())) for s in sentences(text, lang="en-us") for w in s])

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert got == expected


def test_sentence_cache_returns_equal_fresh_lists():
    text = "Unit four, proceed to gate twelve. Hold short."
    a = frontend.phonemize_sentences(text)
    b = frontend.phonemize_sentences(text)
    assert a is not b and [u.tokens for u in a] == [u.tokens for u in b]
    assert len(a) == 2
    a.clear()  # a caller mutating its list does not touch the cache
    assert len(frontend.phonemize_sentences(text)) == 2


def test_world_fft_size_must_be_a_power_of_two():
    import numpy as np

    from voicelane.engine import features

    feats = np.zeros((20, features.FEAT_DIM), dtype=np.float32)
    with pytest.raises(ValueError):
        features.synthesize(feats, fft_size=384)  # pyworld segfaults on this

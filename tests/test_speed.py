"""Speed paths keep behaviour: indexed lexicon, sentence cache, WORLD options, streamed synthesis."""

from __future__ import annotations

import threading

import pytest

from helpers import CORPORA, kal_entries
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


@pytest.fixture(scope="module")
def base_voice():
    from helpers import REPO
    from voicelane.engine.voice import Voice

    return Voice.load(REPO / "weights" / "voicelane-slt-base-v1")


def _frame_db(wav):
    import numpy as np

    n = len(wav) // 160
    frames = wav[: n * 160].reshape(n, 160).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-8)


def test_streamed_audio_closely_matches_one_shot(base_voice):
    import numpy as np

    from voicelane import evaluate
    from voicelane.engine import features, stream

    text = "Caution, cabin pressure failing on sector one, check it now. Hold short of runway two seven."
    one = base_voice.synthesize(text).audio
    chunks = list(stream.stream(base_voice, text))
    got = np.concatenate(chunks)
    assert len(got) == len(one)  # same timing, sample for sample
    assert len(chunks) >= 5  # within each sentence too, not one block per sentence
    assert len(chunks[0]) <= 0.5 * features.SAMPLE_RATE  # the first audio is a short chunk
    m = evaluate.mcd_f0_dtw(one, got)
    # WORLD itself moves this much when the same frames start one frame later (~2.2-2.6 dB):
    # pulse phase and noise restart with every call; a seam artefact would show far above it
    assert m["mcd_db"] < 3.2 and m["f0_rmse_hz"] < 8.0, m
    f0_one, f0_got = np.median(features.voiced_f0(one)), np.median(features.voiced_f0(got))
    assert abs(f0_got - f0_one) / f0_one < 0.02
    env_one, env_got = _frame_db(one), _frame_db(got)
    loud = env_one > env_one.max() - 40
    assert np.corrcoef(env_one[loud], env_got[loud])[0, 1] > 0.97
    assert np.max(np.abs(got)) <= 0.99


def test_stream_chunk_bounds_cover_every_frame():
    import numpy as np

    from voicelane.engine import features, stream

    for n in (1, 10, 24, 25, 100, 333):
        b = stream.chunk_bounds(n)
        assert b[0] == 0 and b[-1] == n and all(x < y for x, y in zip(b, b[1:]))
        feats = np.zeros((n, features.FEAT_DIM), dtype=np.float32)
        feats[:, features.LF0_IDX] = np.log(120.0)
        feats[:, features.VUV_IDX] = 1.0
        out = np.concatenate(list(stream.stream_frames(feats)))
        assert len(out) == n * features.HOP


def test_features_are_shared_across_runs_by_content(tmp_path, monkeypatch):
    from voicelane.engine import data

    monkeypatch.setenv("VOICELANE_FEATURE_CACHE", str(tmp_path / "shared"))
    entries = kal_entries(3)
    first, err1 = data.prepare_all(entries, tmp_path / "run1", workers=1)
    shared = sorted((tmp_path / "shared").rglob("*.npz"))
    assert not err1 and len(shared) == 3
    # another run, other clip names: the same recordings and texts come from the shared cache
    renamed = [dict(e, id=f"x{i}") for i, e in enumerate(entries)]
    second, _ = data.prepare_all(renamed, tmp_path / "run2", workers=1)
    assert sorted((tmp_path / "shared").rglob("*.npz")) == shared
    for a, b in zip(first, second):
        assert (a.feats == b.feats).all() and (a.ids == b.ids).all() and (a.durations == b.durations).all()
    # a different transcript is different content; a corrupt entry is recomputed, not trusted
    e = entries[0]
    assert data.content_key(e["sha256"], e["text"] + " Again.", "en-us") != data.content_key(
        e["sha256"], e["text"], "en-us"
    )
    shared[0].write_bytes(b"not an npz")
    third, err3 = data.prepare_all(entries, tmp_path / "run4", workers=1)
    assert not err3 and all((a.feats == c.feats).all() for a, c in zip(first, third))


def test_snapshot_choice_takes_the_latest_within_a_margin_and_reports_its_stability():
    import numpy as np

    from voicelane import selection

    doc = np.array([0.175, 0.246, 0.159, 0.119, 0.246])  # the documented demo curve
    assert selection.pick(doc) == 3 and selection.pick_with_margin(doc) == 3
    # a later snapshot one word worse than an earlier best wins: noise does not decide
    assert selection.pick_with_margin(np.array([0.20, 0.15, 0.16, 0.30])) == 2
    assert selection.pick(np.array([0.20, 0.15, 0.16, 0.30])) == 1
    assert selection.pick_with_margin(np.array([0.10, 0.20, 0.20])) == 0
    words = np.full(8, 12.0)
    err = np.round(np.outer(doc, np.ones(8)) * words) + np.random.default_rng(1).integers(0, 3, (5, 8))
    st = selection.stability(err, words, n=200)
    assert 0.0 <= st["raw_rule_agreement"] <= 1.0 and 0.0 <= st["margin_rule_agreement"] <= 1.0


def test_real_audio_floor_is_decoded_once_per_recording(tmp_path, monkeypatch):
    """The floor (recognisers on the real held-out audio) is kept by content: a rerun reads the
    same words and phones without decoding; a broken entry is decoded again; `off` keeps nothing."""
    import numpy as np
    import soundfile as sf

    from voicelane import evaluate as ev
    from voicelane.engine import features

    wav_path = sorted((CORPORA / "kal_heldout" / "wavs").glob("*.flac"))[0]
    wav, sr = sf.read(wav_path, dtype="float32")
    if sr != features.SAMPLE_RATE:
        import soxr

        wav = soxr.resample(wav, sr, features.SAMPLE_RATE).astype(np.float32)
    wav = wav[: 3 * features.SAMPLE_RATE]  # a few words are enough
    asr = ev.ASR()
    calls = []

    def decode():
        calls.append(1)
        return asr.transcribe(wav, features.SAMPLE_RATE)

    monkeypatch.setenv("VOICELANE_FEATURE_CACHE", str(tmp_path / "cache"))
    first = ev.RealAudioMemo().get("words", wav, decode)
    assert first and first == asr.transcribe(wav, features.SAMPLE_RATE)
    assert ev.RealAudioMemo().get("words", wav, decode) == first and len(calls) == 1
    assert ev.RealAudioMemo().get("words", wav * 0.5, decode) and len(calls) == 2  # other audio, other entry
    for entry in (tmp_path / "cache" / "floor" / "words").iterdir():
        entry.write_text("{not json")
    assert ev.RealAudioMemo().get("words", wav, decode) == first and len(calls) == 3
    monkeypatch.setenv("VOICELANE_FEATURE_CACHE", "off")
    ev.RealAudioMemo().get("words", wav, decode)
    ev.RealAudioMemo().get("words", wav, decode)
    assert len(calls) == 5


def test_evaluation_scores_in_worker_processes_with_the_same_result(base_voice, tmp_path, monkeypatch):
    """Recognition and DTW run in spawned scoring processes; the evaluation is the same with one."""
    import numpy as np
    import soundfile as sf

    from voicelane import evaluate as ev

    monkeypatch.setenv("VOICELANE_FEATURE_CACHE", "off")  # both runs decode the floor themselves
    clips = []
    for row in (CORPORA / "kal_heldout" / "metadata.csv").read_text("utf-8").splitlines()[:4]:
        cid, text = row.split("|")[:2]
        wav, _ = sf.read(CORPORA / "kal_heldout" / "wavs" / f"{cid}.flac", dtype="float32")
        clips.append(ev.Clip(cid, text, wav))
    prompts = ev.REGRESSION_PROMPTS[:2]
    one = ev.evaluate(base_voice.synthesize, clips, prompts, workers=1, keep_audio=0)
    two = ev.evaluate(base_voice.synthesize, clips, prompts, workers=2, keep_audio=0)
    assert 2 in ev._POOL  # the pool path really ran
    for res in (one, two):
        res.pop("rtf")
    assert one == two
    assert one["n_heldout"] == 4 and len(one["prompts"]) == 2 and one["wer"] < 0.5
    assert np.isfinite(one["mcd_db"]) and one["wer_floor_real_audio"] is not None


def test_recognition_does_not_depend_on_what_the_recogniser_heard_before():
    """pocketsphinx's front end kept state from one utterance to the next: decoding held-out clips
    in reverse order changed some transcripts, so a WER depended on the worker split, the order
    and whether the floor came from the cache."""
    import soundfile as sf

    from voicelane import evaluate as ev

    clips = [sf.read(p, dtype="float32") for p in sorted((CORPORA / "kal_heldout" / "wavs").glob("*.flac"))[:12]]
    for recogniser, decode in ((ev.ASR, "transcribe"), (ev.PhoneRecognizer, "phones")):
        forward, backward = recogniser(), recogniser()
        ahead = [getattr(forward, decode)(wav, sr) for wav, sr in clips]
        behind = [getattr(backward, decode)(wav, sr) for wav, sr in reversed(clips)][::-1]
        assert ahead == behind, recogniser.__name__


def test_a_killed_scoring_process_does_not_fail_the_evaluation():
    """A scoring worker that dies mid-evaluation: the pool is dropped and the rest is scored in
    the calling process, with the same result."""
    import os
    import signal

    import numpy as np

    from voicelane import evaluate as ev

    rng = np.random.default_rng(0)
    jobs = [ev._Job(rng.normal(0, 0.05, 16000).astype(np.float32), 16000, ["a", "b"], None) for _ in range(12)]
    expected = [ev._score(j) for j in jobs]
    got = ev._scored(jobs, 2)
    first = next(got)
    pool = ev._POOL[2]
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
    assert [first, *got] == expected
    assert list(ev._scored(jobs, 2)) == expected
    assert ev._POOL.get(2) is not pool  # the broken pool is never used again

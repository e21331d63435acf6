"""Engine units on real audio: front end, forced alignment, WORLD, training determinism, resume, ONNX."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import soundfile as sf

from helpers import CORPORA, REPO, kal_entries
from voicelane.engine import align, data, features, frontend, model, train
from voicelane.errors import VoicelaneError

sys.path.insert(0, str(REPO / "bench"))
from degrade import telephone  # noqa: E402  (the robustness suite's telephone band)


def _clip(name="kal", idx=0):
    row = (CORPORA / name / "metadata.csv").read_text("utf-8").splitlines()[idx]
    clip_id, text = row.split("|")[:2]
    wav, sr = sf.read(CORPORA / name / "wavs" / f"{clip_id}.flac", dtype="float32")
    assert sr == features.SAMPLE_RATE
    return clip_id, text, wav


def test_phonemize_inventory_and_prosody():
    u = frontend.phonemize("Is gate 12 open? Yes.")
    assert u.tokens[0] == frontend.START
    assert u.tokens[-1] == "<.>"
    assert "<?>" in u.tokens
    assert all(t in frontend.SYMBOL_TO_ID for t in u.tokens)
    assert frontend.normalized_words("Gate 12.") == ["gate", "twelve"]


def test_phonemize_refuses_what_it_cannot_voice():
    with pytest.raises(VoicelaneError) as e:
        frontend.phonemize("...!!!")
    assert e.value.code == "text_unvoiceable"
    with pytest.raises(VoicelaneError) as e:
        frontend.phonemize("ni hao", "zh-CN")
    assert e.value.code == "language_unsupported"


def test_long_text_is_split_into_model_sized_utterances():
    text = ", ".join(["the quick brown fox jumps over the lazy dog"] * 20) + "."
    utts = frontend.phonemize_sentences(text)
    assert len(utts) > 1
    assert all(len(u.spoken_words) <= frontend.MAX_SENTENCE_WORDS for u in utts)
    assert all(u.tokens[0] == frontend.START and u.tokens[-1] in frontend.END_TOKENS.values() for u in utts)


def test_alignment_durations_cover_every_frame():
    _, text, wav = _clip()
    utt = frontend.phonemize(text)
    n = features.n_frames(len(wav))
    dur = align.token_durations(wav, utt, n)
    assert dur.sum() == n and len(dur) == len(utt.tokens)
    phones = [d for t, d in zip(utt.tokens, dur) if t not in frontend.PROSODY_TOKENS]
    assert min(phones) >= 1  # the aligner timed every phone
    assert np.mean(phones) > 3  # and not degenerate (10 ms frames, ~80 ms per phone)


def test_world_analysis_roundtrip_keeps_pitch():
    _, _, wav = _clip()
    feats = features.analyze(wav)
    assert feats.shape == (features.n_frames(len(wav)), features.FEAT_DIM)
    y = features.synthesize(feats)
    assert abs(len(y) - len(wav)) < features.HOP * 2
    f0_in, f0_out = np.median(features.voiced_f0(wav)), np.median(features.voiced_f0(y))
    assert abs(f0_in - f0_out) / f0_in < 0.05
    assert np.array_equal(y, features.synthesize(feats))  # deterministic vocoder


def test_pitch_of_telephone_audio_is_the_voice_not_its_third_harmonic():
    import pyworld

    _, _, wav = _clip()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, t = pyworld.dio(x, features.SAMPLE_RATE, f0_floor=50, f0_ceil=500, frame_period=features.FRAME_MS)
    plain = pyworld.stonemask(x, f0, t, features.SAMPLE_RATE)
    assert features.low_band_db(x) > features.BAND_LIMITED_DB
    assert np.array_equal(features.analyze_f0(wav), plain)  # full-band audio: DIO as before
    tel = telephone(wav.astype(np.float64), features.SAMPLE_RATE)
    assert features.low_band_db(tel) < features.BAND_LIMITED_DB
    clean_f0 = np.median(plain[plain > 0])
    tel_f0 = features.analyze_f0(tel)
    assert abs(np.median(tel_f0[tel_f0 > 0]) - clean_f0) / clean_f0 < 0.05  # was ~3x (the 3rd harmonic)
    lf0 = features.analyze(tel)[:, features.LF0_IDX]  # the training features carry the same pitch
    assert abs(np.exp(np.median(lf0)) - clean_f0) / clean_f0 < 0.1


def _items(tmp_path, n=6):
    items, errors = data.prepare_all(kal_entries(n), tmp_path / "cache", workers=1)
    assert not errors
    return items


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return _items(tmp_path_factory.mktemp("items"))


def _train(items, run_dir, steps, ckpt_every=2):
    p = model.preset("tiny")
    arch = model.architecture(p)
    mean, std = data.feature_stats(items)
    cfg = train.TrainConfig(
        steps=steps, batch_size=3, lr=1e-3, warmup=2, checkpoint_every=ckpt_every, seed=7, threads=1
    )
    return train.train(items, arch, cfg, run_dir, mean, std)


def _state_bytes(ck):
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in ck["model"].items()})


def test_training_is_deterministic(items, tmp_path):
    a = _train(items, tmp_path / "a", 3)
    b = _train(items, tmp_path / "b", 3)
    assert _state_bytes(a) == _state_bytes(b)
    assert a["step"] == 3


def test_resume_restores_step_optimizer_and_data_order(items, tmp_path):
    full = _train(items, tmp_path / "full", 4)
    _train(items, tmp_path / "part", 2)  # "killed" after the step-2 checkpoint
    resumed = _train(items, tmp_path / "part", 4)  # same command again
    assert resumed["step"] == 4
    assert resumed["optimizer"]["state"]  # Adam moments came back
    assert _state_bytes(full) == _state_bytes(resumed)


def test_resume_refuses_a_foreign_checkpoint(items, tmp_path):
    _train(items, tmp_path / "r", 2)
    p = model.preset("tiny")
    arch = model.architecture(p) | {"hidden": 48}
    mean, std = data.feature_stats(items)
    cfg = train.TrainConfig(steps=4, batch_size=3, lr=1e-3, warmup=2, checkpoint_every=2, seed=7, threads=1)
    with pytest.raises(VoicelaneError) as e:
        train.train(items, arch, cfg, tmp_path / "r", mean, std)
    assert e.value.code == "checkpoint_invalid"


def test_onnx_export_matches_pytorch(items, tmp_path):
    from voicelane.engine import onnx_export
    from voicelane.engine.voice import Voice

    ck = _train(items, tmp_path / "o", 2)
    mean, std = data.feature_stats(items)
    v = Voice.from_state(ck["model"], ck["arch"], mean, std)
    path = onnx_export.export(v, tmp_path / "model.onnx")
    ov = onnx_export.OnnxVoice(path, v.cfg)
    a = v.synthesize("Hi.")  # shorter than the widest convolution: exercises the padding path
    b = ov.synthesize("Hi.")
    assert a.seconds > 0 and np.allclose(a.audio, b.audio, atol=1e-4)
    assert onnx_export.export(v, tmp_path / "model2.onnx").read_bytes() == path.read_bytes()


@pytest.mark.filterwarnings("error:Converting a tensor with requires_grad")
def test_step_losses_reach_the_caller_as_plain_floats(items, tmp_path):
    """torch warns (once per run, on every user's console) when a loss that still needs its graph
    is turned into a float; on_step gets detached floats."""
    p = model.preset("tiny")
    mean, std = data.feature_stats(items)
    cfg = train.TrainConfig(steps=2, batch_size=3, lr=1e-3, warmup=2, checkpoint_every=2, seed=7, threads=1)
    seen: list[tuple[int, dict]] = []
    arch = model.architecture(p)
    train.train(items, arch, cfg, tmp_path, mean, std, on_step=lambda s, losses: seen.append((s, losses)))
    assert [s for s, _ in seen] == [1, 2]
    assert all(type(v) is float for _, losses in seen for v in losses.values()) and "loss" in seen[0][1]

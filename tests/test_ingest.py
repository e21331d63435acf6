"""Ingestion of real recordings (SPEC §5 extended, issue 10 §4, issue 11 items 2 and 8).

Every reason code added for real recordings is provoked here with audio written by the test:
Festival speech renders shipped in tests/data/align (real speech with pauses) degraded on the
spot, or the harmonic test tones of test_dataset.py.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicelane.dataset import DatasetConfig, estimate_snr, inspect_dataset, prepare_dataset
from voicelane.errors import VoicelaneError

sys.path.insert(0, str(Path(__file__).parent))
from test_dataset import text_for, voiced, write

ALIGN = Path(__file__).parent / "data" / "align"
CFG = DatasetConfig(min_total_minutes=0.0, max_clip_s=8.0)
SPEECH_TEXT = "The clock stopped at noon."


def speech(sr=16000):
    y, file_sr = sf.read(str(ALIGN / "en_0002.flac"), dtype="float64")
    if sr != file_sr:
        import soxr

        y = soxr.resample(y, file_sr, sr, quality="VHQ")
    return y


def pink_noise(n, sr, rng):
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[1:] /= np.sqrt(f[1:] / f[1])
    spec[0] = 0
    return np.fft.irfft(spec, n)


def with_snr(y, sr, snr_db, seed=0):
    """Speech plus pink noise `snr_db` below the speech's active (louder-half) power."""
    noise = pink_noise(len(y), sr, np.random.default_rng(seed))
    active = _active_power(y, sr)
    return y + noise * np.sqrt(active / 10 ** (snr_db / 10) / np.mean(noise**2))


def _active_power(y, sr):
    frame, hop = int(0.025 * sr), int(0.010 * sr)
    pw = np.array([np.mean(y[i : i + frame] ** 2) for i in range(0, len(y) - frame, hop)])
    return float(np.mean(pw[pw >= np.median(pw)]))


def lj(root, clips, texts=None):
    """clips: {id: (y, sr, fmt, subtype)}; texts default to the speech clip's transcript."""
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for clip_id, (y, sr, fmt, subtype) in clips.items():
        ext = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}[fmt]
        if fmt in ("OGG", "MP3"):
            sf.write(root / "wavs" / f"{clip_id}.{ext}", y, sr, format=fmt)
        else:
            sf.write(root / "wavs" / f"{clip_id}.{ext}", y, sr, format=fmt, subtype=subtype)
        rows.append(f"{clip_id}|{(texts or {}).get(clip_id, SPEECH_TEXT)}\n")
    (root / "metadata.csv").write_text("".join(rows), encoding="utf-8")
    return root


def reasons(report):
    return {r["id"]: r["reason"] for r in report["rejected"]}


# ---- input formats ------------------------------------------------------------------------------


def test_formats_rates_depths_and_channels(tmp_path):
    y = speech()
    import soxr

    stereo_dead = np.stack([y, np.zeros_like(y)], axis=1)
    stereo_anti = np.stack([y, -y * 0.98], axis=1)
    clips = {
        "pcm8": (y, 16000, "WAV", "PCM_U8"),
        "pcm16": (y, 16000, "WAV", "PCM_16"),
        "pcm24_96k": (soxr.resample(y, 16000, 96000), 96000, "WAV", "PCM_24"),
        "pcm32": (y * 0.9, 16000, "WAV", "PCM_32"),
        "float": (y * 0.8, 16000, "WAV", "FLOAT"),
        "flac44k": (soxr.resample(y, 16000, 44100), 44100, "FLAC", "PCM_16"),
        "ogg": (y * 0.7, 16000, "OGG", None),
        "mp3": (soxr.resample(y, 16000, 22050) * 0.6, 22050, "MP3", None),
        "tel8k": (soxr.resample(y, 16000, 8000), 8000, "WAV", "PCM_16"),
        "tel8k_noisy": (soxr.resample(with_snr(y, 16000, 20, 9), 16000, 8000), 8000, "WAV", "PCM_16"),
        "dead_right": (stereo_dead * 0.5, 16000, "WAV", "PCM_16"),
        "anti_phase": (stereo_anti * 0.5, 16000, "WAV", "PCM_16"),
    }
    r = inspect_dataset(lj(tmp_path / "d", clips), CFG)
    assert r["rejected"] == [], r["rejected"]
    q = r["quality"]["clips"]
    assert q["pcm24_96k"]["source_rate"] == 96000 and q["tel8k"]["source_rate"] == 8000
    assert 14 <= q["tel8k_noisy"]["snr_db"] <= 30  # noise judged within the 8 kHz band
    assert q["pcm16"]["channel_used"] == "mono"
    assert q["dead_right"]["channel_used"] == "channel 1 of 2 (other channel silent)"
    assert q["anti_phase"]["channel_used"].startswith("channel 1 of 2 (channels cancel")
    corpus = r["quality"]["corpus"]
    assert corpus["narrowband_kept"] == ["tel8k", "tel8k_noisy"]
    assert sorted(corpus["single_channel_picked"]) == ["anti_phase", "dead_right"]
    assert any(a["reason"] == "narrowband" for a in r["quality"]["actions"])


# ---- per-clip measurements ----------------------------------------------------------------------


def test_snr_estimate_tracks_added_noise():
    y = speech()
    assert estimate_snr(y, 16000)[0] >= 40
    for snr in (30, 20, 10):
        est = estimate_snr(with_snr(y, 16000, snr), 16000)[0]
        assert abs(est - snr) <= 4, (snr, est)


def test_snr_low_rejected_and_warned(tmp_path):
    y = speech()
    clips = {
        "clean": (y, 16000, "WAV", "PCM_16"),
        "snr20": (with_snr(y, 16000, 20, 1), 16000, "WAV", "PCM_16"),
        "snr5": (with_snr(y, 16000, 5, 2), 16000, "WAV", "PCM_16"),
    }
    r = inspect_dataset(lj(tmp_path / "d", clips), CFG)
    assert reasons(r) == {"snr5": "snr_low"}
    assert "dB" in r["rejected"][0]["detail"]
    assert r["quality"]["corpus"]["noisy_kept"] == ["snr20"]
    actions = {a["reason"]: a for a in r["quality"]["actions"]}
    assert actions["snr_low"]["clips"] == ["snr5"] and actions["snr_warning"]["clips"] == ["snr20"]
    # the threshold is configuration
    r2 = inspect_dataset(tmp_path / "d", replace(CFG, min_snr_db=None))
    assert r2["rejected"] == []


def test_denoise_is_opt_in_and_raises_snr(tmp_path):
    noisy = with_snr(speech(), 16000, 12, 3)
    root = lj(tmp_path / "d", {"noisy": (noisy, 16000, "WAV", "PCM_16")})
    off = inspect_dataset(root, CFG)
    on = inspect_dataset(root, replace(CFG, denoise=True))
    assert reasons(off) == {"noisy": "snr_low"}
    assert on["rejected"] == [] and on["quality"]["corpus"]["denoised"] is True
    assert on["quality"]["clips"]["noisy"]["snr_db"] > off["quality"]["clips"]["noisy"]["snr_db"] + 6


def test_dc_offset_rejected_small_offset_removed(tmp_path):
    y = speech() * 0.5
    root = lj(
        tmp_path / "d", {"dc_big": (y + 0.2, 16000, "WAV", "PCM_16"), "dc_small": (y + 0.02, 16000, "WAV", "PCM_16")}
    )
    out = tmp_path / "out"
    with pytest.raises(VoicelaneError):
        prepare_dataset(root, out, replace(CFG, min_total_minutes=0.05))
    r = inspect_dataset(root, CFG)
    assert reasons(r) == {"dc_big": "dc_offset"}
    assert r["quality"]["clips"]["dc_small"]["dc_offset"] == pytest.approx(0.02, abs=0.002)
    prepare_dataset(root, out, CFG)
    kept, _sr = sf.read(out / "wavs" / "dc_small.wav")
    assert abs(float(np.mean(kept))) < 0.002


def test_long_internal_silence(tmp_path):
    y = speech()
    half = len(y) // 2
    cut = half + int(np.argmin(np.abs(y[half : half + 4000])))
    rng = np.random.default_rng(4)
    gap = rng.normal(0, 1e-4, 3 * 16000)
    root = lj(
        tmp_path / "d",
        {"gap": (np.concatenate([y[:cut], gap, y[cut:]]), 16000, "WAV", "PCM_16"), "ok": (y, 16000, "WAV", "PCM_16")},
    )
    r = inspect_dataset(root, CFG)
    assert reasons(r) == {"gap": "long_silence"}
    assert r["quality"]["clips"]["ok"]["longest_pause_s"] < 1.0


def _tone_corpus(root, n=12, overrides=None):
    clips, texts = {}, {}
    for i in range(n):
        dur = 1.2 + 0.05 * i
        clips[f"c{i:02d}"] = (voiced(dur, 22050, 120 + 5 * i, lead=0.2, tail=0.2, seed=i), 22050, "WAV", "PCM_16")
        texts[f"c{i:02d}"] = text_for(dur)
    for k, (y, text) in (overrides or {}).items():
        clips[k] = (y, 22050, "WAV", "PCM_16")
        texts[k] = text
    return lj(root, clips, texts)


def test_rate_outlier_across_the_corpus(tmp_path):
    # 1.3 s of speech with a 30-character-per-second transcript: inside the absolute 2-35 range,
    # far outside this speaker's rate
    fast_text = text_for(2.8)
    root = _tone_corpus(
        tmp_path / "d", overrides={"wrong": (voiced(1.3, 22050, 150, lead=0.2, tail=0.2, seed=40), fast_text)}
    )
    r = inspect_dataset(root, replace(CFG, max_clip_s=3.0))
    assert reasons(r) == {"wrong": "rate_outlier"}
    assert "robust z" in r["rejected"][0]["detail"]
    assert inspect_dataset(root, replace(CFG, max_clip_s=3.0, rate_outlier_z=None))["rejected"] == []


def test_level_outlier_and_drift(tmp_path):
    quiet = voiced(1.3, 22050, 150, amp=0.006, lead=0.2, tail=0.2, seed=41)
    root = _tone_corpus(tmp_path / "d", overrides={"quiet": (quiet, text_for(1.3))})
    r = inspect_dataset(root, replace(CFG, max_clip_s=3.0))
    assert reasons(r) == {"quiet": "level_outlier"}
    assert "LUFS" in r["rejected"][0]["detail"]
    assert abs(r["quality"]["corpus"]["level_drift_db_per_100_clips"]) < 5


# ---- containment (issue 11 item 2) --------------------------------------------------------------


def test_symlink_out_of_the_dataset_is_not_read(tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    y = speech()
    sf.write(outside / "x.wav", y, 16000)
    root = lj(tmp_path / "d", {"good": (y * 0.9, 16000, "WAV", "PCM_16")})
    (root / "wavs" / "inner").mkdir()
    sf.write(root / "wavs" / "inner" / "real.wav", y * 0.8, 16000)
    os.symlink(outside / "x.wav", root / "wavs" / "escape.wav")
    os.symlink(root / "wavs" / "inner" / "real.wav", root / "wavs" / "inside.wav")
    with open(root / "metadata.csv", "a", encoding="utf-8") as fh:
        fh.write(f"escape|{SPEECH_TEXT}\ninside|{SPEECH_TEXT}\n")
    r = inspect_dataset(root, CFG)
    assert reasons(r) == {"escape": "path_not_allowed"}
    assert "outside the dataset folder" in r["rejected"][0]["detail"]
    assert [e["id"] for e in r["entries"]] == ["good", "inside"]
    opted_in = inspect_dataset(root, replace(CFG, follow_external_symlinks=True))
    assert opted_in["rejected"] == []


def test_symlinked_metadata_or_subtitles_outside_are_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root = lj(tmp_path / "d", {"good": (speech(), 16000, "WAV", "PCM_16")})
    os.replace(root / "metadata.csv", outside / "metadata.csv")
    os.symlink(outside / "metadata.csv", root / "metadata.csv")
    with pytest.raises(VoicelaneError) as ei:
        inspect_dataset(root, CFG)
    assert ei.value.code == "path_not_allowed"

    long_root = tmp_path / "long"
    long_root.mkdir()
    sf.write(long_root / "talk.wav", speech(), 16000)
    (outside / "talk.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nThe clock.\n")
    os.symlink(outside / "talk.srt", long_root / "talk.srt")
    with pytest.raises(VoicelaneError) as ei:
        inspect_dataset(long_root, CFG)
    assert ei.value.code == "path_not_allowed"


def test_symlinked_transcript_outside_is_not_read(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    outside = tmp_path / "o"
    outside.mkdir()
    for name in ("a", "b"):
        sf.write(root / f"{name}.wav", speech(), 16000)
    (root / "a.txt").write_text(SPEECH_TEXT)
    (outside / "b.txt").write_text("a secret that must not be read")
    os.symlink(outside / "b.txt", root / "b.txt")
    r = inspect_dataset(root, CFG)
    assert reasons(r) == {"b": "path_not_allowed"}
    assert "secret" not in str(r)


def test_cli_check_reports_symlink_escape(tmp_path):
    import json
    import subprocess

    outside = tmp_path / "o"
    outside.mkdir()
    sf.write(outside / "x.wav", speech(), 16000)
    root = lj(tmp_path / "d", {"good": (speech(), 16000, "WAV", "PCM_16")})
    os.symlink(outside / "x.wav", root / "wavs" / "escape.wav")
    with open(root / "metadata.csv", "a", encoding="utf-8") as fh:
        fh.write(f"escape|{SPEECH_TEXT}\n")
    exe = Path(sys.executable).parent / "voicelane"
    proc = subprocess.run(
        [str(exe), "dataset", "check", str(root), "--json"], capture_output=True, text=True, timeout=120
    )
    report = json.loads(proc.stdout)
    assert {r["id"]: r["reason"] for r in report["rejected"]} == {"escape": "path_not_allowed"}
    text = subprocess.run(
        [str(exe), "dataset", "check", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "corpus quality" in text and "path_not_allowed 1 clip(s): escape" in text
    assert "-> Copy the file into the dataset folder" in text


# ---- subtitle cues (issue 11 item 8) -------------------------------------------------------------


def test_overlapping_and_reversed_cues(tmp_path):
    sr = 22050
    y = np.random.default_rng(5).normal(0, 1e-4, int(9.0 * sr))
    for i, (a, b) in enumerate([(0.5, 1.7), (2.5, 3.6), (4.0, 5.4), (5.0, 6.2), (7.0, 8.2)]):
        seg = voiced(b - a, sr, 130 + 10 * i, seed=i)
        y[int(a * sr) : int(a * sr) + len(seg)] += seg
    write(tmp_path / "talk.flac", y, sr, "FLAC")
    cues = [
        ("00:00:00,500", "00:00:01,700"),
        ("00:00:03,600", "00:00:02,500"),
        ("00:00:04,000", "00:00:05,400"),
        ("00:00:05,000", "00:00:06,200"),
        ("00:00:07,000", "00:00:08,200"),
    ]
    srt = "".join(f"{i}\n{a} --> {b}\n{text_for(1.2)}\n\n" for i, (a, b) in enumerate(cues, 1))
    (tmp_path / "talk.srt").write_text(srt, encoding="utf-8")
    r = inspect_dataset(tmp_path / "talk.flac", replace(CFG, max_clip_s=3.0))
    got = reasons(r)
    assert got == {"talk_0002": "cue_reversed", "talk_0003": "cue_overlap", "talk_0004": "cue_overlap"}
    detail = {x["id"]: x["detail"] for x in r["rejected"]}
    assert "overlaps cue 4" in detail["talk_0003"] and "overlaps cue 3" in detail["talk_0004"]
    assert "ends at 2.500 s" in detail["talk_0002"]
    assert {x["id"]: x["line"] for x in r["rejected"]}["talk_0002"] == 6
    assert [e["id"] for e in r["entries"]] == ["talk_0001", "talk_0005"]

"""Dataset step (SPEC §5): layouts, per-clip checks, fatal codes, processing, manifest."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicelane import dataset as ds
from voicelane.dataset import (
    ENGINE_RATE,
    REASONS,
    DatasetConfig,
    inspect_dataset,
    load_manifest,
    prepare_dataset,
)
from voicelane.errors import VoicelaneError

CFG = DatasetConfig(min_total_minutes=0.0, max_clip_s=3.0)


# ---- audio helpers ------------------------------------------------------------------------------


def voiced(dur, sr, f0=140.0, amp=0.3, lead=0.0, tail=0.0, seed=0):
    """A voiced-speech-like harmonic tone with a syllabic envelope, padded with near-silence."""
    n = int(round(dur * sr))
    t = np.arange(n) / sr
    f = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 9))
    y *= 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t + seed) ** 2
    ramp = min(int(0.03 * sr), n // 2)
    if ramp:
        r = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        y[:ramp] *= r
        y[-ramp:] *= r[::-1]
    y = amp * y / np.max(np.abs(y))
    rng = np.random.default_rng(seed)
    pad = lambda s: rng.normal(0, 1e-4, int(round(s * sr)))  # noqa: E731 (-80 dBFS floor)
    return np.concatenate([pad(lead), y, pad(tail)])


def write(path, y, sr, fmt=None, subtype=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "OGG":
        sf.write(path, y, sr, format="OGG", subtype="VORBIS")
    else:
        sf.write(path, y, sr, format=fmt, subtype=subtype or "PCM_16")
    return path


def text_for(dur):
    """A transcript with a plausible ~14 characters per second."""
    words = "the quick brown fox jumps over a lazy dog while seven birds sing softly".split()
    out = ""
    i = 0
    while len(out) < 14 * dur:
        out = (out + " " + words[i % len(words)]).strip()
        i += 1
    return out.capitalize() + "."


def ljspeech(root, rows, clips):
    """rows: list of metadata lines; clips: {filename: (y, sr, fmt)} written into wavs/."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (y, sr, fmt) in clips.items():
        write(root / "wavs" / name, y, sr, fmt)
    (root / "metadata.csv").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return root


def lufs(path):
    import pyloudnorm

    y, sr = sf.read(path)
    return pyloudnorm.Meter(sr).integrated_loudness(y)


def dir_hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ds_good_lj(tmp_path_factory):
    """LJSpeech folder: WAV 22.05 kHz stereo, FLAC 44.1 kHz, OGG 44.1 kHz, an id with extension."""
    root = tmp_path_factory.mktemp("lj") / "data"
    stereo = np.stack([voiced(1.2, 22050, 150), voiced(1.2, 22050, 150) * 0.5], axis=1)
    clips = {
        "a1.wav": (np.pad(stereo, ((11025, 11025), (0, 0))), 22050, "WAV"),
        "a2.flac": (voiced(1.4, 44100, 120, lead=0.3, tail=0.3, seed=1), 44100, "FLAC"),
        "a3.ogg": (voiced(1.3, 44100, 180, seed=2), 44100, "OGG"),
        "a4.wav": (voiced(1.5, 16000, 200, seed=3), 16000, "WAV"),
        "a5.wav": (voiced(1.1, 22050, 170, seed=4), 22050, "WAV"),
    }
    rows = [
        f"a1|{text_for(1.2)}",
        f"a2|raw 1 2 3|{text_for(1.4)}",  # normalized column wins
        f"a3|{text_for(1.3)}|",  # empty normalized column -> text
        f"a4.wav|{text_for(1.5)}",  # id that already has an extension
        f"a5|  {text_for(1.1)}  ",
    ]
    return ljspeech(root, rows, clips)


@pytest.fixture(scope="module")
def ds_good_manifest(ds_good_lj, tmp_path_factory):
    out = tmp_path_factory.mktemp("lj_out")
    return prepare_dataset(ds_good_lj, out, CFG), out


@pytest.fixture(scope="module")
def ds_reasons(tmp_path_factory):
    """One LJSpeech folder with a clip for each per-clip reason (+ two good clips)."""
    root = tmp_path_factory.mktemp("reasons") / "data"
    good = voiced(1.2, 22050, 150)
    good_i16 = (good * 32767).astype(np.int16)
    wavs = root / "wavs"
    clips = {
        "good1.wav": (good_i16, 22050, "WAV"),
        "good2.flac": (voiced(1.3, 44100, 130, seed=5), 44100, "FLAC"),
        "unvoiceable.wav": (voiced(1.2, 22050, 160, seed=6), 22050, "WAV"),
        "too_short.wav": (voiced(0.3, 22050, 170), 22050, "WAV"),
        "too_long.wav": (voiced(4.0, 22050, 175, seed=7), 22050, "WAV"),
        "trimmed_short.wav": (voiced(0.35, 22050, 180, lead=0.4, tail=0.4), 22050, "WAV"),
        "silent.wav": (np.random.default_rng(1).normal(0, 1e-4, 22050), 22050, "WAV"),
        "clipped.wav": (np.clip(3 * voiced(1.2, 22050, 190, amp=1.0, seed=8), -1, 1), 22050, "WAV"),
        "lowrate.wav": (voiced(1.2, 6000, 200), 6000, "WAV"),  # below the 8 kHz minimum
        "dup_pcm.flac": (good_i16, 22050, "FLAC"),  # same PCM as good1, other container
        "fast.wav": (voiced(1.0, 22050, 210, seed=9), 22050, "WAV"),
        "slow.wav": (voiced(2.0, 22050, 220, seed=10), 22050, "WAV"),
    }
    rows = {
        "good1": text_for(1.2),
        "good2": text_for(1.3),
        "missing": text_for(1.0),
        "undecodable": text_for(1.0),
        "unvoiceable": "1234 5678 -- ?!",
        "too_short": "Hi.",
        "too_long": text_for(4.0),
        "trimmed_short": "Yo.",
        "silent": text_for(1.0),
        "clipped": text_for(1.2),
        "lowrate": text_for(1.2),
        "dup_copy": text_for(1.2),
        "dup_pcm": text_for(1.2),
        "fast": "x" * 60,
        "slow": "Ah.",
    }
    ljspeech(root, [f"{k}|{v}" for k, v in rows.items()], clips)
    (wavs / "undecodable.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 10)
    shutil.copyfile(wavs / "good1.wav", wavs / "dup_copy.wav")
    return root


@pytest.fixture(scope="module")
def ds_reasons_report(ds_reasons):
    return inspect_dataset(ds_reasons, CFG)


@pytest.fixture(scope="module")
def ds_long(tmp_path_factory):
    """A 44.1 kHz long recording with tones exactly filling four cues (one cue has no text)."""
    root = tmp_path_factory.mktemp("long")
    sr = 44100
    cues = [(0.5, 1.7), (2.5, 4.0), (5.0, 6.2), (6.6, 7.6)]
    y = np.random.default_rng(3).normal(0, 1e-4, int(8.0 * sr))
    for i, (a, b) in enumerate(cues):
        seg = voiced(b - a, sr, 120 + 25 * i, seed=i)
        y[int(a * sr) : int(a * sr) + len(seg)] = seg
    write(root / "talk.flac", y, sr, "FLAC")
    return root, cues


# ---- layouts ------------------------------------------------------------------------------------


def test_ljspeech_happy_path(ds_good_manifest, ds_good_lj):
    m, out = ds_good_manifest
    assert m["source"] == {"path": str(ds_good_lj), "layout": "ljspeech"}
    assert [e["id"] for e in m["entries"]] == ["a1", "a2", "a3", "a4", "a5"]
    assert m["rejected"] == []
    texts = {e["id"]: e["text"] for e in m["entries"]}
    assert texts["a2"] == text_for(1.4)  # normalized column used
    assert texts["a3"] == text_for(1.3)  # empty normalized column ignored
    assert texts["a5"] == text_for(1.1)  # whitespace cleaned
    for e in m["entries"]:
        assert e["path"] == f"wavs/{e['id']}.wav"
        p = out / e["path"]
        assert hashlib.sha256(p.read_bytes()).hexdigest() == e["sha256"]
        assert abs(sf.info(p).duration - e["duration_s"]) < 0.002
    assert m["totals"]["candidates"] == m["totals"]["kept"] == 5
    assert sorted(p.name for p in (out / "wavs").iterdir()) == [f"a{i}.wav" for i in range(1, 6)]
    assert json.loads((out / "dataset_manifest.json").read_text()) == m


def test_resampled_to_engine_rate_mono_pcm16(ds_good_manifest):
    m, out = ds_good_manifest
    assert m["sample_rate"] == ENGINE_RATE == 16000
    for e in m["entries"]:
        info = sf.info(out / e["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    # the 150 Hz fundamental of the 22.05 kHz stereo source survives resampling + downmix
    y, sr = sf.read(out / "wavs" / "a1.wav")
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    assert abs(freqs[np.argmax(spec)] - 150) < 8


def test_stereo_downmixed_not_first_channel(tmp_path):
    sr = 22050
    left, right = voiced(1.0, sr, 150), voiced(1.0, sr, 190, seed=1)
    z = np.zeros_like(left)
    stereo = np.stack([np.concatenate([left, z]), np.concatenate([z, right])], axis=1)
    write(tmp_path / "d" / "st.flac", stereo, sr, "FLAC")
    (tmp_path / "d" / "st.txt").write_text(text_for(2.0))
    r = inspect_dataset(tmp_path / "d", CFG)
    assert 2.0 <= r["entries"][0]["duration_s"] <= 2.1  # speech from both channels kept


def test_loudness_normalised_to_target(ds_good_manifest):
    m, out = ds_good_manifest
    for e in m["entries"]:
        assert abs(lufs(out / e["path"]) - CFG.target_lufs) < 1.0, e["id"]


def test_other_loudness_target_and_peak_limit(ds_good_lj, tmp_path):
    m = prepare_dataset(ds_good_lj, tmp_path, replace(CFG, target_lufs=-16.0))
    for e in m["entries"]:
        assert abs(lufs(tmp_path / e["path"]) + 16.0) < 1.0
    m = prepare_dataset(ds_good_lj, tmp_path / "hot", replace(CFG, target_lufs=-2.0))
    for e in m["entries"]:
        y, _ = sf.read(tmp_path / "hot" / e["path"])
        assert np.max(np.abs(y)) <= 0.9901  # limited by scaling, never clipped


def test_short_clip_rms_fallback(tmp_path):
    src = tmp_path / "d"
    write(src / "s.wav", voiced(0.3, 22050, 150), 22050)
    (src / "s.txt").write_text("Oh yes.")
    m = prepare_dataset(src, tmp_path / "o", replace(CFG, min_clip_s=0.1))
    y, _ = sf.read(tmp_path / "o" / m["entries"][0]["path"])
    assert len(y) < 0.4 * 16000  # too short for pyloudnorm's gating block
    assert abs(20 * math.log10(np.sqrt(np.mean(y**2))) - CFG.target_lufs) < 1.0


def test_silence_trimmed(ds_good_manifest):
    m, out = ds_good_manifest
    d = {e["id"]: e["duration_s"] for e in m["entries"]}
    # a1: 0.5 s + 1.2 s + 0.5 s; a2: 0.3 + 1.4 + 0.3 -> speech plus ~50 ms padding each side
    assert 1.2 <= d["a1"] <= 1.2 + 0.13
    assert 1.4 <= d["a2"] <= 1.4 + 0.13
    y, sr = sf.read(out / "wavs" / "a1.wav")
    head = y[: int(0.2 * sr)]
    assert np.sqrt(np.mean(head**2)) > 10 ** (-40 / 20)  # speech starts near the beginning


def test_audio_txt_layout(tmp_path):
    src = tmp_path / "d"
    write(src / "one.wav", voiced(1.2, 44100, 150), 44100)
    write(src / "two.flac", voiced(1.0, 22050, 130, seed=2), 22050, "FLAC")
    write(src / "three.ogg", voiced(1.1, 44100, 170, seed=3), 44100, "OGG")
    (src / "one.txt").write_text(text_for(1.2) + "\n")
    (src / "two.txt").write_text("\ufeff" + text_for(1.0))
    (src / "three.txt").write_text(text_for(1.1).replace(" ", "\n", 1))
    (src / "orphan.txt").write_text("No audio for me.")
    (src / "empty.wav").parent.mkdir(exist_ok=True)
    write(src / "empty.wav", voiced(1.0, 22050, 190, seed=4), 22050)
    (src / "empty.txt").write_text("  \n")
    write(src / "notext.wav", voiced(1.0, 22050, 200, seed=5), 22050)
    r = inspect_dataset(src, CFG)
    assert r["source"]["layout"] == "audio_txt"
    assert [e["id"] for e in r["entries"]] == ["one", "three", "two"]
    assert {e["id"]: e["text"] for e in r["entries"]}["two"] == text_for(1.0)  # BOM dropped
    rej = {x["id"]: x for x in r["rejected"]}
    assert rej["empty"]["reason"] == "empty_transcript"
    assert rej["empty"]["source"] == "empty.wav" and rej["empty"]["line"] is None
    assert rej["notext"]["reason"] == "missing_file" and "notext.txt" in rej["notext"]["detail"]
    assert any("orphan" in w for w in r["warnings"])
    assert r["error"] is None
    assert not list(src.glob("*.json")) and not (src / "wavs").exists()  # inspect writes nothing


def test_long_recording_srt(ds_long, tmp_path):
    root, cues = ds_long
    (root / "talk.srt").write_text(
        "1\n00:00:00,500 --> 00:00:01,700\n<i>The quick brown</i>\nfox jumps.\n\n"
        "2\n00:00:02,500 --> 00:00:04,000\nOver the lazy dog, while\n<b>birds</b> sing.\n\n"
        "3\n00:00:05,000 --> 00:00:06,200\nSeven birds sing &amp; fly.\n\n"
        "4\n00:00:06,600 --> 00:00:07,600\n<i></i>\n\n"
        "5\n00:00:09,000 --> 00:00:10,500\nPast the end of the file.\n"
    )
    try:
        m = prepare_dataset(root, tmp_path, CFG)
    finally:
        (root / "talk.srt").unlink()
    assert m["source"]["layout"] == "long_recording"
    assert [e["id"] for e in m["entries"]] == ["talk_0001", "talk_0002", "talk_0003"]
    assert [e["text"] for e in m["entries"]] == [
        "The quick brown fox jumps.",
        "Over the lazy dog, while birds sing.",
        "Seven birds sing & fly.",
    ]
    for e, (a, b) in zip(m["entries"], cues):
        assert abs(e["duration_s"] - (b - a)) < 0.08, e
        assert sf.info(tmp_path / e["path"]).samplerate == 16000
    rej = {x["id"]: x for x in m["rejected"]}
    assert rej["talk_0004"]["reason"] == "empty_transcript"
    assert rej["talk_0004"]["line"] == 16 and rej["talk_0004"]["source"] == "talk.flac"
    assert rej["talk_0005"]["reason"] == "too_short"  # the cue lies past the recording


def test_long_recording_vtt_given_the_audio_file(ds_long):
    root, cues = ds_long
    (root / "talk.vtt").write_text(
        "WEBVTT - demo\n\nNOTE a comment\n\nintro\n00:00.500 --> 00:01.700 align:start\n"
        "<v Roger>The quick brown fox jumps.</v>\n\n"
        "00:02.500 --> 00:04.000\nOver the lazy dog, while birds sing.\n\n"
        "01:00:05.000 --> 01:00:06.000\nNot there.\n"
    )
    try:
        r = inspect_dataset(root / "talk.flac", CFG)
    finally:
        (root / "talk.vtt").unlink()
    assert r["source"] == {"path": str(root / "talk.flac"), "layout": "long_recording"}
    got = [(e["id"], e["text"]) for e in r["entries"]]
    assert got == [("talk_0001", "The quick brown fox jumps."), ("talk_0002", "Over the lazy dog, while birds sing.")]
    for e, (a, b) in zip(r["entries"], cues):
        assert abs(e["duration_s"] - (b - a)) < 0.08
    assert [x["id"] for x in r["rejected"]] == ["talk_0003"]


def test_long_recording_folder_with_one_audio_and_one_subtitle(tmp_path):
    sr = 22050
    y = np.concatenate([voiced(1.5, sr, 140), np.zeros(sr // 2), voiced(1.2, sr, 160, seed=1)])
    write(tmp_path / "session.wav", y, sr)
    (tmp_path / "transcript.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,500\nThe quick brown fox jumps.\n\n"
        "2\n00:00:02,000 --> 00:00:03,200\nOver the lazy dog.\n"
    )
    r = inspect_dataset(tmp_path, CFG)
    assert [e["id"] for e in r["entries"]] == ["session_0001", "session_0002"]


def test_subtitle_parser():
    cues = ds.parse_subtitles(
        "\ufeffWEBVTT\n\nSTYLE\n::cue { color: red }\n\n"
        "a\n1:02:03.4 --> 1:02:04.250 line:0\n{\\an8}<c.red>Hello</c>\nthere\n\n"
        "2\r\n00:00:01,000 --> 00:00:02,500\r\nSecond &lt;cue&gt;\r\n"
    )
    assert [(c["index"], c["start_s"], c["end_s"], c["text"], c["line"]) for c in cues] == [
        (1, 3723.4, 3724.25, "Hello there", 7),
        (2, 1.0, 2.5, "Second <cue>", 12),
    ]
    with pytest.raises(ValueError):
        ds.parse_subtitles("1\n00:00:01 --> soon\nbad\n")


# ---- per-clip reasons ---------------------------------------------------------------------------

EXPECTED = {
    "missing_file": ["missing"],
    "undecodable": ["undecodable"],
    "empty_transcript": None,  # covered by the audio_txt and SRT layout tests
    "unvoiceable_text": ["unvoiceable"],
    "too_short": ["too_short", "trimmed_short"],
    "too_long": ["too_long"],
    "silent": ["silent"],
    "clipped": ["clipped"],
    "sample_rate_too_low": ["lowrate"],
    "duplicate_audio": ["dup_copy", "dup_pcm"],
    "length_mismatch": ["fast", "slow"],
    # real-recording reasons: tests/test_ingest.py, each on audio generated there
    **{
        r: None
        for r in (
            "path_not_allowed",
            "cue_reversed",
            "cue_overlap",
            "snr_low",
            "dc_offset",
            "long_silence",
            "rate_outlier",
            "level_outlier",
            "alignment_failed",
        )
    },
}


def test_reasons_cover_every_code():
    assert set(EXPECTED) == set(REASONS)


@pytest.mark.parametrize("reason", [r for r in REASONS if EXPECTED[r]])
def test_reject_reason(ds_reasons_report, reason):
    rej = {x["id"]: x for x in ds_reasons_report["rejected"]}
    for clip_id in EXPECTED[reason]:
        assert clip_id in rej, clip_id
        assert rej[clip_id]["reason"] == reason, rej[clip_id]
        assert rej[clip_id]["detail"]
        assert isinstance(rej[clip_id]["line"], int)
    assert ds_reasons_report["totals"]["rejected_by_reason"][reason] == len(EXPECTED[reason])


def test_reasons_report_shape(ds_reasons_report):
    r = ds_reasons_report
    assert [e["id"] for e in r["entries"]] == ["good1", "good2"]
    rej = {x["id"]: x for x in r["rejected"]}
    assert rej["missing"]["line"] == 3 and rej["missing"]["source"] == "wavs/missing.wav"
    assert rej["dup_copy"]["source"] == "wavs/dup_copy.wav"
    assert rej["dup_copy"]["detail"] == "same file bytes as good1"
    assert rej["dup_pcm"]["detail"] == "same decoded audio as good1"
    assert r["rejected"] == sorted(r["rejected"], key=lambda x: (x["source"], x["id"]))
    t = r["totals"]
    assert t["candidates"] == 15 and t["kept"] == 2 and t["rejected"] == 13
    assert sum(t["rejected_by_reason"].values()) == 13
    assert r["error"] is None


# ---- fatal errors -------------------------------------------------------------------------------


def _meta_error(tmp_path, content: bytes):
    root = tmp_path / "d"
    write(root / "wavs" / "a.wav", voiced(1.0, 22050, 150), 22050)
    (root / "metadata.csv").write_bytes(content)
    with pytest.raises(VoicelaneError) as ei:
        inspect_dataset(root, CFG)
    assert ei.value.code == "metadata_invalid"
    assert ei.value.details["path"] == str(root / "metadata.csv")
    return ei.value


def test_metadata_bom_line_1(tmp_path):
    e = _meta_error(tmp_path, b"\xef\xbb\xbfa|Hello there.\n")
    assert (e.details["line"], e.details["problem"]) == (1, "utf8_bom")
    assert "line 1" in e.message and "BOM" in e.message


def test_metadata_not_utf8(tmp_path):
    e = _meta_error(tmp_path, b"a|Hello there.\nb|Caf\xe9 au lait.\n")
    assert (e.details["line"], e.details["problem"]) == (2, "not_utf8")


def test_metadata_wrong_delimiter_names_the_line(tmp_path):
    e = _meta_error(tmp_path, b"a|Hello there.\nb\tHello again.\nc,Comma row.\n")
    assert (e.details["line"], e.details["problem"]) == (2, "wrong_delimiter")
    assert "line 2" in e.message and "tab-separated" in e.message
    assert [(p["line"], p["problem"]) for p in e.details["problems"]] == [
        (2, "wrong_delimiter"),
        (3, "wrong_delimiter"),
    ]
    assert "comma-separated" in e.details["problems"][1]["message"]


@pytest.mark.parametrize(
    "content,line",
    [
        (b"a|Hello there.\n\nb|Again.\n", 2),
        (b"a|Hello there.\nb|Again.\n   \n", 3),  # trailing whitespace-only row
        (b"a|Hello there.\r\n\r\nb|Again.\r\n", 2),
    ],
)
def test_metadata_blank_row_names_the_line(tmp_path, content, line):
    e = _meta_error(tmp_path, content)
    assert (e.details["line"], e.details["problem"]) == (line, "blank_row")
    assert f"line {line}" in e.message


def test_metadata_duplicate_id(tmp_path):
    e = _meta_error(tmp_path, b"a|Hello there.\nb|Again.\na.wav|Once more.\n")
    assert (e.details["line"], e.details["problem"]) == (3, "duplicate_id")
    assert "line 1" in e.message and "line 3" in e.message


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"a|\n", "missing_text"),
        (b"|Hello there.\n", "missing_id"),
        (b"../../evil|Hello there.\n", "unsafe_id"),
        (b"a|b|c|d\n", "too_many_fields"),
    ],
)
def test_metadata_other_problems(tmp_path, content, problem):
    assert _meta_error(tmp_path, content).details["problem"] == problem


def test_metadata_collects_all_problems_raises_first(tmp_path):
    bad = b"".join(b"x%d\tno pipe\n" % i for i in range(30))
    e = _meta_error(tmp_path, b"\xef\xbb\xbf" + bad)
    assert e.details["line"] == 1 and e.details["problem"] == "utf8_bom"
    assert len(e.details["problems"]) == 20
    assert "more problem" in e.message


def test_missing_path(tmp_path):
    with pytest.raises(VoicelaneError) as ei:
        prepare_dataset(tmp_path / "nope", tmp_path / "out", CFG)
    assert ei.value.code == "missing_audio_path"
    assert ei.value.details == {"path": str(tmp_path / "nope")}
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("files", [[], ["notes.md", "a.wav"], ["metadata.csv"]])
def test_empty_or_unrecognised_folder(tmp_path, files):
    for f in files:
        if f.endswith(".wav"):
            write(tmp_path / f, voiced(1.0, 22050, 150), 22050)
        else:
            (tmp_path / f).write_text("")
    with pytest.raises(VoicelaneError) as ei:
        inspect_dataset(tmp_path, CFG)
    assert ei.value.code == "dataset_empty"


def test_all_rejected_is_dataset_empty(tmp_path):
    src = tmp_path / "d"
    for i in range(2):
        write(src / f"s{i}.wav", np.random.default_rng(i).normal(0, 1e-4, 22050), 22050)
        (src / f"s{i}.txt").write_text("Nothing to hear here.")
    with pytest.raises(VoicelaneError) as ei:
        prepare_dataset(src, tmp_path / "out", CFG)
    assert ei.value.code == "dataset_empty"
    assert ei.value.details["rejected_by_reason"] == {"silent": 2}
    r = inspect_dataset(src, CFG)  # the check command still shows why
    assert r["error"]["code"] == "dataset_empty" and len(r["rejected"]) == 2
    assert not (tmp_path / "out" / "dataset_manifest.json").exists()


def test_too_small_and_nothing_partial_left(ds_good_lj, tmp_path):
    out = tmp_path / "out"
    cfg = replace(CFG, min_total_minutes=1.0)
    with pytest.raises(VoicelaneError) as ei:
        prepare_dataset(ds_good_lj, out, cfg)
    e = ei.value
    assert e.code == "dataset_too_small"
    assert e.details["required_minutes"] == 1.0
    assert 0.09 < e.details["kept_minutes"] < 0.13
    assert e.details["rejected_by_reason"] == {}
    assert not out.exists()  # created by prepare, removed again: nothing partial left
    out.mkdir()
    with pytest.raises(VoicelaneError):
        prepare_dataset(ds_good_lj, out, cfg)
    assert list(out.iterdir()) == []  # no manifest, no wavs, no staging folder
    r = inspect_dataset(ds_good_lj, cfg)
    assert r["error"]["code"] == "dataset_too_small" and r["error"]["next_action"]


def test_failed_prepare_keeps_previous_dataset(ds_good_lj, ds_good_manifest, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(ds_good_manifest[1], out)
    before = dir_hashes(out)
    with pytest.raises(VoicelaneError):
        prepare_dataset(ds_good_lj, out, replace(CFG, min_total_minutes=1.0))
    assert dir_hashes(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["dataset_manifest.json", "wavs"]


@pytest.mark.parametrize("fail_at", ["swap", "manifest"])
def test_failure_while_swapping_restores_previous_dataset(ds_good_lj, ds_good_manifest, tmp_path, monkeypatch, fail_at):
    out = tmp_path / "out"
    shutil.copytree(ds_good_manifest[1], out)
    (out / "wavs" / "a1.wav").unlink()  # make the previous dataset distinguishable
    before = dir_hashes(out)
    real_replace = ds.os.replace

    def replace_failing(src, dst, *a, **k):
        if Path(src).name.startswith(".wavs.staging-"):
            raise OSError("disk full")
        return real_replace(src, dst, *a, **k)

    def write_failing(*a, **k):
        raise OSError("disk full")

    if fail_at == "swap":
        monkeypatch.setattr(ds.os, "replace", replace_failing)
    else:
        monkeypatch.setattr(ds, "atomic_write_json", write_failing)
    with pytest.raises(OSError):
        prepare_dataset(ds_good_lj, out, CFG)
    monkeypatch.undo()
    assert dir_hashes(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["dataset_manifest.json", "wavs"]


def test_rerun_replaces_stale_files(ds_good_lj, tmp_path):
    write(tmp_path / "wavs" / "stale.wav", voiced(1.0, 16000), 16000)
    m = prepare_dataset(ds_good_lj, tmp_path, CFG)
    assert sorted(p.name for p in (tmp_path / "wavs").iterdir()) == sorted(Path(e["path"]).name for e in m["entries"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset_manifest.json", "wavs"]


def test_long_recording_undecodable(tmp_path):
    (tmp_path / "rec.wav").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "rec.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHello there.\n")
    with pytest.raises(VoicelaneError) as ei:
        inspect_dataset(tmp_path, CFG)
    assert ei.value.code == "audio_undecodable"


def test_bad_subtitle_timing_names_line(tmp_path):
    write(tmp_path / "rec.wav", voiced(2.0, 22050), 22050)
    (tmp_path / "rec.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,000\nHi there.\n\n2\n00:00:01 -> 00:00:02 --> x\nBad.\n"
    )
    with pytest.raises(VoicelaneError) as ei:
        inspect_dataset(tmp_path / "rec.wav", CFG)
    assert ei.value.code == "metadata_invalid" and ei.value.details["line"] == 6


def test_out_dir_must_differ_from_source(ds_good_lj):
    with pytest.raises(VoicelaneError) as ei:
        prepare_dataset(ds_good_lj, ds_good_lj, CFG)
    assert ei.value.code == "invalid_argument"


# ---- split, determinism, manifest ---------------------------------------------------------------


def test_split_deterministic_and_sized():
    ids = [f"clip{i:04d}" for i in range(200)]
    cfg = DatasetConfig()
    val = ds._choose_val(ids, cfg)
    assert len(val) == 10  # round(0.05 * 200)
    assert val == ds._choose_val(list(reversed(ids)), cfg)
    lowest = sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())[:10]
    assert val == set(lowest)
    assert len(ds._choose_val(ids * 1 + [f"x{i}" for i in range(3000)], cfg)) == 50  # val_max
    assert len(ds._choose_val(ids[:3], cfg)) == 1  # val_min
    assert len(ds._choose_val(ids[:1], cfg)) == 0  # n-1
    assert len(ds._choose_val(ids[:2], replace(cfg, val_min=5))) == 1  # n-1
    # growing the dataset only moves ids into val whose hash beats the current ones
    grown = ds._choose_val(ids + [f"new{i}" for i in range(20)], cfg)
    assert len(grown) == 11


def test_split_in_manifest(ds_good_manifest, ds_good_lj, tmp_path):
    m, _ = ds_good_manifest
    val = [e["id"] for e in m["entries"] if e["split"] == "val"]
    assert len(val) == 1 and m["totals"]["val"] == 1 and m["totals"]["train"] == 4
    assert val == sorted(["a1", "a2", "a3", "a4", "a5"], key=lambda i: hashlib.sha256(i.encode()).hexdigest())[:1]
    r = inspect_dataset(ds_good_lj, replace(CFG, val_fraction=0.4))
    assert sum(e["split"] == "val" for e in r["entries"]) == 2


def test_determinism_two_runs_identical(ds_good_lj, ds_good_manifest, tmp_path):
    m1, out1 = ds_good_manifest
    m2 = prepare_dataset(ds_good_lj, tmp_path, CFG)
    assert (out1 / "dataset_manifest.json").read_bytes() == (tmp_path / "dataset_manifest.json").read_bytes()
    assert dir_hashes(out1 / "wavs") == dir_hashes(tmp_path / "wavs")
    assert m1 == m2
    canon = [{"id": e["id"], "text": e["text"], "sha256": e["sha256"], "split": e["split"]} for e in m1["entries"]]
    from voicelane.fsutil import canonical_json

    assert m1["dataset_sha256"] == hashlib.sha256(canonical_json(canon).encode()).hexdigest()
    # inspect computes the very same report without writing
    r = inspect_dataset(ds_good_lj, CFG)
    assert r.pop("error") is None and r == m1


def test_manifest_validates_against_schema(ds_good_manifest, ds_reasons_report):
    import jsonschema

    schema = json.loads((Path(ds.__file__).parent / "schemas" / "dataset_manifest.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    m, out = ds_good_manifest
    on_disk = json.loads((out / "dataset_manifest.json").read_text())
    jsonschema.validate(on_disk, schema, cls=jsonschema.Draft202012Validator)
    jsonschema.validate(ds_reasons_report, schema, cls=jsonschema.Draft202012Validator)
    for mutate in (
        lambda d: d["entries"][0].update(split="test"),
        lambda d: d["entries"][0].update(path="../x.wav"),
        lambda d: d["rejected"].append({"id": "x", "source": "x", "reason": "nope", "detail": "", "line": None}),
        lambda d: d.pop("dataset_sha256"),
    ):
        bad = json.loads(json.dumps(on_disk))
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)


def test_manifest_config_and_warning(ds_good_manifest, ds_good_lj):
    m, _ = ds_good_manifest
    assert m["config"] == {f: getattr(CFG, f) for f in CFG.__dataclass_fields__}
    assert m["schema"] == "dataset_manifest/1" and m["language"] == "en-us"
    assert 0.09 < m["totals"]["kept_minutes"] < 0.13
    assert any(w.startswith("kept audio is 0.1 min; at least 30 min are recommended, 1-2 h") for w in m["warnings"])
    r = inspect_dataset(ds_good_lj, replace(CFG, warn_total_minutes=0.05))
    assert not any("kept audio" in w for w in r["warnings"])


def test_load_manifest(ds_good_manifest, tmp_path):
    m, out = ds_good_manifest
    assert load_manifest(out) == m
    with pytest.raises(VoicelaneError) as ei:
        load_manifest(tmp_path)
    assert ei.value.code == "manifest_missing"
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    doc = json.loads((copy / "dataset_manifest.json").read_text())
    doc["entries"][0]["text"] = "Tampered text."
    (copy / "dataset_manifest.json").write_text(json.dumps(doc))
    with pytest.raises(VoicelaneError) as ei:
        load_manifest(copy)
    assert ei.value.code == "checksum_mismatch"
    shutil.copyfile(out / "dataset_manifest.json", copy / "dataset_manifest.json")
    (copy / m["entries"][0]["path"]).unlink()
    with pytest.raises(VoicelaneError) as ei:
        load_manifest(copy)
    assert ei.value.code == "required_file_missing"


def test_progress_callback(ds_reasons, tmp_path):
    calls = []
    prepare_dataset(ds_reasons, tmp_path, CFG, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 15) for i in range(1, 16)]

"""Acoustic features and the waveform path: the WORLD vocoder (pyworld, MIT-style licence).

The acoustic model predicts, every 10 ms, a WORLD parameter frame:
``[coded spectral envelope (MGC_DIM), continuous log F0, voicing, coded aperiodicity]``.
WORLD turns those frames back into a waveform at RTF ~0.03 on one CPU core, which keeps
synthesis fast without a separately trained neural vocoder (why: see docs/model-choice.md).
"""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():  # pyworld imports pkg_resources only to read its own version
    warnings.simplefilter("ignore")
    import pyworld

SAMPLE_RATE = 16000
FRAME_MS = 10.0
HOP = int(SAMPLE_RATE * FRAME_MS / 1000)
FFT_SIZE = 1024  # analysis (training features, evaluation)
# Synthesis decodes the 40-coefficient envelope onto this many bins; per pulse WORLD runs
# several FFTs of this size. 512 halves the waveform path's time and scored as well or better on
# MCD, F0 and WER, but lower on DNSMOS OVRL (2.83 vs 2.88, 20 clips) and on copy-synthesis F0
# RMSE, so WORLD stays at 1024 (docs/benchmarks.md, bench/bench_waveform.py).
SYNTH_FFT_SIZE = 1024
MGC_DIM = 40
F0_FLOOR, F0_CEIL = 50.0, 500.0
LF0_IDX = MGC_DIM
VUV_IDX = MGC_DIM + 1
BAP_IDX = MGC_DIM + 2
N_BAP = pyworld.get_num_aperiodicities(SAMPLE_RATE)
FEAT_DIM = MGC_DIM + 2 + N_BAP


def n_frames(n_samples: int) -> int:
    """Frame count WORLD produces for a signal of n_samples."""
    return int(n_samples / HOP) + 1


BAND_LIMITED_DB = -20.0  # 60-250 Hz vs 300-3400 Hz energy: full-band speech -8..+5 dB, telephone -25..-33 dB


def low_band_db(x: np.ndarray) -> float:
    """Energy of 60-250 Hz (where a voice's fundamental lies) against 300-3400 Hz, in dB."""
    power = np.abs(np.fft.rfft(x)) ** 2
    freq = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    low = power[(freq >= 60) & (freq < 250)].sum()
    high = power[(freq >= 300) & (freq < 3400)].sum()
    return float(10 * np.log10((low + 1e-12) / (high + 1e-12)))


def _fundamental_restored(x: np.ndarray) -> np.ndarray:
    """Telephone audio (300-3400 Hz) has no fundamental, and DIO then tracks the 3rd harmonic
    (measured: 324-357 Hz for a 100-118 Hz voice). Rectifying brings the fundamental back as
    the envelope's periodicity (harmonics k and k+1 beat at F0); low-passed, DIO tracks it to
    within ~0.5 % of the full-band recording's F0 frame by frame (tests/test_engine.py)."""
    from scipy.signal import butter, sosfiltfilt

    env = np.abs(x)
    env = sosfiltfilt(butter(4, 900, btype="lowpass", fs=SAMPLE_RATE, output="sos"), env - env.mean())
    return np.ascontiguousarray(env * (np.max(np.abs(x)) / (np.max(np.abs(env)) + 1e-12)))


def _f0_track(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    src = _fundamental_restored(x) if len(x) and low_band_db(x) < BAND_LIMITED_DB else x
    f0, t = pyworld.dio(src, SAMPLE_RATE, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    return pyworld.stonemask(src, f0, t, SAMPLE_RATE), t


def analyze_f0(wav: np.ndarray) -> np.ndarray:
    return _f0_track(np.ascontiguousarray(wav, dtype=np.float64))[0]


def analyze(wav: np.ndarray) -> np.ndarray:
    """Waveform (float, SAMPLE_RATE) -> features [frames, FEAT_DIM] (float32)."""
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, t = _f0_track(x)
    sp = pyworld.cheaptrick(x, f0, t, SAMPLE_RATE, fft_size=FFT_SIZE)
    ap = pyworld.d4c(x, f0, t, SAMPLE_RATE, fft_size=FFT_SIZE)
    mgc = pyworld.code_spectral_envelope(sp, SAMPLE_RATE, MGC_DIM)
    bap = pyworld.code_aperiodicity(ap, SAMPLE_RATE)
    vuv = (f0 > 0).astype(np.float64)
    lf0 = continuous_log_f0(f0)
    return np.concatenate([mgc, lf0[:, None], vuv[:, None], bap], axis=1).astype(np.float32)


def continuous_log_f0(f0: np.ndarray) -> np.ndarray:
    voiced = f0 > 0
    if not voiced.any():
        return np.full_like(f0, np.log(100.0))
    idx = np.arange(len(f0))
    return np.interp(idx, idx[voiced], np.log(f0[voiced]))


def synthesize(feats: np.ndarray, postfilter: float = 0.0, fft_size: int = SYNTH_FFT_SIZE) -> np.ndarray:
    """Features [frames, FEAT_DIM] -> float32 waveform in [-1, 1] at SAMPLE_RATE."""
    y = world_waveform(feats, postfilter, fft_size)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.astype(np.float32)


def world_waveform(feats: np.ndarray, postfilter: float = 0.0, fft_size: int = SYNTH_FFT_SIZE) -> np.ndarray:
    """WORLD synthesis of features, float64, not normalised: ``frames * HOP`` samples."""
    if fft_size < 128 or fft_size & (fft_size - 1):
        raise ValueError(f"fft_size must be a power of two >= 128 (WORLD crashes otherwise): {fft_size}")
    feats = np.asarray(feats, dtype=np.float64)
    mgc = np.ascontiguousarray(feats[:, :MGC_DIM])
    if postfilter:
        # sharpen formants the acoustic model over-smooths (classic cepstral postfilter)
        mgc[:, 2:] *= 1.0 + postfilter
    f0 = np.exp(feats[:, LF0_IDX]) * (feats[:, VUV_IDX] > 0.5)
    f0 = np.clip(f0, 0.0, F0_CEIL)
    bap = np.ascontiguousarray(np.minimum(feats[:, BAP_IDX : BAP_IDX + N_BAP], 0.0))
    sp = pyworld.decode_spectral_envelope(mgc, SAMPLE_RATE, fft_size)
    ap = pyworld.decode_aperiodicity(bap, SAMPLE_RATE, fft_size)
    return pyworld.synthesize(np.ascontiguousarray(f0), sp, ap, SAMPLE_RATE, FRAME_MS)


def voiced_f0(wav: np.ndarray) -> np.ndarray:
    """Voiced F0 values (Hz) of a waveform, for evaluation."""
    f0 = analyze_f0(wav)
    return f0[f0 > 0]

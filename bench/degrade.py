"""Reproducible degradations of clean speech (shared by align_accuracy.py and robustness.py).

Every function takes mono float audio and a numpy Generator, so a seed fixes the result. Reverb
comes from a pyroomacoustics shoebox room (image source method) and is time-aligned to the dry
signal (the direct-path delay is removed), so reference boundary times stay valid.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import soxr


def active_power(y: np.ndarray, sr: int) -> float:
    """Mean power of the frames within 40 dB of the loudest (speech, not pauses)."""
    hop = int(0.01 * sr)
    frames = np.lib.stride_tricks.sliding_window_view(y, int(0.025 * sr))[::hop]
    p = (frames**2).mean(axis=1)
    return float(p[p >= p.max() * 1e-4].mean())


def add_noise(y: np.ndarray, sr: int, snr_db: float, rng: np.random.Generator, colour: str = "pink") -> np.ndarray:
    """Stationary noise at `snr_db` below the active speech power (pink: 1/f spectrum)."""
    white = rng.standard_normal(len(y))
    if colour == "pink":
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(len(y), 1 / sr)
        spec[1:] /= np.sqrt(f[1:] / f[1])
        spec[0] = 0
        noise = np.fft.irfft(spec, len(y))
    else:
        noise = white
    noise *= np.sqrt(active_power(y, sr) / 10 ** (snr_db / 10) / np.mean(noise**2))
    return y + noise


def room_impulse_response(sr: int, rng: np.random.Generator, rt60: float = 0.4) -> np.ndarray:
    """A shoebox room's impulse response (random room and positions), direct path at index 0."""
    import pyroomacoustics as pra

    dim = np.array([rng.uniform(4, 7), rng.uniform(3, 5), rng.uniform(2.5, 3.2)])
    absorption, max_order = pra.inverse_sabine(rt60, dim)
    room = pra.ShoeBox(dim, fs=sr, materials=pra.Material(absorption), max_order=max_order)
    src = dim * rng.uniform(0.2, 0.8, 3)
    mic = dim * rng.uniform(0.2, 0.8, 3)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    peak = int(np.argmax(np.abs(rir)))
    return rir[peak:] / np.abs(rir[peak])


N_ROOMS = 4  # rooms are drawn from a fixed set of seeds and cached (the image method is slow)


@lru_cache(maxsize=16)
def _room(sr: int, room_seed: int, rt60: float) -> np.ndarray:
    return room_impulse_response(sr, np.random.default_rng(room_seed), rt60)


def reverberate(y: np.ndarray, sr: int, rng: np.random.Generator, rt60: float = 0.4) -> np.ndarray:
    """Convolve with one of N_ROOMS simulated rooms (chosen by `rng`)."""
    from scipy.signal import fftconvolve

    rir = _room(sr, 500 + int(rng.integers(N_ROOMS)), rt60)
    wet = fftconvolve(y, rir)[: len(y)]
    return wet * (np.max(np.abs(y)) / max(np.max(np.abs(wet)), 1e-9))


def telephone(y: np.ndarray, sr: int) -> np.ndarray:
    """8 kHz narrow band (300-3400 Hz), then back to `sr`."""
    from scipy.signal import butter, sosfiltfilt

    low = soxr.resample(y, sr, 8000, quality="VHQ")
    sos = butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")
    return soxr.resample(sosfiltfilt(sos, low), 8000, sr, quality="VHQ")


def level_drift(y: np.ndarray, gain_db: float) -> np.ndarray:
    return y * 10 ** (gain_db / 20)


def degrade(y: np.ndarray, sr: int, kind: str, seed: int) -> np.ndarray:
    """Named degradations: clean, snr30, snr20, snr10, reverb, snr20+reverb, tel."""
    rng = np.random.default_rng(seed)
    if kind == "clean":
        return y
    if kind == "reverb":
        return reverberate(y, sr, rng)
    if kind == "snr20+reverb":
        return add_noise(reverberate(y, sr, rng), sr, 20.0, rng)
    if kind.startswith("snr"):
        return add_noise(y, sr, float(kind[3:]), rng)
    if kind == "tel":
        return telephone(y, sr)
    raise ValueError(kind)

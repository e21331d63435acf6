"""A loaded voice: text -> phoneme ids -> acoustic model -> WORLD frames -> waveform.

Voices are stored as ``model.safetensors`` (weights only, no pickle: safe to load from an
untrusted bundle) plus ``voice_config.json`` (architecture, feature normalisation, language).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicelane.engine import features, frontend
from voicelane.engine import model as model_mod
from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_bytes, atomic_write_json

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "voice_config.json"
VOICE_FORMAT = "voicelane-voice/1"


def save_voice(
    out_dir: Path,
    state_dict: dict[str, Any],
    arch: dict[str, Any],
    mean: np.ndarray,
    std: np.ndarray,
    language: str,
    extra: dict[str, Any] | None = None,
    symbols: list[str] | tuple[str, ...] | None = None,
) -> list[str]:
    """Write weights + config atomically; returns the file names written.

    `symbols`: the phoneme inventory the weights are indexed by (default: the language's);
    stored so the served voice phonemizes exactly as it was trained."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().clone() for k, v in sorted(state_dict.items())}
    atomic_write_bytes(out_dir / WEIGHTS_FILE, save(tensors, metadata={"format": VOICE_FORMAT}))
    cfg = {
        "format": VOICE_FORMAT,
        "arch": arch,
        "language": language,
        "sample_rate": features.SAMPLE_RATE,
        "frame_ms": features.FRAME_MS,
        "feature_dim": features.FEAT_DIM,
        "symbols": list(symbols if symbols is not None else frontend.inventory(language).symbols),
        "frontend": frontend.frontend_info(language),
        "feat_mean": [float(x) for x in mean],
        "feat_std": [float(x) for x in std],
        **(extra or {}),
    }
    atomic_write_json(out_dir / CONFIG_FILE, cfg)
    return [WEIGHTS_FILE, CONFIG_FILE]


@dataclass
class Synthesis:
    audio: np.ndarray
    sample_rate: int
    seconds: float
    compute_s: float

    @property
    def rtf(self) -> float:
        return self.compute_s / max(self.seconds, 1e-9)


class Voice:
    def __init__(self, net, cfg: dict[str, Any], threads: int = 1):
        import torch

        self.net = net.eval()
        self.cfg = cfg
        self.language = cfg.get("language", "en-us")
        self.symbols = frontend.inventory_from_config(
            self.language, cfg.get("symbols") or frontend.inventory(self.language).symbols
        ).symbols
        self.mean = np.asarray(cfg["feat_mean"], dtype=np.float32)
        self.std = np.asarray(cfg["feat_std"], dtype=np.float32)
        self.postfilter = float(cfg.get("postfilter", 0.0))
        self.threads = threads
        self._torch = torch
        self._halves = None

    @classmethod
    def load(cls, voice_dir: str | Path, threads: int = 1) -> "Voice":
        voice_dir = Path(voice_dir)
        try:
            cfg = json.loads((voice_dir / CONFIG_FILE).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise VoicelaneError(
                "required_file_missing", f"cannot read {CONFIG_FILE}: {exc}", {"path": str(voice_dir / CONFIG_FILE)}
            ) from exc
        symbols = cfg.get("symbols")
        if (
            cfg.get("format") != VOICE_FORMAT
            or not isinstance(symbols, list)
            or cfg.get("arch", {}).get("num_chars") != len(symbols)
        ):
            raise VoicelaneError(
                "manifest_invalid",
                "voice config is not a voicelane-voice/1 of this engine",
                {"format": cfg.get("format")},
            )
        frontend.inventory_from_config(cfg.get("language", "en-us"), symbols)
        from safetensors.torch import load_file

        state = load_file(str(voice_dir / WEIGHTS_FILE))
        net, _ = model_mod.build_model(cfg["arch"])
        net.load_state_dict(state)
        return cls(net, cfg, threads)

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        arch: dict[str, Any],
        mean,
        std,
        language: str = "en-us",
        threads: int = 1,
        symbols: list[str] | tuple[str, ...] | None = None,
    ) -> "Voice":
        net, _ = model_mod.build_model(arch)
        net.load_state_dict(state)
        symbols = list(symbols if symbols is not None else frontend.inventory(language).symbols)
        return cls(
            net,
            {
                "arch": arch,
                "language": language,
                "feat_mean": list(map(float, mean)),
                "feat_std": list(map(float, std)),
                "symbols": symbols,
            },
            threads,
        )

    def frames_for(self, utt: frontend.Utterance, length_scale: float = 1.0) -> np.ndarray:
        torch = self._torch
        from voicelane.engine import infer

        if self._halves is None:
            self._halves = infer.torch_modules(self.net)
        enc, dec = self._halves

        def encode(x, m):
            a, b = enc(torch.from_numpy(x), torch.from_numpy(m))
            return a.numpy(), b.numpy()

        def decode(e, m):
            return dec(torch.from_numpy(e), torch.from_numpy(m)).numpy()

        # torch's thread count is process-global: it is set once by the caller (CLI, service,
        # lane), never per call, so concurrent synthesis workers do not fight over it.
        with torch.inference_mode():
            out = infer.frames(utt.ids, encode, decode, length_scale)
        return out * self.std + self.mean

    def synthesize(self, text: str, length_scale: float = 1.0) -> Synthesis:
        t0 = time.perf_counter()
        parts = [
            features.synthesize(self.frames_for(u, length_scale), self.postfilter)
            for u in frontend.phonemize_sentences(text, self.language, self.symbols)
        ]
        audio = join_sentences(parts)
        dt = time.perf_counter() - t0
        return Synthesis(audio, features.SAMPLE_RATE, len(audio) / features.SAMPLE_RATE, dt)


SENTENCE_GAP_S = 0.15


def join_sentences(parts: list[np.ndarray]) -> np.ndarray:
    gap = np.zeros(int(SENTENCE_GAP_S * features.SAMPLE_RATE), dtype=np.float32)
    out: list[np.ndarray] = []
    for i, p in enumerate(parts):
        if i:
            out.append(gap)
        out.append(p.astype(np.float32))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

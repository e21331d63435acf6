"""Inference shared by the PyTorch and ONNX paths: pad, encode, regulate length, decode, trim.

coqui's SpeedySpeech blocks apply an unpadded convolution and pad afterwards, so inputs shorter
than the widest dilated kernel fail ("Kernel size can't be greater than actual input size").
Training batches are padded anyway; at inference we pad short inputs ourselves (masked, so the
padding never reaches the output) and trim the result.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MIN_TOKENS = 32
MIN_FRAMES = 64

# encode(ids [1,T] int64, mask [1,1,T] f32) -> (encodings [1,C,T], log_durations [1,1,T])
Encode = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
# decode(expanded [1,C,F] f32, mask [1,1,F] f32) -> frames [1,F,D]
Decode = Callable[[np.ndarray, np.ndarray], np.ndarray]


def format_durations(log_dur: np.ndarray, length_scale: float) -> np.ndarray:
    """coqui ForwardTTS.format_durations: exp(log d) - 1, scaled, at least 1 frame, rounded."""
    dr = (np.exp(log_dur) - 1.0) * length_scale
    dr[dr < 1] = 1.0
    return np.round(dr).astype(np.int64)


def frames(ids: list[int], encode: Encode, decode: Decode, length_scale: float = 1.0) -> np.ndarray:
    n = len(ids)
    T = max(n, MIN_TOKENS)
    x = np.zeros((1, T), dtype=np.int64)
    x[0, :n] = ids
    x_mask = np.zeros((1, 1, T), dtype=np.float32)
    x_mask[..., :n] = 1.0
    o_en, log_dur = encode(x, x_mask)
    dr = format_durations(log_dur[0, 0, :n], length_scale)
    ex = np.repeat(o_en[:, :, :n], dr, axis=2)
    F = ex.shape[2]
    Fp = max(F, MIN_FRAMES)
    exp = np.zeros((1, ex.shape[1], Fp), dtype=np.float32)
    exp[:, :, :F] = ex
    y_mask = np.zeros((1, 1, Fp), dtype=np.float32)
    y_mask[..., :F] = 1.0
    out = decode(exp, y_mask)
    return out[0, :F]


def torch_modules(net):
    """Encoder and decoder halves of a coqui ForwardTTS as torch modules (also exported to ONNX)."""
    import torch

    class Enc(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, x_mask):
            o_en, x_mask, _, _ = self.m._forward_encoder(x, x_mask, None)
            return o_en * x_mask, self.m.duration_predictor(o_en, x_mask)

    class Dec(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ex, y_mask):
            h = self.m.pos_encoder(ex, y_mask) if hasattr(self.m, "pos_encoder") else ex
            return (self.m.decoder(h, y_mask, g=None) * y_mask).transpose(1, 2)

    return Enc(net).eval(), Dec(net).eval()

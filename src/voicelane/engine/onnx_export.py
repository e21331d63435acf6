"""Portable export: the acoustic model as two ONNX graphs, run with onnxruntime.

Length regulation (repeating each token's encoding for its predicted number of frames) is a
data-dependent reshape that exports poorly, so it is done in numpy between two graphs:
``encoder`` (token ids -> encodings, log durations) and ``decoder`` (expanded encodings ->
WORLD frames). The numpy step reproduces coqui's ``ForwardTTS.format_durations`` exactly.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np

from voicelane.engine import features, frontend
from voicelane.fsutil import atomic_write_bytes

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ExportUnavailable(Exception):
    pass


def _modules(net):
    import torch

    class Enc(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            x_mask = torch.ones(1, 1, x.shape[1], dtype=torch.float32)
            o_en, x_mask, _, _ = self.m._forward_encoder(x, x_mask, None)
            o_dr_log = self.m.duration_predictor(o_en, x_mask)
            return o_en, o_dr_log

    class Dec(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, o_en_ex):
            y_mask = torch.ones(1, 1, o_en_ex.shape[2], dtype=torch.float32)
            h = self.m.pos_encoder(o_en_ex, y_mask) if hasattr(self.m, "pos_encoder") else o_en_ex
            return self.m.decoder(h, y_mask, g=None).transpose(1, 2)

    return Enc(net).eval(), Dec(net).eval()


def export(voice, out_path: Path) -> Path:
    """Write `model.onnx`: a zip (stored, fixed dates) holding encoder.onnx and decoder.onnx."""
    try:
        import onnx  # noqa: F401
        import torch
    except ImportError as exc:  # pragma: no cover
        raise ExportUnavailable(str(exc)) from exc
    enc, dec = _modules(voice.net)
    x = torch.tensor([frontend.phonemize("Export check sentence.").ids], dtype=torch.long)
    blobs = {}
    with torch.inference_mode():
        o_en, _ = enc(x)
        ex = o_en.repeat_interleave(3, dim=2)
    for name, mod, args, inputs, outputs, axes in (
        ("encoder.onnx", enc, (x,), ["tokens"], ["encodings", "log_durations"],
         {"tokens": {1: "T"}, "encodings": {2: "T"}, "log_durations": {2: "T"}}),
        ("decoder.onnx", dec, (ex,), ["expanded"], ["frames"], {"expanded": {2: "F"}, "frames": {1: "F"}}),
    ):
        buf = io.BytesIO()
        try:
            torch.onnx.export(mod, args, buf, input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        except Exception as exc:
            raise ExportUnavailable(f"{name}: {exc}") from exc
        blobs[name] = buf.getvalue()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(blobs):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            z.writestr(info, blobs[name])
    atomic_write_bytes(out_path, zbuf.getvalue())
    return out_path


class OnnxVoice:
    """Synthesis from model.onnx + voice_config.json with onnxruntime (no torch needed)."""

    def __init__(self, onnx_path: Path, cfg: dict, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        with zipfile.ZipFile(onnx_path) as z:
            self.enc = ort.InferenceSession(z.read("encoder.onnx"), so, providers=["CPUExecutionProvider"])
            self.dec = ort.InferenceSession(z.read("decoder.onnx"), so, providers=["CPUExecutionProvider"])
        self.cfg = cfg
        self.language = cfg.get("language", "en-us")
        self.mean = np.asarray(cfg["feat_mean"], dtype=np.float32)
        self.std = np.asarray(cfg["feat_std"], dtype=np.float32)
        self.postfilter = float(cfg.get("postfilter", 0.0))

    def frames_for(self, utt: frontend.Utterance, length_scale: float = 1.0) -> np.ndarray:
        x = np.asarray([utt.ids], dtype=np.int64)
        o_en, o_dr_log = self.enc.run(None, {"tokens": x})
        dr = (np.exp(o_dr_log[0, 0]) - 1.0) * length_scale
        dr[dr < 1] = 1.0
        dr = np.round(dr).astype(np.int64)
        ex = np.repeat(o_en, dr, axis=2).astype(np.float32)
        (frames,) = self.dec.run(None, {"expanded": ex})
        return frames[0] * self.std + self.mean

    def synthesize(self, text: str, length_scale: float = 1.0):
        from voicelane.engine.voice import Synthesis, join_sentences

        t0 = time.perf_counter()
        parts = [features.synthesize(self.frames_for(u, length_scale), self.postfilter)
                 for u in frontend.phonemize_sentences(text, self.language)]
        audio = join_sentences(parts)
        dt = time.perf_counter() - t0
        return Synthesis(audio, features.SAMPLE_RATE, len(audio) / features.SAMPLE_RATE, dt)

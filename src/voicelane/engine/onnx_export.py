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


def export(voice, out_path: Path) -> Path:
    """Write `model.onnx`: a zip (stored, fixed dates) holding encoder.onnx and decoder.onnx."""
    try:
        import onnx  # noqa: F401
        import torch
    except ImportError as exc:  # pragma: no cover
        raise ExportUnavailable(str(exc)) from exc
    from voicelane.engine import infer

    enc, dec = infer.torch_modules(voice.net)
    x = torch.zeros((1, infer.MIN_TOKENS + 8), dtype=torch.long)
    ids = frontend.phonemize("Export check sentence.").ids
    x[0, : len(ids)] = torch.tensor(ids)
    xm = torch.ones((1, 1, x.shape[1]))
    with torch.inference_mode():
        o_en, _ = enc(x, xm)
        ex = o_en.repeat_interleave(3, dim=2)
    ym = torch.ones((1, 1, ex.shape[2]))
    blobs = {}
    for name, mod, args, inputs, outputs, axes in (
        (
            "encoder.onnx",
            enc,
            (x, xm),
            ["tokens", "mask"],
            ["encodings", "log_durations"],
            {"tokens": {1: "T"}, "mask": {2: "T"}, "encodings": {2: "T"}, "log_durations": {2: "T"}},
        ),
        (
            "decoder.onnx",
            dec,
            (ex, ym),
            ["expanded", "mask"],
            ["frames"],
            {"expanded": {2: "F"}, "mask": {2: "F"}, "frames": {1: "F"}},
        ),
    ):
        buf = io.BytesIO()
        try:
            torch.onnx.export(
                mod,
                args,
                buf,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
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
        self.symbols = tuple(cfg.get("symbols") or frontend.inventory(self.language).symbols)
        self.mean = np.asarray(cfg["feat_mean"], dtype=np.float32)
        self.std = np.asarray(cfg["feat_std"], dtype=np.float32)
        self.postfilter = float(cfg.get("postfilter", 0.0))

    def frames_for(self, utt: frontend.Utterance, length_scale: float = 1.0) -> np.ndarray:
        from voicelane.engine import infer

        def encode(x, m):
            a, b = self.enc.run(None, {"tokens": x, "mask": m})
            return a, b

        def decode(e, m):
            return self.dec.run(None, {"expanded": e, "mask": m})[0]

        return infer.frames(utt.ids, encode, decode, length_scale) * self.std + self.mean

    def synthesize(self, text: str, length_scale: float = 1.0):
        from voicelane.engine.voice import Synthesis, join_sentences

        t0 = time.perf_counter()
        parts = [
            features.synthesize(self.frames_for(u, length_scale), self.postfilter)
            for u in frontend.phonemize_sentences(text, self.language, self.symbols)
        ]
        audio = join_sentences(parts)
        dt = time.perf_counter() - t0
        return Synthesis(audio, features.SAMPLE_RATE, len(audio) / features.SAMPLE_RATE, dt)

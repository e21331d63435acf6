"""Workarounds that let coqui-tts 0.28 import and run with the CPU build of torch 2.13.

Why this module exists (measured on the target machine, see shared/MEASUREMENTS.md):

* ``import TTS`` refuses to run unless packages named ``torchaudio`` and, on torch >= 2.9,
  ``torchcodec`` can be found (``importlib.util.find_spec``). No CPU build of either is
  reachable from PyPI for torch 2.13: the PyPI wheels are CUDA builds that fail to load
  (``libc10_cuda.so`` / ``libnvrtc.so.13`` missing). Installing them would also drag in a
  multi-GB CUDA torch. voicelane never calls torchaudio for anything but reading and writing
  audio, so we register a small stand-in module that does exactly that through soundfile.
  A real, loadable torchaudio always wins: the stand-in is only installed when the real
  package cannot be imported.
* coqui imports ``six`` without declaring it; pyproject.toml declares it for us.
* ``BaseTTS._set_model_args`` overwrites ``num_chars`` with the size of coqui's own default
  tokenizer; voicelane feeds its own fixed phoneme inventory, so ``forward_tts_class`` returns a
  ForwardTTS that keeps the configured vocabulary size.
* pyworld 0.3.5 imports ``pkg_resources`` (removed in setuptools 81): pyproject pins
  ``setuptools<81``.
* coqui's SpeedySpeech convolutions pad *after* an unpadded convolution, so inputs shorter than
  the widest dilated kernel fail; ``engine/infer.py`` pads (masked) at inference time.

Everything is isolated here; ``tests/test_compat.py`` fails if any of it stops working.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

STANDIN_MARK = "__voicelane_standin__"


def _real_module_loads(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 - a CUDA-only wheel raises OSError/ImportError (or worse) here
        sys.modules.pop(name, None)
        return False


def _standin_torchaudio() -> types.ModuleType:
    import numpy as np
    import soundfile as sf
    import torch

    mod = types.ModuleType("torchaudio")
    mod.__spec__ = importlib.machinery.ModuleSpec("torchaudio", loader=None)
    mod.__version__ = "0.0.0+voicelane.standin"
    setattr(mod, STANDIN_MARK, True)

    def load(path, *args, **kwargs):
        """torchaudio.load: returns (float32 tensor [channels, samples], sample_rate)."""
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(data.T)), sr

    def save(path, tensor, sample_rate, *args, **kwargs):
        arr = tensor.detach().cpu().numpy()
        if arr.ndim == 2:
            arr = arr.T
        sf.write(str(path), arr, int(sample_rate), subtype="PCM_16")

    def _unsupported(*args, **kwargs):
        raise RuntimeError("torchaudio is not installed; voicelane's stand-in only provides load/save")

    mod.load = load
    mod.save = save
    mod.functional = types.SimpleNamespace(resample=_unsupported)
    mod.transforms = types.SimpleNamespace()
    return mod


def _standin_torchcodec() -> types.ModuleType:
    mod = types.ModuleType("torchcodec")
    mod.__spec__ = importlib.machinery.ModuleSpec("torchcodec", loader=None)
    mod.__version__ = "0.0.0+voicelane.standin"
    setattr(mod, STANDIN_MARK, True)
    return mod


def install() -> dict[str, str]:
    """Make ``import TTS`` work. Returns which modules are real and which are stand-ins."""
    report = {}
    for name, factory in (("torchaudio", _standin_torchaudio), ("torchcodec", _standin_torchcodec)):
        if name in sys.modules:
            report[name] = "standin" if getattr(sys.modules[name], STANDIN_MARK, False) else "real"
            continue
        if _real_module_loads(name):
            report[name] = "real"
        else:
            sys.modules[name] = factory()
            report[name] = "standin"
    return report


def import_tts():
    """Import coqui-tts after installing the workarounds; map failures to a stable code."""
    install()
    try:
        import TTS  # noqa: F401
        from TTS.tts.models.forward_tts import ForwardTTS  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only on broken installs
        from voicelane.errors import VoicelaneError

        raise VoicelaneError(
            "runtime_dependency_missing", f"coqui-tts failed to import: {exc}", {"module": "TTS"}
        ) from exc
    import TTS as tts_pkg

    return tts_pkg


_FORWARD_TTS = None


def forward_tts_class():
    """coqui's ForwardTTS, keeping voicelane's vocabulary size (see the module docstring)."""
    global _FORWARD_TTS
    if _FORWARD_TTS is None:
        install()
        from TTS.tts.models.forward_tts import ForwardTTS

        class VoicelaneForwardTTS(ForwardTTS):
            def _set_model_args(self) -> None:
                self.args = self.config.model_args

        _FORWARD_TTS = VoicelaneForwardTTS
    return _FORWARD_TTS

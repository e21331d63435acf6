"""The acoustic model: coqui-tts ``ForwardTTS`` configured as SpeedySpeech, fed external durations.

coqui's ForwardTTS supports pre-computed durations (``use_aligner=False``) and any number of
output channels; we feed it our phoneme ids and WORLD parameter frames. The one override it
needs (keep our vocabulary size) lives with the other workarounds in ``compat.py``.
"""

from __future__ import annotations

import copy
from typing import Any

from voicelane.engine import compat, features, frontend

# Model presets (architecture + training schedule). `cpu` fits this 2-core machine;
# `gpu` is the size a production voice should use; `tiny` is for tests.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden": 32,
        "enc_blocks": 3,
        "dec_blocks": 3,
        "dur_hidden": 32,
        "batch_size": 4,
        "lr": 2e-3,
        "warmup": 5,
        "steps": 6,
        "checkpoint_every": 2,
        "finetune_steps": 6,
        "finetune_lr": 1e-3,
        "finetune_warmup": 2,
        "finetune_scope": "all",
    },
    "cpu": {
        "hidden": 128,
        "enc_blocks": 13,
        "dec_blocks": 9,
        "dur_hidden": 128,
        "batch_size": 16,
        "lr": 1e-3,
        "warmup": 300,
        "steps": 6000,
        "checkpoint_every": 100,
        "finetune_steps": 400,  # dev curve: WER flat after ~200 steps (docs/model-choice.md)
        "finetune_lr": 5e-4,
        "finetune_warmup": 50,
        "finetune_scope": "all",
    },
    "gpu": {
        "hidden": 256,
        "enc_blocks": 13,
        "dec_blocks": 17,
        "dur_hidden": 256,
        "batch_size": 32,
        "lr": 1e-3,
        "warmup": 1000,
        "steps": 40000,
        "checkpoint_every": 1000,
        "finetune_steps": 4000,
        "finetune_lr": 3e-4,
        "finetune_warmup": 200,
        "finetune_scope": "all",
    },
}


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        from voicelane.errors import VoicelaneError

        raise VoicelaneError(
            "invalid_argument", f"unknown preset {name!r}", {"preset": name, "choices": sorted(PRESETS)}
        )
    return copy.deepcopy(PRESETS[name])


def _dilations(blocks: int, cycle: list[int]) -> list[int]:
    out = (cycle * (blocks // len(cycle) + 1))[: blocks - 1]
    return out + [1]


def architecture(p: dict[str, Any], num_chars: int | None = None) -> dict[str, Any]:
    """The architecture part of a preset (stored with every checkpoint). `num_chars`: the size of
    the voice's phoneme inventory (default: the English base's)."""
    return {k: p[k] for k in ("hidden", "enc_blocks", "dec_blocks", "dur_hidden")} | {
        "num_chars": num_chars or len(frontend.SYMBOLS),
        "out_channels": features.FEAT_DIM,
    }


def build_config(arch: dict[str, Any]):
    compat.install()
    from TTS.tts.configs.shared_configs import BaseDatasetConfig  # noqa: F401  (import order)
    from TTS.tts.configs.speedy_speech_config import SpeedySpeechConfig

    cfg = SpeedySpeechConfig()
    a = cfg.model_args
    cfg.num_chars = a.num_chars = arch["num_chars"]
    a.out_channels = arch["out_channels"]
    a.hidden_channels = arch["hidden"]
    a.use_aligner = False
    a.use_pitch = False
    a.use_energy = False
    a.encoder_params = {
        "kernel_size": 4,
        "dilations": _dilations(arch["enc_blocks"], [1, 2, 4]),
        "num_conv_blocks": 2,
        "num_res_blocks": arch["enc_blocks"],
    }
    a.decoder_params = {
        "kernel_size": 4,
        "dilations": _dilations(arch["dec_blocks"], [1, 2, 4, 8]),
        "num_conv_blocks": 2,
        "num_res_blocks": arch["dec_blocks"],
    }
    a.duration_predictor_hidden_channels = arch["dur_hidden"]
    cfg.spec_loss_type = "l1"
    cfg.duration_loss_type = "huber"
    cfg.use_ssim_loss = False
    return cfg


def build_model(arch: dict[str, Any]):
    """Build the coqui ForwardTTS model for an architecture dict. Seed torch before calling."""
    cfg = build_config(arch)
    import logging

    logging.getLogger("TTS").setLevel(logging.ERROR)
    model = compat.forward_tts_class()(cfg)
    return model, model.get_criterion()

"""Training loop: deterministic, resumable (model + optimiser + scheduler + step), atomic checkpoints.

coqui's ForwardTTS provides the model, its ``train_step`` and its loss; this loop replaces
coqui's Trainer because the lane needs fixed output paths (the Trainer names run folders
after the wall clock), byte-identical reruns and a resume that restores the data order.
"""

from __future__ import annotations

import io
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voicelane.engine import data
from voicelane.engine import model as model_mod
from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_bytes, atomic_write_json

CKPT_NAME = "checkpoint.pt"
PREV_CKPT_NAME = "checkpoint.prev.pt"  # the one before: a torn or corrupt latest falls back to it


@dataclass
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    warmup: int
    checkpoint_every: int
    seed: int = 1234
    threads: int = 2
    grad_clip: float = 1.0
    snapshot_every: int = 0  # >0: also keep weights-only snapshots (learning curves)
    finetune_scope: str = "all"  # all | decoder (freeze phoneme embeddings and encoder)
    device: str = "auto"  # auto (cuda when available) | cpu | cuda


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def lr_lambda_factory(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


class Distributed:
    """Data parallelism under PyTorch's launcher (torchrun sets WORLD_SIZE/RANK/LOCAL_RANK).

    Every rank takes its share of each deterministic global batch; gradients are averaged with
    all_reduce (coqui's ``train_step`` calls ``forward`` itself, so the DDP wrapper's hooks
    would never run). NCCL on GPUs, gloo on CPUs (which is how the tests exercise it). Only
    rank 0 reports steps and writes checkpoints.
    """

    def __init__(self, world_size: int = 1, rank: int = 0, device=None):
        self.world_size, self.rank, self.device = world_size, rank, device

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch
        import torch.distributed as tdist

        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(device_name)
        if device.type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(world, rank, device)

    def shard(self, batch_idx: list[int]) -> list[int]:
        if not self.active:
            return batch_idx
        if len(batch_idx) < self.world_size:  # a short tail batch: every rank still needs an item
            batch_idx = (batch_idx * self.world_size)[: self.world_size]
        return batch_idx[self.rank :: self.world_size]

    def average_gradients(self, params) -> None:
        if not self.active:
            return
        import torch.distributed as tdist

        for p in params:
            if p.grad is not None:
                tdist.all_reduce(p.grad, op=tdist.ReduceOp.SUM)
                p.grad /= self.world_size

    def close(self) -> None:
        if self.active:
            import torch.distributed as tdist

            tdist.barrier()
            tdist.destroy_process_group()


def resolve_device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise VoicelaneError(
            "runtime_dependency_missing", "--device cuda requested but no CUDA device is visible", {"device": name}
        )
    if name not in ("cpu", "cuda"):
        raise VoicelaneError("invalid_argument", f"unknown device {name!r}", {"choices": ["auto", "cpu", "cuda"]})
    return torch.device(name)


def to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    if device.type == "cpu":
        return batch
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}


def cpu_state(net) -> dict[str, Any]:
    """State dict on the CPU: checkpoints and bundles load anywhere."""
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


FROZEN_PREFIXES = {"all": (), "decoder": ("emb.", "encoder.")}


def trainable_parameters(net, scope: str) -> list:
    if scope not in FROZEN_PREFIXES:
        raise VoicelaneError(
            "invalid_argument",
            f"unknown fine-tune scope {scope!r}",
            {"scope": scope, "choices": sorted(FROZEN_PREFIXES)},
        )
    frozen = FROZEN_PREFIXES[scope]
    params = []
    for name, p in net.named_parameters():
        p.requires_grad_(not name.startswith(frozen) if frozen else True)
        if p.requires_grad:
            params.append(p)
    return params


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    if path.name == CKPT_NAME and path.exists():
        os.replace(path, path.with_name(PREV_CKPT_NAME))
    atomic_write_bytes(path, buf.getvalue())


def _warn(message: str) -> None:
    print(f"[voicelane] warning: {message}", file=sys.stderr, flush=True)


def load_resume_checkpoint(run_dir: Path, warn: Callable[[str], None] = _warn) -> dict[str, Any] | None:
    """The newest readable checkpoint of a run folder: the latest, else the previous one (with a
    warning); None (with a warning) when neither can be read, so training restarts. Unreadable
    files are moved aside (``*.corrupt``), never deleted."""
    for name in (CKPT_NAME, PREV_CKPT_NAME):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            ck = load_checkpoint(path)
            if not isinstance(ck, dict) or not {"model", "optimizer", "scheduler", "step"} <= set(ck):
                raise VoicelaneError("checkpoint_invalid", f"{path} is not a voicelane checkpoint")
        except VoicelaneError as err:
            os.replace(path, path.with_name(path.name + ".corrupt"))
            warn(f"{name} cannot be read ({err.message[:160]}); moved to {name}.corrupt")
            continue
        if name != CKPT_NAME:
            warn(f"resuming from the previous checkpoint (step {ck['step']}): the latest could not be read")
        return ck
    if (run_dir / (CKPT_NAME + ".corrupt")).exists():
        warn("no readable checkpoint: training restarts from step 0")
    return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise VoicelaneError(
            "checkpoint_invalid", f"cannot read checkpoint {path}: {exc}", {"path": str(path)}
        ) from exc


def train(
    items: list[data.Item],
    arch: dict[str, Any],
    cfg: TrainConfig,
    run_dir: Path,
    mean: np.ndarray,
    std: np.ndarray,
    init_state: dict[str, Any] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or resume) to cfg.steps. Returns the final checkpoint payload.

    init_state: model weights to start from (fine-tuning); ignored when resuming.
    on_step(step, losses) is called after every optimiser step (and once per resumed step
    skipped? no: only for steps actually run).
    """
    import torch

    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / CKPT_NAME

    dist = Distributed.from_env(cfg.device)
    seed_everything(cfg.seed)
    net, criterion = model_mod.build_model(arch)
    if init_state is not None:
        net.load_state_dict(init_state)
    device = dist.device if dist.active else resolve_device(cfg.device)
    net.to(device)
    params = trainable_parameters(net, cfg.finetune_scope)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), weight_decay=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda_factory(cfg.warmup, cfg.steps))
    step = 0
    ck = load_resume_checkpoint(run_dir)
    if ck is not None:
        if ck.get("arch") != arch or ck.get("train_config", {}).get("seed") != cfg.seed:
            raise VoicelaneError(
                "checkpoint_invalid",
                "the run folder holds a checkpoint of a different configuration",
                {"path": str(ckpt_path)},
            )
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])  # moves optimiser state onto the parameters' device
        sched.load_state_dict(ck["scheduler"])
        step = int(ck["step"])
        torch.set_rng_state(ck["torch_rng"])

    lengths = [len(it.feats) for it in items]
    batch_size = max(min(cfg.batch_size, len(items)), dist.world_size)
    epoch_batches = data.batches_for_epoch(lengths, batch_size, cfg.seed, 0)
    per_epoch = len(epoch_batches)

    def payload() -> dict[str, Any]:
        return {
            "format": "voicelane-ckpt/1",
            "arch": arch,
            "model": cpu_state(net),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
            "feat_mean": mean,
            "feat_std": std,
            "train_config": cfg.__dict__,
            **(extra or {}),
        }

    # wall-clock training time lives in a sidecar so checkpoint bytes stay reproducible
    time_file = run_dir / "train_time.json"
    elapsed0 = read_train_seconds(time_file) if step else 0.0
    t_start = time.perf_counter()
    net.train()
    while step < cfg.steps:
        epoch, pos = divmod(step, per_epoch)
        batch_idx = data.batches_for_epoch(lengths, batch_size, cfg.seed, epoch)[pos]
        batch_idx = dist.shard(batch_idx)
        batch = to_device(data.collate([items[i] for i in batch_idx], mean, std), device)
        _, losses = net.train_step(batch, criterion)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            bad = float(loss.detach())
            raise VoicelaneError("non_finite_loss", f"loss became {bad} at step {step + 1}", {"step": step + 1})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        if not dist.is_main:
            continue
        if on_step:
            on_step(step, {k: float(torch.as_tensor(v).detach()) for k, v in losses.items()})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt_path, payload())
            atomic_write_json(
                time_file, {"step": step, "train_seconds": round(time.perf_counter() - t_start + elapsed0, 3)}
            )
        if cfg.snapshot_every and step % cfg.snapshot_every == 0:
            save_snapshot(run_dir, step, net, time.perf_counter() - t_start + elapsed0)
    if dist.is_main and not ckpt_path.exists():
        save_checkpoint(ckpt_path, payload())
    dist.close()
    return payload()


def read_train_seconds(path: Path) -> float:
    """Wall-clock training seconds recorded in a run's train_time.json (0 when absent)."""
    import json

    try:
        return float(json.loads(path.read_text("utf-8"))["train_seconds"])
    except (OSError, ValueError, KeyError):
        return 0.0


def snapshot_path(run_dir: Path, step: int) -> Path:
    return run_dir / "snapshots" / f"step_{step:06d}.pt"


def snapshot_paths(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every snapshot in a run folder, by step."""
    return sorted((int(p.stem.split("_")[1]), p) for p in (run_dir / "snapshots").glob("step_*.pt"))


def save_snapshot(run_dir: Path, step: int, net, seconds: float) -> None:
    """Weights + training seconds at `step` (learning curves, checkpoint selection; not resuming)."""
    import torch

    buf = io.BytesIO()
    torch.save({"step": step, "train_seconds": round(seconds, 3), "model": cpu_state(net)}, buf)
    atomic_write_bytes(snapshot_path(run_dir, step), buf.getvalue())


def weights_only(ck: dict[str, Any]) -> dict[str, Any]:
    """What a bundle/base ships: architecture, weights, normalisation; no optimiser state."""
    keep = ("format", "arch", "model", "feat_mean", "feat_std", "step")
    return {k: ck[k] for k in keep if k in ck} | {"format": "voicelane-voice/1"}

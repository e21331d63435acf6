"""Data-parallel training through PyTorch's own launcher.

The lane stays one process; only its training stage runs under torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node N -m voicelane.engine.ddp SPEC.json

Each rank loads the cached training items, runs ``train.train`` (which shards batches and
averages gradients, see ``train.Distributed``); rank 0 prints one ``VLSTEP <json>`` line per
optimiser step, which the lane turns into protocol lines, and writes the checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_json

STEP_PREFIX = "VLSTEP "


def write_spec(
    path: Path,
    entries: list[dict],
    cache_dir: Path,
    language: str,
    arch: dict[str, Any],
    cfg,
    run_dir: Path,
    mean: np.ndarray,
    std: np.ndarray,
    init_weights: Path | None,
) -> Path:
    atomic_write_json(
        path,
        {
            "entries": [{k: str(v) if isinstance(v, Path) else v for k, v in e.items()} for e in entries],
            "cache_dir": str(cache_dir),
            "language": language,
            "arch": arch,
            "train_config": asdict(cfg),
            "run_dir": str(run_dir),
            "feat_mean": [float(x) for x in mean],
            "feat_std": [float(x) for x in std],
            "init_weights": str(init_weights) if init_weights else None,
        },
    )
    return path


def main(spec_path: str) -> int:
    from voicelane.engine import data, train

    spec = json.loads(Path(spec_path).read_text("utf-8"))
    items, errors = data.prepare_all(spec["entries"], spec["cache_dir"], spec["language"], workers=1)
    cfg = train.TrainConfig(**spec["train_config"])
    init = None
    if spec["init_weights"]:
        from safetensors.torch import load_file

        from voicelane.engine import crosslingual, frontend

        # another language than the base's: new tokens start from their nearest base sound
        init = crosslingual.extend_state(load_file(spec["init_weights"]), frontend.inventory(spec["language"]).symbols)

    def on_step(step: int, losses: dict[str, float]) -> None:
        print(STEP_PREFIX + json.dumps({"step": step, "losses": losses}, sort_keys=True), flush=True)

    train.train(
        items,
        spec["arch"],
        cfg,
        Path(spec["run_dir"]),
        np.asarray(spec["feat_mean"], np.float32),
        np.asarray(spec["feat_std"], np.float32),
        init,
        on_step,
    )
    return 0


def launch(spec_path: Path, nproc: int, on_step: Callable[[int, dict[str, float]], None]) -> None:
    """Run the training stage on `nproc` processes (one per GPU; CPU processes use gloo)."""
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={int(nproc)}",
        "-m",
        "voicelane.engine.ddp",
        str(spec_path),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, shell=False)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith(STEP_PREFIX):
                ev = json.loads(line[len(STEP_PREFIX) :])
                on_step(int(ev["step"]), ev["losses"])
            else:
                sys.stderr.write(line)
        rc = proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait(30)
        raise
    if rc != 0:
        raise VoicelaneError(
            "internal_error", f"distributed training exited with code {rc}", {"nproc": nproc, "exit_code": rc}
        )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))

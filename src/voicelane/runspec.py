"""`RunSpec`: the one description of a lane run (SPEC §2).

Every entry point builds one and hands it down unchanged: the CLI from its flags
(``add_cli_arguments`` / ``from_namespace``), the HTTP service from the request body
(``service/routes/train.py``), the orchestrator from its environment (``ops/common.py``), and a
runner ships it as JSON to a child that runs ``python -m voicelane run spec.json``. It is
validated once, here; the lane trusts it.

Lanes and presets are defined here and imported everywhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Mapping, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_json

# job type -> lane (SPEC §2)
LANES: dict[str, str] = {
    "tts_prod_train": "production",
    "tts_voice_train": "experimental",
    "train": "experimental",
    "dataset": "data",
}
TRAIN_JOB_TYPES = {k: v for k, v in LANES.items() if k != "dataset"}
JobType = Literal["tts_prod_train", "tts_voice_train", "train", "dataset"]
Preset = Literal["tiny", "cpu", "gpu"]  # sizes and schedules: voicelane.engine.model.PRESETS
FinetuneScope = Literal["all", "decoder"]
Device = Literal["auto", "cpu", "cuda"]
PRESETS: tuple[str, ...] = get_args(Preset)
FINETUNE_SCOPES: tuple[str, ...] = get_args(FinetuneScope)
DEVICES: tuple[str, ...] = get_args(Device)
SPEC_FILE = "spec.json"


def default_threads(env: Mapping[str, str] | None = None) -> int:
    """Torch threads for a run that does not say: ``VOICELANE_THREADS``, else 2."""
    value = (os.environ if env is None else env).get("VOICELANE_THREADS", "").strip()
    return int(value) if value else 2


class RunSpec(BaseModel):
    """What one lane run needs. JSON in and out (``to_json`` / ``from_json``)."""

    model_config = ConfigDict(extra="forbid")

    job_type: JobType = "tts_prod_train"
    data: Path = Field(description="dataset folder or long recording")
    profile_id: str = Field(min_length=1, max_length=128, description="voice profile id (a-z0-9_-)")
    out: Path = Field(description="output root (bundles/, dataset/, work/)")
    preset: Preset = "cpu"
    base: str | None = Field(default=None, description="allowlisted base weights id (fine-tuning)")
    accept_license_risk: bool = False
    consent_statement: Path | None = None
    speaker_name: str | None = None
    heldout: Path | None = Field(default=None, description="held-out recordings for evaluation")
    language: str = "en-us"
    seed: int = Field(default=1234, ge=0, le=2**31 - 1)
    steps: int | None = Field(default=None, ge=1)
    display_name: str | None = None
    min_minutes: float | None = Field(default=None, ge=0)
    gates: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, description='e.g. {"wer_max": 0.3}; NaN/Infinity refused (a NaN threshold passes everything)'
    )
    eval_max: int | None = Field(default=None, ge=1, description="evaluate at most N held-out clips")
    status_path: Path | None = Field(default=None, description="default TRAIN_STATUS_PATH or artifacts/")
    threads: int = Field(default=2, ge=1, le=256)
    onnx: bool = True
    snapshot_every: int = Field(default=0, ge=0, description="keep a weights snapshot every N steps")
    select_snapshot: bool = Field(
        default=False, description="bundle the snapshot with the lowest regression-prompt WER (needs snapshot_every)"
    )
    finetune_scope: FinetuneScope | None = None
    device: Device = "auto"
    nproc: int = Field(default=1, ge=1, le=64, description="data-parallel processes under torchrun")

    @model_validator(mode="after")
    def _snapshot_selection_needs_snapshots(self) -> RunSpec:
        if self.select_snapshot and self.snapshot_every <= 0:
            raise ValueError("select_snapshot needs snapshot_every > 0 (--select-snapshot needs --snapshot-every N)")
        return self

    @property
    def lane(self) -> str:
        return LANES[self.job_type]

    @classmethod
    def build(cls, **values) -> RunSpec:
        """Validate once; a bad value is ``invalid_argument`` naming the field."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise _invalid(exc) from None

    def updated(self, **changes) -> RunSpec:
        return type(self).build(**(self.model_dump() | changes))

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise _invalid(exc) from None

    def write(self, path: Path) -> Path:
        atomic_write_json(path, self.model_dump(mode="json"))
        return path

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise VoicelaneError(
                "invalid_argument", f"cannot read the run spec {path}: {exc}", {"spec": str(path)}
            ) from None
        return cls.from_json(text)


def _invalid(exc: ValidationError) -> VoicelaneError:
    issues = [{"field": ".".join(str(p) for p in e["loc"]) or "spec", "message": e["msg"]} for e in exc.errors()]
    first = issues[0] if issues else {"field": "spec", "message": "invalid"}
    return VoicelaneError(
        "invalid_argument", f"run spec: {first['field']}: {first['message']}", {"issues": issues[:20]}
    )


def child_argv(spec_path: Path) -> list[str]:
    """The command a runner starts for a spec: ``python -m voicelane run spec.json``."""
    return [sys.executable, "-m", "voicelane", "run", str(spec_path)]


# --------------------------------------------------------------------------------------------
# the CLI flags (``voicelane train``; also what TRAIN_EXTRA_ARGS may carry)


def add_cli_arguments(p: argparse.ArgumentParser, *, overrides_only: bool = False) -> None:
    """The `train` flags, one per RunSpec field. ``overrides_only``: nothing required, no defaults
    (the parse yields only what was given)."""
    req = not overrides_only

    def arg(*names: str, **kw) -> None:
        if overrides_only:
            kw["default"] = argparse.SUPPRESS
            kw.pop("required", None)
        p.add_argument(*names, **kw)

    arg("--lane", dest="job_type", default="tts_prod_train", choices=sorted(TRAIN_JOB_TYPES))
    arg("--data", required=req, type=Path, help="dataset folder or long recording")
    arg("--profile", dest="profile_id", required=req, help="voice profile id (a-z0-9_-)")
    arg("--preset", default="cpu", choices=PRESETS)
    arg("--out", type=Path, default=None, help="output root (default runs/<profile>)")
    arg("--base", default=None, help="base weights id from the allowlist (fine-tuning)")
    arg("--accept-license-risk", action="store_true")
    arg("--consent-statement", type=Path, default=None)
    arg("--speaker-name", default=None)
    arg("--heldout", type=Path, default=None, help="held-out recordings for evaluation")
    arg("--language", default="en-us")
    arg("--seed", type=int, default=1234)
    arg("--steps", type=int, default=None)
    arg("--display-name", default=None)
    arg("--min-minutes", type=float, default=None)
    arg("--gates", default=None, help='JSON, e.g. {"wer_max": 0.3}')
    arg("--eval-max", type=int, default=None, help="evaluate at most N held-out clips")
    arg("--status-path", type=Path, default=None, help="train_status JSON (default TRAIN_STATUS_PATH)")
    arg("--threads", type=int, default=default_threads())
    arg(
        "--finetune-scope",
        choices=FINETUNE_SCOPES,
        default=None,
        help="layers adapted when fine-tuning from --base (default: the preset's)",
    )
    arg("--device", choices=DEVICES, default="auto", help="training device (auto: cuda when available)")
    arg("--nproc", type=int, default=1, help="data-parallel training processes under torchrun (one per GPU)")
    arg("--no-onnx", dest="onnx", action="store_false", **({} if overrides_only else {"default": True}))
    arg("--snapshot-every", type=int, default=0, help="keep a weights snapshot every N steps")
    arg(
        "--select-snapshot",
        action="store_true",
        help="bundle the snapshot with the lowest regression-prompt WER (needs --snapshot-every)",
    )


def _values_of(ns: argparse.Namespace) -> dict:
    values = {k: v for k, v in vars(ns).items() if k in RunSpec.model_fields}
    if isinstance(values.get("gates"), str):
        try:
            values["gates"] = json.loads(values["gates"])
        except ValueError as exc:
            raise VoicelaneError("invalid_argument", f"--gates is not JSON: {exc}", {"flag": "--gates"}) from None
    return values


def from_namespace(ns: argparse.Namespace) -> RunSpec:
    values = _values_of(ns)
    if values.get("out") is None:
        values["out"] = Path("runs") / str(values.get("profile_id"))
    return RunSpec.build(**values)


def with_cli_overrides(spec: RunSpec, args: list[str]) -> RunSpec:
    """Apply `train` flags given as extra arguments (the orchestrator's TRAIN_EXTRA_ARGS)."""
    if not args:
        return spec
    p = argparse.ArgumentParser(prog="voicelane train", add_help=False, exit_on_error=False)
    add_cli_arguments(p, overrides_only=True)
    try:
        ns, unknown = p.parse_known_args(args)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise VoicelaneError("invalid_argument", f"extra lane arguments: {exc}", {"args": args[:20]}) from None
    if unknown:
        raise VoicelaneError("invalid_argument", f"unknown lane arguments {unknown[:5]}", {"args": unknown[:20]})
    return spec.updated(**_values_of(ns))

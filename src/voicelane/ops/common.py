"""Shared pieces of the operations layer: checkout head, log tails, the `[tts-prod]` line format,
and the lane command built from the orchestrator's environment variables."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Mapping, TextIO

from voicelane.errors import VoicelaneError
from voicelane.fsutil import read_json  # noqa: F401  (the ops modules read JSON through here)
from voicelane.paths import REPO_ROOT
from voicelane.runspec import LANES, PRESETS, RunSpec, default_threads, with_cli_overrides

PREFIX = "[tts-prod]"
TAIL_LINES = 120
EXIT_OK, EXIT_ERROR, EXIT_BLOCKED, EXIT_CANCELLED = 0, 1, 2, 130


# --------------------------------------------------------------------------------------------
# checkout


def git_head(root: Path = REPO_ROOT) -> str | None:
    """The full sha of the checkout, or None when it is not a git checkout (e.g. in an image)."""
    env_head = os.environ.get("VOICELANE_BUILD_COMMIT")  # baked into the Docker image at build time
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        sha = out.stdout.strip()
        if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha):
            return sha
    except (OSError, subprocess.SubprocessError):
        pass
    return env_head if env_head and re.fullmatch(r"[0-9a-f]{7,64}", env_head) else None


def head_matches(head: str | None, expected: str) -> bool:
    exp = expected.strip().lower()
    if not head or not re.fullmatch(r"[0-9a-f]{4,64}", exp):
        return False
    return head.lower().startswith(exp) if len(exp) <= len(head) else False


# --------------------------------------------------------------------------------------------
# output


def kv(value: Any) -> str:
    """A value for `key=value`: bare when it is one token, JSON-quoted otherwise."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if text == "" or re.search(r"[\s\"'=\\]", text):
        return json.dumps(text)
    return text


def error_line(code: str, **details: Any) -> str:
    parts = [f"{PREFIX}[error] {code}"]
    parts += [f"{k}={kv(v)}" for k, v in details.items() if v is not None]
    return " ".join(parts)


def info_line(**details: Any) -> str:
    return PREFIX + " " + " ".join(f"{k}={kv(v)}" for k, v in details.items() if v is not None)


def tail_file(path: Path | None, n: int = TAIL_LINES) -> list[str]:
    if path is None:
        return []
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=n)]
    except OSError:
        return []


def exit_code_for(code: str) -> int:
    from voicelane.status import BLOCKING_CODES

    if code == "cancelled":
        return EXIT_CANCELLED
    return EXIT_BLOCKED if code in BLOCKING_CODES else EXIT_ERROR


class LineLog:
    """Appends every line of a run to the log file (the operator's `LOG_PATH`)."""

    def __init__(self, path: Path, mode: str = "w"):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh: TextIO = open(path, mode, encoding="utf-8")

    def write(self, line: str) -> None:
        self.fh.write(line.rstrip("\n") + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


# --------------------------------------------------------------------------------------------
# the lane command from the environment


def _env(env: Mapping[str, str], name: str) -> str | None:
    v = env.get(name)
    return v.strip() if v is not None and v.strip() != "" else None


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


# RunSpec field <- environment variable (TRAIN_NO_ONNX is the one inverted flag)
ENV_FIELDS: dict[str, str] = {
    "job_type": "TRAIN_LANE",
    "data": "AUDIO_PATH",
    "profile_id": "VOICE_PROFILE_ID",
    "out": "OUT_DIR",
    "preset": "TRAIN_PRESET",
    "base": "BASE_WEIGHTS_ID",
    "accept_license_risk": "TRAIN_ACCEPT_LICENSE_RISK",
    "consent_statement": "CONSENT_STATEMENT",
    "speaker_name": "SPEAKER_NAME",
    "heldout": "HELDOUT_PATH",
    "language": "TRAIN_LANGUAGE",
    "seed": "TRAIN_SEED",
    "steps": "TRAIN_STEPS",
    "display_name": "TRAIN_DISPLAY_NAME",
    "min_minutes": "TRAIN_MIN_MINUTES",
    "gates": "TRAIN_GATES",
    "eval_max": "TRAIN_EVAL_MAX",
    "status_path": "TRAIN_STATUS_PATH",
    "threads": "TRAIN_THREADS",
    "onnx": "TRAIN_NO_ONNX",
    "snapshot_every": "TRAIN_SNAPSHOT_EVERY",
    "select_snapshot": "TRAIN_SELECT_SNAPSHOT",
    "finetune_scope": "TRAIN_FINETUNE_SCOPE",
    "device": "TRAIN_DEVICE",
    "nproc": "TRAIN_NPROC",
}
PATH_FIELDS = ("out", "consent_statement", "heldout", "status_path")
BOOL_FIELDS = ("accept_license_risk", "select_snapshot")


def _abs_path(raw: str, cwd: Path) -> Path:
    return Path(raw) if Path(raw).is_absolute() else (cwd / raw).resolve()


def _gates_of(raw: str) -> dict[str, Any]:
    try:
        gates = json.loads(raw)
        if not isinstance(gates, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise VoicelaneError(
            "invalid_argument", f"TRAIN_GATES is not a JSON object: {exc}", {"variable": "TRAIN_GATES"}
        ) from None
    return gates


def _data_of(env: Mapping[str, str], cwd: Path) -> Path:
    raw = _env(env, "AUDIO_PATH")
    if raw is None:
        raise VoicelaneError("missing_audio_path", "AUDIO_PATH is not set", {"audio_path": None})
    data = _abs_path(raw, cwd)
    if not data.exists():
        raise VoicelaneError("missing_audio_path", f"AUDIO_PATH {raw} does not exist", {"audio_path": str(data)})
    return data


def _check_choice(env: Mapping[str, str], name: str, value: str, allowed: Iterable[str]) -> None:
    if value not in allowed:
        raise VoicelaneError(
            "invalid_argument",
            f"{name}={value!r} is not allowed; use one of " + ", ".join(allowed),
            {"variable": name, "value": value},
        )


def run_spec_from_env(env: Mapping[str, str], cwd: Path | None = None) -> RunSpec:
    """The run from TRAIN_LANE, AUDIO_PATH, VOICE_PROFILE_ID, BASE_WEIGHTS_ID, OUT_DIR, ... (ENV_FIELDS),
    then TRAIN_EXTRA_ARGS (``train`` flags, split like a shell, never run by one).

    Raises ``invalid_argument`` for a malformed value (naming the variable) and ``missing_audio_path``
    when the dataset input is unset or does not exist."""
    cwd = cwd or Path.cwd()
    _check_choice(env, "TRAIN_LANE", _env(env, "TRAIN_LANE") or "tts_prod_train", LANES)
    _check_choice(env, "TRAIN_PRESET", _env(env, "TRAIN_PRESET") or "cpu", PRESETS)
    values: dict[str, Any] = {f: v for f, name in ENV_FIELDS.items() if (v := _env(env, name)) is not None}
    values["profile_id"] = values.get("profile_id") or "prod_voice"
    from voicelane.bundle import validate_profile_id

    validate_profile_id(values["profile_id"])
    values["data"] = _data_of(env, cwd)
    for f in PATH_FIELDS:
        if f in values:
            values[f] = _abs_path(values[f], cwd)
    values.setdefault("out", REPO_ROOT / "runs" / values["profile_id"])
    if "consent_statement" not in values and values["data"].is_dir() and (values["data"] / "CONSENT.txt").is_file():
        values["consent_statement"] = values["data"] / "CONSENT.txt"
    if "gates" in values:
        values["gates"] = _gates_of(values["gates"])
    values["onnx"] = not _truthy(values.get("onnx"))
    for f in BOOL_FIELDS:
        values[f] = _truthy(values.get(f))
    values.setdefault("threads", default_threads(env))
    try:
        spec = RunSpec.build(**values)
    except VoicelaneError as err:
        field_name = (err.details.get("issues") or [{}])[0].get("field", "")
        raise VoicelaneError(
            "invalid_argument",
            f"{ENV_FIELDS.get(field_name, field_name)}: {err.message}",
            dict(err.details, variable=ENV_FIELDS.get(field_name)),
        ) from None
    return with_cli_overrides(spec, shlex.split(_env(env, "TRAIN_EXTRA_ARGS") or ""))


def status_name(spec: RunSpec) -> str:
    return f"train_status.{spec.job_type}.json"


def bundle_dir_of(out: Path, profile: str) -> Path:
    from voicelane.bundle import bundle_dir_for

    return bundle_dir_for(out, profile)


def print_lines(lines: Iterable[str], stream: TextIO) -> None:
    for line in lines:
        print(line, file=stream)
    stream.flush()

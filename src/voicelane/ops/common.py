"""Shared pieces of the operations layer: checkout head, log tails, the `[tts-prod]` line format,
and the lane command built from the orchestrator's environment variables."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, TextIO

from voicelane.errors import VoicelaneError
from voicelane.ops import codes  # noqa: F401  (registers the ops error codes)

REPO_ROOT = Path(__file__).resolve().parents[3]
PREFIX = "[tts-prod]"
TAIL_LINES = 120
TRAIN_LANES = ("tts_prod_train", "tts_voice_train", "train", "dataset")
PRESETS = ("tiny", "cpu", "gpu")
EXIT_OK, EXIT_ERROR, EXIT_BLOCKED, EXIT_CANCELLED = 0, 1, 2, 130


# --------------------------------------------------------------------------------------------
# checkout


def git_head(root: Path = REPO_ROOT) -> str | None:
    """The full sha of the checkout, or None when it is not a git checkout (e.g. in an image)."""
    env_head = os.environ.get("VOICELANE_BUILD_COMMIT")  # baked into the Docker image at build time
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
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


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    v = _env(env, name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise VoicelaneError("invalid_argument", f"{name} must be an integer, got {v!r}", {"variable": name}) from None


def _float_env(env: Mapping[str, str], name: str) -> float | None:
    v = _env(env, name)
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        raise VoicelaneError("invalid_argument", f"{name} must be a number, got {v!r}", {"variable": name}) from None


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class LaneConfig:
    """What one production run needs, read from the operator's environment variables."""

    lane: str
    data: Path
    out: Path
    profile: str
    base: str | None = None
    consent: Path | None = None
    preset: str = "cpu"
    steps: int | None = None
    heldout: Path | None = None
    min_minutes: float | None = None
    eval_max: int | None = None
    gates: str | None = None
    no_onnx: bool = False
    threads: int | None = None
    speaker_name: str | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def status_name(self) -> str:
        return f"train_status.{self.lane}.json"

    def cli_args(self, data: str | None = None, out: str | None = None, consent: str | None = None,
                 heldout: str | None = None) -> list[str]:
        """Arguments after `python -m voicelane` (paths can be remapped, e.g. inside a container)."""
        data = data or str(self.data)
        out = out or str(self.out)
        if self.lane == "dataset":
            args = ["dataset", "prepare", "--data", data, "--profile", self.profile, "--out", out]
            if self.min_minutes is not None:
                args += ["--min-minutes", repr(self.min_minutes)]
            return args + list(self.extra)
        args = ["train", "--lane", self.lane, "--data", data, "--profile", self.profile, "--out", out,
                "--preset", self.preset, "--protocol"]
        if self.base:
            args += ["--base", self.base]
        if self.consent is not None:
            args += ["--consent-statement", consent or str(self.consent)]
        if self.speaker_name:
            args += ["--speaker-name", self.speaker_name]
        if self.heldout is not None:
            args += ["--heldout", heldout or str(self.heldout)]
        if self.steps is not None:
            args += ["--steps", str(self.steps)]
        if self.min_minutes is not None:
            args += ["--min-minutes", repr(self.min_minutes)]
        if self.eval_max is not None:
            args += ["--eval-max", str(self.eval_max)]
        if self.gates is not None:
            args += ["--gates", self.gates]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        if self.no_onnx:
            args.append("--no-onnx")
        return args + list(self.extra)


def lane_config_from_env(env: Mapping[str, str], data: Path | None = None, out: Path | None = None,
                         cwd: Path | None = None) -> LaneConfig:
    """Build the run from TRAIN_LANE, AUDIO_PATH, VOICE_PROFILE_ID, BASE_WEIGHTS_ID, OUT_DIR, ...

    Raises ``invalid_argument`` for a malformed value and ``missing_audio_path`` when the
    dataset input is unset or does not exist."""
    cwd = cwd or Path.cwd()
    lane = _env(env, "TRAIN_LANE") or "tts_prod_train"
    if lane not in TRAIN_LANES:
        raise VoicelaneError("invalid_argument", f"TRAIN_LANE={lane!r} is not a lane; use one of "
                             + ", ".join(TRAIN_LANES), {"variable": "TRAIN_LANE", "value": lane})
    profile = _env(env, "VOICE_PROFILE_ID") or "prod_voice"
    from voicelane.bundle import validate_profile_id

    validate_profile_id(profile)
    preset = _env(env, "TRAIN_PRESET") or "cpu"
    if preset not in PRESETS:
        raise VoicelaneError("invalid_argument", f"TRAIN_PRESET={preset!r}; use one of " + ", ".join(PRESETS),
                             {"variable": "TRAIN_PRESET", "value": preset})
    if data is None:
        raw = _env(env, "AUDIO_PATH")
        if raw is None:
            raise VoicelaneError("missing_audio_path", "AUDIO_PATH is not set", {"audio_path": None})
        data = (cwd / raw).resolve() if not Path(raw).is_absolute() else Path(raw)
        if not data.exists():
            raise VoicelaneError("missing_audio_path", f"AUDIO_PATH {raw} does not exist", {"audio_path": str(data)})
    if out is None:
        raw_out = _env(env, "OUT_DIR")
        out = Path(raw_out) if raw_out else REPO_ROOT / "runs" / profile
        out = out if out.is_absolute() else (cwd / out).resolve()
    consent = None
    raw_consent = _env(env, "CONSENT_STATEMENT")
    if raw_consent:
        consent = Path(raw_consent) if Path(raw_consent).is_absolute() else (cwd / raw_consent).resolve()
    elif data.is_dir() and (data / "CONSENT.txt").is_file():
        consent = data / "CONSENT.txt"
    heldout = None
    if raw_h := _env(env, "HELDOUT_PATH"):
        heldout = Path(raw_h) if Path(raw_h).is_absolute() else (cwd / raw_h).resolve()
    gates = _env(env, "TRAIN_GATES")
    if gates is not None:
        try:
            if not isinstance(json.loads(gates), dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise VoicelaneError("invalid_argument", f"TRAIN_GATES is not a JSON object: {exc}",
                                 {"variable": "TRAIN_GATES"}) from None
    extra = shlex.split(_env(env, "TRAIN_EXTRA_ARGS") or "")
    return LaneConfig(
        lane=lane, data=data, out=out, profile=profile, base=_env(env, "BASE_WEIGHTS_ID"), consent=consent,
        preset=preset, steps=_int_env(env, "TRAIN_STEPS"), heldout=heldout,
        min_minutes=_float_env(env, "TRAIN_MIN_MINUTES"), eval_max=_int_env(env, "TRAIN_EVAL_MAX"),
        gates=gates, no_onnx=_truthy(env.get("TRAIN_NO_ONNX")), threads=_int_env(env, "TRAIN_THREADS"),
        speaker_name=_env(env, "SPEAKER_NAME"), extra=extra,
    )


def bundle_dir_of(out: Path, profile: str) -> Path:
    from voicelane.bundle import bundle_dir_for

    return bundle_dir_for(out, profile)


def read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def print_lines(lines: Iterable[str], stream: TextIO) -> None:
    for line in lines:
        print(line, file=stream)
    stream.flush()

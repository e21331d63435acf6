"""The Docker lane (SPEC §10): ``docker/voice-train-prod/``.

Two halves:

* the container entrypoint (``python -m voicelane.ops.docker_lane entrypoint``, started by
  ``docker/voice-train-prod/entrypoint.sh``): reads the same environment variables as the
  orchestrator (paths default to the container's mounts ``/data`` and ``/out``), runs the lane,
  passes its protocol lines through to stdout, logs everything to ``LOG_PATH`` and always ends
  with the report block, then exits with the lane's exit code::

      === DOCKER PROD TRAIN REPORT ===
      outcome=success|failed
      exit_code=<the lane's real exit code>
      train_status_path=/out/train_status.<lane>.json
      log_path=/out/train.log
      train_status_present=true|false
      error_code=<the status' error code>          (failures only)
      bundle_path=/out/bundles/<id>/voice_bundle   (when one exists)
      --- log tail (last 120 lines) ---
      ...
      === END DOCKER PROD TRAIN REPORT ===

* ``DockerLane`` for the orchestrator's ``TRAIN_BACKEND=local_docker``: ``docker build`` (failure,
  including an unreachable engine -> ``docker_build_failed`` with docker's own words), then
  ``docker run`` with the dataset mounted read-only and the output folder mounted writable, as
  the calling user; a run that ends without the report block -> ``docker_run_failed``.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from voicelane.errors import VoicelaneError
from voicelane.ops.common import ENV_FIELDS, PATH_FIELDS, TAIL_LINES, LineLog, read_json, run_spec_from_env, tail_file
from voicelane.paths import REPO_ROOT
from voicelane.runspec import SPEC_FILE, RunSpec, child_argv, with_cli_overrides

REPORT_BEGIN = "=== DOCKER PROD TRAIN REPORT ==="
REPORT_END = "=== END DOCKER PROD TRAIN REPORT ==="
TAIL_MARK = "--- log tail"
DOCKER_DIR = REPO_ROOT / "docker" / "voice-train-prod"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
CONTAINER_DATA, CONTAINER_OUT, CONTAINER_CONSENT, CONTAINER_HELDOUT = "/data", "/out", "/consent", "/heldout"
# variables forwarded into the container (paths are remapped to the mounts)
FORWARD = (
    *(name for f, name in ENV_FIELDS.items() if f not in ("data", *PATH_FIELDS)),
    "TRAIN_EXTRA_ARGS",
    "SOURCE_DATE_EPOCH",
)


# --------------------------------------------------------------------------------------------
# the report block


def format_report(exit_code: int, status_path: Path, log_path: Path, tail: list[str]) -> list[str]:
    status = read_json(status_path)
    present = status is not None
    ok = exit_code == 0 and present and status.get("state") == "completed"
    lines = [
        REPORT_BEGIN,
        f"outcome={'success' if ok else 'failed'}",
        f"exit_code={exit_code}",
        f"train_status_path={status_path}",
        f"log_path={log_path}",
        f"train_status_present={'true' if present else 'false'}",
    ]
    if status and isinstance(status.get("error"), dict):
        lines.append(f"error_code={status['error'].get('code')}")
    if status and status.get("bundle"):
        lines.append(f"bundle_path={status['bundle']}")
    lines.append(f"{TAIL_MARK} (last {len(tail)} lines) ---")
    lines += tail
    lines.append(REPORT_END)
    return lines


def parse_report(lines: Iterable[str]) -> dict[str, str] | None:
    """The key=value fields of the last report block in ``lines`` (None when there is none)."""
    found: dict[str, str] | None = None
    cur: dict[str, str] | None = None
    for line in lines:
        if line == REPORT_BEGIN:
            cur = {}
            continue
        if cur is None:
            continue
        if line.startswith(TAIL_MARK) or line == REPORT_END:
            found, cur = cur, None
            continue
        key, sep, val = line.partition("=")
        if sep:
            cur[key] = val
    return found


# --------------------------------------------------------------------------------------------
# the container entrypoint


def entrypoint_main(args: list[str], env: Mapping[str, str] | None = None) -> int:
    from voicelane.runner import LocalRunner, forward_signals

    env = dict(os.environ if env is None else env)
    env.setdefault("AUDIO_PATH", CONTAINER_DATA)
    env.setdefault("OUT_DIR", CONTAINER_OUT)
    lane = (env.get("TRAIN_LANE") or "tts_prod_train").strip() or "tts_prod_train"
    out_dir = Path(env["OUT_DIR"])
    status_path = Path(env.get("TRAIN_STATUS_PATH") or out_dir / f"train_status.{lane}.json")
    log_path = Path(env.get("LOG_PATH") or out_dir / "train.log")
    marker = env.get("VOICELANE_REPORT_MARKER")
    rc = 1
    try:
        log = LineLog(log_path)
    except OSError as exc:
        print(f"[voicelane-docker] cannot open the log {log_path}: {exc}", file=sys.stderr, flush=True)
        log = None
    try:
        spec = with_cli_overrides(run_spec_from_env(env), list(args)).updated(status_path=status_path)
        argv = child_argv(spec.write(spec.out / SPEC_FILE))
        child_env = dict(env, TRAIN_STATUS_PATH=str(status_path), PYTHONUNBUFFERED="1")
        status_path.parent.mkdir(parents=True, exist_ok=True)
        if log:
            log.write("[voicelane-docker] run: " + " ".join(argv[1:]))
        handle = LocalRunner().start(argv, child_env, None)

        forward_signals(handle)
        for stream, line in handle.lines():
            if log:
                log.write(line)
            print(line, file=sys.stdout if stream == "stdout" else sys.stderr, flush=True)
        rc = handle.wait()
        rc = 1 if rc is None else (128 - rc if rc < 0 else rc)
    except VoicelaneError as err:
        # refused before the lane could start (e.g. no dataset mounted): fail closed like the lane
        from voicelane.ops.common import exit_code_for
        from voicelane.runspec import LANES
        from voicelane.status import finalize

        msg = f"error: {err.code}: {err.message}"
        print(msg, file=sys.stderr, flush=True)
        if log:
            log.write(msg)
        try:
            finalize(status_path, err, job_type=lane if lane in LANES else "tts_prod_train", fresh=True)
        except OSError:
            pass
        rc = exit_code_for(err.code)
    finally:
        if log:
            log.close()
    for line in format_report(rc, status_path, log_path, tail_file(log_path, TAIL_LINES)):
        print(line, flush=True)
    if marker:
        try:
            Path(marker).write_text(str(rc), "utf-8")
        except OSError:
            pass
    return rc


# --------------------------------------------------------------------------------------------
# the orchestrator side


class DockerHandle:
    """Wraps the ``docker run`` process: lines pass through, the report block is picked up."""

    def __init__(self, inner):
        self.inner = inner
        self.pid = inner.pid
        self.report: dict[str, str] | None = None
        self._stdout: deque[str] = deque(maxlen=4 * TAIL_LINES + 64)
        self._stderr: deque[str] = deque(maxlen=50)

    def lines(self) -> Iterator[tuple[str, str]]:
        for stream, line in self.inner.lines():
            (self._stdout if stream == "stdout" else self._stderr).append(line)
            yield stream, line
        self.report = parse_report(self._stdout)

    def wait(self, timeout: float | None = None) -> int | None:
        return self.inner.wait(timeout)

    def terminate(self, grace_s: float = 10.0) -> None:
        self.inner.terminate(grace_s)

    def last_stderr(self) -> str:
        for line in reversed(self._stderr):
            if line.strip():
                return line.strip()[:500]
        return ""


class DockerLane:
    def __init__(self, env: Mapping[str, str], head: str | None, say: Callable[[str], None]):
        self.env = dict(env)
        self.head = head
        self.say = say
        self.docker = self.env.get("DOCKER") or "docker"

    def _client(self) -> str:
        path = shutil.which(self.docker)
        if not path:
            raise VoicelaneError(
                "docker_build_failed",
                f"the docker client {self.docker!r} is not installed",
                {"docker": self.docker, "docker_error": "docker client not found"},
            )
        return path

    def image(self) -> str:
        return self.env.get("DOCKER_IMAGE") or f"voicelane-train-prod:{(self.head or 'dev')[:8]}"

    def build_argv(self, image: str) -> list[str]:
        argv = [
            self.docker,
            "build",
            "-f",
            str(DOCKERFILE),
            "-t",
            image,
            "--build-arg",
            f"VOICELANE_BUILD_COMMIT={self.head or 'unknown'}",
        ]
        if base := self.env.get("DOCKER_BASE_IMAGE"):
            argv += ["--build-arg", f"BASE_IMAGE={base}"]
        if idx := self.env.get("DOCKER_TORCH_INDEX_URL"):
            argv += ["--build-arg", f"TORCH_INDEX_URL={idx}"]
        return argv + [str(REPO_ROOT)]

    def build(self) -> str:
        from voicelane.ops.common import info_line
        from voicelane.runner import LocalRunner

        self._client()
        image = self.image()
        if (self.env.get("DOCKER_SKIP_BUILD") or "").lower() in ("1", "true", "yes"):
            self.say(info_line(docker_image=image, build="skipped"))
            return image
        self.say(info_line(docker_build=image))
        handle = DockerHandle(LocalRunner().start(self.build_argv(image), dict(os.environ), REPO_ROOT))
        for _stream, line in handle.lines():
            self.say("[docker build] " + line)
        rc = handle.wait()
        if rc != 0:
            raise VoicelaneError(
                "docker_build_failed",
                f"docker build exited with {rc}",
                {"exit_code": rc, "image": image, "docker_error": handle.last_stderr()},
            )
        return image

    def run_argv(self, image: str, cfg: RunSpec) -> list[str]:
        name = f"voicelane-train-{uuid.uuid4().hex[:8]}"
        argv = [
            self.docker,
            "run",
            "--rm",
            "--name",
            name,
            "--user",
            f"{os.getuid()}:{os.getgid()}",
            "-v",
            f"{cfg.data}:{CONTAINER_DATA}:ro",
            "-v",
            f"{cfg.out}:{CONTAINER_OUT}",
            "-e",
            f"AUDIO_PATH={CONTAINER_DATA}",
            "-e",
            f"OUT_DIR={CONTAINER_OUT}",
        ]
        if cfg.consent_statement is not None:
            target = f"{CONTAINER_CONSENT}/{cfg.consent_statement.name}"
            argv += ["-v", f"{cfg.consent_statement}:{target}:ro", "-e", f"CONSENT_STATEMENT={target}"]
        if cfg.heldout is not None:
            argv += ["-v", f"{cfg.heldout}:{CONTAINER_HELDOUT}:ro", "-e", f"HELDOUT_PATH={CONTAINER_HELDOUT}"]
        for name_ in FORWARD:
            if self.env.get(name_):
                argv += ["-e", f"{name_}={self.env[name_]}"]
        if gpus := self.env.get("DOCKER_GPUS"):
            argv += ["--gpus", gpus]
        return argv + [image]

    def run(self, image: str, cfg: RunSpec) -> DockerHandle:
        from voicelane.ops.common import info_line
        from voicelane.runner import LocalRunner

        cfg.out.mkdir(parents=True, exist_ok=True)
        self.say(info_line(docker_run=image))
        return DockerHandle(LocalRunner().start(self.run_argv(image, cfg), dict(os.environ), REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "entrypoint":
        return entrypoint_main(argv[1:])
    print("usage: python -m voicelane.ops.docker_lane entrypoint [extra lane args...]", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

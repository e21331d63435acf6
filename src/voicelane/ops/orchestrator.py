"""The one-command production orchestrator (SPEC §10): ``scripts/voice/train_production_voice.sh``
execs ``python -m voicelane.ops.orchestrator``; all logic lives here.

Environment (all optional except AUDIO_PATH):

    TRAIN_BACKEND      local (default) | local_docker | managed_job
    AUDIO_PATH         dataset input (folder or long recording)          -> missing_audio_path
    EXPECTED_HEAD      refuse unless the checkout's HEAD starts with it   -> deterministic_head_mismatch
    TRAIN_LANE         tts_prod_train (default) | tts_voice_train | train | dataset
    VOICE_PROFILE_ID   default prod_voice
    BASE_WEIGHTS_ID    allowlisted base weights id (fine-tuning)
    LOG_PATH           default artifacts/logs/train_production_voice.<lane>.log
    OUT_DIR            default runs/<VOICE_PROFILE_ID>
    TRAIN_STATUS_PATH  default artifacts/train_status.<lane>.json
    CONSENT_STATEMENT  default AUDIO_PATH/CONSENT.txt when present
    TRAIN_PRESET, TRAIN_STEPS, TRAIN_MIN_MINUTES, TRAIN_EVAL_MAX, TRAIN_GATES (JSON), TRAIN_NO_ONNX,
    TRAIN_THREADS, HELDOUT_PATH, SPEAKER_NAME, TRAIN_SEED, TRAIN_LANGUAGE, TRAIN_DISPLAY_NAME,
    TRAIN_ACCEPT_LICENSE_RISK, TRAIN_DEVICE, TRAIN_NPROC, TRAIN_FINETUNE_SCOPE, TRAIN_SNAPSHOT_EVERY,
    TRAIN_SELECT_SNAPSHOT (every RunSpec field: ops/common.py ENV_FIELDS), then TRAIN_EXTRA_ARGS
    (`train` flags, split like a shell, never run by one)
    local_docker:  DOCKER (client, default docker), DOCKER_IMAGE, DOCKER_SKIP_BUILD, DOCKER_BASE_IMAGE,
                   DOCKER_TORCH_INDEX_URL, DOCKER_GPUS
    managed_job:   RAY_ADDRESS (default http://127.0.0.1:8265), VOICELANE_RAY_TRANSFER auto|shared|upload
    publishing:    VOICE_PUBLISH (default 1: a successful tts_prod_train run is published into the voice
                   registry), VOICELANE_REGISTRY_DIR (default VOICELANE_DATA_DIR, else <repo>/var: what
                   `voicelane serve` started in the repository reads)
    old names:     IMAGE_TAG (= DOCKER_IMAGE, or its tag), WEIGHTS_MANIFEST_PATH (a weights_manifest.json:
                   allowlist + licence gate with allowlist_rejected / license_noncommercial /
                   license_unknown; its id becomes BASE_WEIGHTS_ID when unset). AUDIO_PATH has no default:
                   unset -> missing_audio_path (the demo corpus is AUDIO_PATH=corpora/kal).

Output (stdout): ``[tts-prod] head=<sha8>`` first; progress lines; on success
``[tts-prod] status=done backend=<backend> served=<profile> version=<n>`` last (exit 0; ``served=``
names the profile the registry serves now, absent when nothing was published). On failure the last 120 log lines, then
``[tts-prod][error] <code> key=value ...`` and ``[tts-prod] next: <unblock action>``; the exit code is
the lane's own (1 error, 2 blocked, 130 cancelled) or 1/2 for the orchestrator's own refusals.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping, TextIO

from voicelane.errors import VoicelaneError, reported_code
from voicelane.ops.common import (
    PREFIX,
    LineLog,
    error_line,
    exit_code_for,
    git_head,
    head_matches,
    info_line,
    read_json,
    run_spec_from_env,
    status_name,
    tail_file,
)
from voicelane.paths import REPO_ROOT
from voicelane.protocol import JobView, parse_line
from voicelane.runspec import LANES, SPEC_FILE, RunSpec, child_argv
from voicelane.status import finalize

BACKENDS = ("local", "local_docker", "managed_job")


class LaneFailed(VoicelaneError):
    """The lane ran and failed: its own status JSON names the code, its exit code is kept."""

    def __init__(self, code: str, message: str, details: dict[str, Any], exit_code: int):
        super().__init__(code if code in _known_codes() else "internal_error", message, details)
        self.exit_code = exit_code


def _known_codes() -> set[str]:
    from voicelane.errors import NEXT_ACTIONS

    return set(NEXT_ACTIONS)


class Orchestrator:
    def __init__(self, env: Mapping[str, str], out: TextIO, cwd: Path | None = None):
        self.env = legacy_env(env)
        self.out = out
        self.cwd = cwd or Path.cwd()
        self.backend = (self.env.get("TRAIN_BACKEND") or "local").strip()
        self.lane = (self.env.get("TRAIN_LANE") or "tts_prod_train").strip() or "tts_prod_train"
        self.log_path = self._path(
            "LOG_PATH", REPO_ROOT / "artifacts" / "logs" / f"train_production_voice.{_safe(self.lane)}.log"
        )
        self.status_path = self._path(
            "TRAIN_STATUS_PATH", REPO_ROOT / "artifacts" / f"train_status.{_safe(self.lane)}.json"
        )
        self.log: LineLog | None = None
        self.head = git_head()

    def _path(self, name: str, default: Path) -> Path:
        raw = (self.env.get(name) or "").strip()
        if not raw:
            return default
        p = Path(raw)
        return p if p.is_absolute() else (self.cwd / p).resolve()

    # --- output ---------------------------------------------------------------------------
    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)
        if self.log is not None:
            self.log.write(line)

    # --- the run ----------------------------------------------------------------------------
    def run(self) -> int:
        sha8 = self.head[:8] if self.head else "unknown"
        try:
            self.log = LineLog(self.log_path)
        except OSError as exc:
            print(f"{PREFIX} head={sha8}", file=self.out, flush=True)
            print(error_line("invalid_argument", log_path=str(self.log_path), error=str(exc)), file=self.out)
            return 1
        self.log.write(f"{PREFIX} ---- new run backend={self.backend} lane={self.lane}")
        self.say(f"{PREFIX} head={sha8}")
        try:
            expected = (self.env.get("EXPECTED_HEAD") or "").strip()
            if expected and not head_matches(self.head, expected):
                raise VoicelaneError(
                    "deterministic_head_mismatch",
                    f"the checkout is at {sha8}, EXPECTED_HEAD is {expected}",
                    {"expected": expected, "actual": sha8},
                )
            if self.backend not in BACKENDS:
                raise VoicelaneError(
                    "invalid_backend",
                    f"TRAIN_BACKEND={self.backend!r} is not a backend",
                    {"backend": self.backend, "allowed": ",".join(BACKENDS)},
                )
            self.check_weights_manifest()
            cfg = run_spec_from_env(self.env, cwd=self.cwd).updated(status_path=self.status_path)
            self.say(
                info_line(
                    backend=self.backend,
                    lane=cfg.job_type,
                    profile=cfg.profile_id,
                    audio_path=str(cfg.data),
                    out=str(cfg.out),
                    log=str(self.log_path),
                )
            )
            if self.backend == "local":
                result = self.run_local(cfg)
            elif self.backend == "local_docker":
                result = self.run_docker(cfg)
            else:
                result = self.run_managed(cfg)
            self.finish_ok(cfg, result)
            return 0
        except LaneFailed as err:
            return self.fail(err, err.exit_code, write_status=False)
        except VoicelaneError as err:
            return self.fail(err, exit_code_for(err.code), write_status=True)
        except KeyboardInterrupt:
            lane_doc = read_json(self.status_path)  # the lane records `cancelled` itself when it ran
            return self.fail(
                VoicelaneError("cancelled", "interrupted", {"exit_code": 130}),
                130,
                write_status=not (lane_doc and lane_doc.get("state") == "cancelled"),
            )
        except Exception as exc:  # noqa: BLE001 - an operator gets a code, never a bare traceback
            import traceback

            if self.log is not None:
                for line in traceback.format_exc().splitlines():
                    self.log.write(line)
            err = VoicelaneError("internal_error", f"{type(exc).__name__}: {exc}", {"error": type(exc).__name__})
            return self.fail(err, 1, write_status=True)
        finally:
            if self.log is not None:
                self.log.close()
                self.log = None

    def fail(self, err: VoicelaneError, code: int, write_status: bool) -> int:
        if write_status:  # fail closed: a refused run still leaves a train_status/1 saying why
            try:
                finalize(
                    self.status_path,
                    err,
                    job_type=self.lane if self.lane in LANES else "tts_prod_train",
                    fresh=True,
                    orchestrator={"backend": self.backend, "head": self.head},
                )
            except OSError:
                pass
        tail = tail_file(self.log_path)
        print(f"{PREFIX} log tail (last {len(tail)} lines of {self.log_path}):", file=self.out)
        for line in tail:
            print(line, file=self.out)
        details = {k: v for k, v in err.details.items() if not isinstance(v, (dict, list))}
        details.setdefault("backend", self.backend)
        line = error_line(err.code, **details)
        self.say(line)
        self.say(f"{PREFIX} next: {err.next_action}")
        return code if code else 1

    # --- shared by the backends -----------------------------------------------------------------
    def drive(self, handle) -> tuple[int, JobView]:
        """Stream a run's lines into the log and through the one parser; returns (exit code, view)."""
        view = JobView()
        try:
            for stream, line in handle.lines():
                assert self.log is not None
                self.log.write(line)
                if stream != "stdout":
                    continue
                ev = parse_line(line)
                view.apply(ev)
                if ev.kind == "PROGRESS":
                    print(f"{PREFIX} progress={ev.current}/{ev.total}", file=self.out, flush=True)
                elif ev.kind == "STATS" and ev.stats and "phase" in ev.stats:
                    print(f"{PREFIX} phase={ev.stats['phase']}", file=self.out, flush=True)
                elif ev.kind == "ARTIFACT":
                    print(f"{PREFIX} artifact={ev.path}", file=self.out, flush=True)
        except KeyboardInterrupt:
            handle.terminate(10.0)
            raise
        rc = handle.wait()
        return (1 if rc is None else rc), view

    def lane_failure(self, rc: int, status: dict[str, Any] | None, **extra: Any) -> LaneFailed:
        if status and isinstance(status.get("error"), dict):
            e = status["error"]
            details = {
                "exit_code": rc,
                "train_status": str(self.status_path),
                "message": str(e.get("message") or "")[:300] or None,
                **extra,
            }
            return LaneFailed(str(e.get("code") or "internal_error"), str(e.get("message") or ""), details, rc)
        reported = reported_code(tail_file(self.log_path)) if rc not in (130, -2, -15) else None
        if reported is not None:  # it said why on stderr before it could write a status
            return LaneFailed(reported[0], reported[1], {"exit_code": rc, **extra}, rc if rc > 0 else 1)
        code = "cancelled" if rc in (130, -2, -15) else "internal_error"
        return LaneFailed(
            code, f"the lane exited with {rc} without a status", {"exit_code": rc, **extra}, rc if rc > 0 else 1
        )

    def check_result(self, cfg: RunSpec, rc: int, **extra: Any) -> dict[str, Any]:
        status = read_json(self.status_path)
        if rc != 0:
            raise self.lane_failure(rc, status, **extra)
        if not status or status.get("state") != "completed":
            raise LaneFailed(
                "internal_error",
                "the lane exited 0 but its status is not completed",
                {"train_status": str(self.status_path), "state": (status or {}).get("state")},
                1,
            )
        result: dict[str, Any] = {"status": status}
        if cfg.job_type == "dataset":
            return result
        from voicelane.bundle import validate_voice_bundle
        from voicelane.ops.common import bundle_dir_of

        bdir = bundle_dir_of(cfg.out, cfg.profile_id)
        res = validate_voice_bundle(bdir)
        if not res.ok:
            err = res.error or {}
            raise VoicelaneError(
                "bundle_invalid",
                "the bundle does not validate here: " + str(err.get("message")),
                {"bundle": str(bdir), "validator_code": err.get("code")},
            )
        result.update(bundle=str(bdir), files_validated=res.files_validated)
        return result

    def finish_ok(self, cfg: RunSpec, result: dict[str, Any]) -> None:
        if result.get("bundle"):
            self.say(info_line(bundle=result["bundle"], files_validated=result.get("files_validated")))
        self.say(info_line(train_status=str(self.status_path), log=str(self.log_path)))
        pub = self.publish(cfg, result)
        served = f" served={pub.profile} version={pub.version}" if pub else ""
        self.say(f"{PREFIX} status=done backend={self.backend}{served}")

    def publish(self, cfg: RunSpec, result: dict[str, Any]):
        """A validated production bundle goes into the registry the service reads (VOICE_PUBLISH=0: not).
        The lane exits non-zero on a failed gate, so a failed gate never gets here; the registry
        re-checks the gates anyway."""
        from voicelane import registry

        if (
            cfg.job_type != "tts_prod_train"
            or not result.get("bundle")
            or (self.env.get("VOICE_PUBLISH") or "1").strip().lower() in ("0", "false", "no", "off")
        ):
            return None
        root = registry.default_root(self.env, cwd=self.cwd, fallback=REPO_ROOT / "var")
        pub = registry.publish(
            Path(result["bundle"]),
            root,
            cfg.profile_id,
            source={
                "bundle": result["bundle"],
                "train_status": str(self.status_path),
                "backend": self.backend,
                "head": self.head,
            },
        )
        self.say(info_line(published=pub.profile, version=pub.version, previous=pub.previous, registry=str(root)))
        return pub

    def check_weights_manifest(self) -> None:
        """The old WEIGHTS_MANIFEST_PATH: the weights it names must pass the allowlist and licence
        gate (old codes); they become BASE_WEIGHTS_ID when that is unset."""
        raw = (self.env.get("WEIGHTS_MANIFEST_PATH") or "").strip()
        if not raw:
            return
        from voicelane import weights

        path = Path(raw) if Path(raw).is_absolute() else (self.cwd / raw).resolve()
        gate = weights.check_weights_manifest(path)
        self.env.setdefault("BASE_WEIGHTS_ID", gate.weights_id)
        self.say(info_line(weights_manifest=str(path), weights_id=gate.weights_id, licence_gate="ok"))

    def lane_env(self) -> dict[str, str]:
        env = dict(self.env)
        env["TRAIN_STATUS_PATH"] = str(self.status_path)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("PYTHONIOENCODING", "utf-8")
        return env

    # --- backends ----------------------------------------------------------------------------
    def run_local(self, cfg: RunSpec) -> dict[str, Any]:
        from voicelane.runner import LocalRunner

        argv = child_argv(cfg.write(cfg.out / SPEC_FILE))
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        handle = LocalRunner().start(argv, self.lane_env(), self.cwd)
        rc, _view = self.drive(handle)
        return self.check_result(cfg, rc)

    def run_docker(self, cfg: RunSpec) -> dict[str, Any]:
        from voicelane.ops import docker_lane

        dk = docker_lane.DockerLane(self.env, self.head, self.say)
        image = dk.build()
        handle = dk.run(image, cfg)
        rc, _view = self.drive(handle)
        report = handle.report
        if report is None:
            raise VoicelaneError(
                "docker_run_failed",
                "the container ended without its report block",
                {"exit_code": rc, "image": image, "docker_error": handle.last_stderr()},
            )
        status_file = cfg.out / status_name(cfg)
        if report.get("train_status_present") == "true" and status_file.is_file():
            self.import_container_status(status_file, cfg.out, docker_lane.CONTAINER_OUT, image)
        elif rc != 0:
            raise VoicelaneError(
                "docker_run_failed",
                "the container failed before the lane wrote a status",
                {"exit_code": report.get("exit_code", rc), "image": image, "docker_error": handle.last_stderr()},
            )
        lane_rc = int(report.get("exit_code", rc)) if str(report.get("exit_code", "")).lstrip("-").isdigit() else rc
        return self.check_result(cfg, lane_rc, image=image)

    def import_container_status(self, status_file: Path, out: Path, container_out: str, image: str) -> None:
        """Copy the container's status to TRAIN_STATUS_PATH with its /out paths mapped to the host's."""
        from voicelane.fsutil import atomic_write_json

        doc = read_json(status_file)
        if doc is None:
            return
        for key in ("bundle", "dataset_manifest"):
            val = doc.get(key)
            if isinstance(val, str) and (val == container_out or val.startswith(container_out + "/")):
                doc[key] = str(out) + val[len(container_out) :]
        doc["docker"] = {"image": image, "container_status_path": str(status_file)}
        atomic_write_json(self.status_path, doc)

    def run_managed(self, cfg: RunSpec) -> dict[str, Any]:
        from voicelane.runner.ray import RayRunner

        runner = RayRunner.from_env(self.env)
        argv = child_argv(cfg.write(cfg.out / SPEC_FILE))
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        handle = runner.start(argv, self.lane_env(), self.cwd)
        self.say(info_line(ray_address=runner.address, ray_job_id=handle.job_id, transfer=handle.mode))
        rc, _view = self.drive(handle)
        self.say(info_line(ray_state=handle.ray_status, state=handle.state))
        return self.check_result(cfg, rc, ray_job_id=handle.job_id, ray_address=runner.address)


def legacy_env(env: Mapping[str, str]) -> dict[str, str]:
    """Old variable names keep working: IMAGE_TAG (the Docker image, or its tag) -> DOCKER_IMAGE."""
    out = dict(env)
    tag = (out.get("IMAGE_TAG") or "").strip()
    if tag and not (out.get("DOCKER_IMAGE") or "").strip():
        out["DOCKER_IMAGE"] = tag if ":" in tag or "/" in tag else f"voicelane-train-prod:{tag}"
    return out


def _safe(name: str) -> str:
    return "".join(c for c in name if c.isalnum() or c in "_-") or "lane"


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    import signal

    def on_term(signum, frame):  # SIGTERM like Ctrl-C: stop the run (lane, container or Ray job) cleanly
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return Orchestrator(os.environ if env is None else env, out or sys.stdout).run()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))

"""Managed jobs on Ray (SPEC §10, ``TRAIN_BACKEND=managed_job``; the service's ``VOICELANE_RUNNER=ray``).

``RayRunner`` has the runner shape of ``voicelane.runner``::

    runner = RayRunner()                         # or RayRunner.from_env(env)
    handle = runner.start(argv, env, cwd)        # argv: [python, "-m", "voicelane", "run", spec.json]
    for stream, line in handle.lines(): ...      # ("stdout"|"stderr", line); stdout = §3 protocol
    rc = handle.wait(timeout=None)               # the lane's exit code (None while running)
    handle.terminate(grace_s)                    # `ray job stop` -> the lane records `cancelled`
    handle.job_id, handle.ray_status, handle.state, handle.mode, handle.pid (None)

How a run travels:

* Submission: ``ray.job_submission.JobSubmissionClient(RAY_ADDRESS)`` (default
  ``http://127.0.0.1:8265``, the Ray dashboard's job API). Unreachable, or ray not installed ->
  ``VoicelaneError("managed_job_unavailable", details={"address": ...})``. The job's entrypoint is
  ``python -m voicelane.runner.ray_job <base64 payload>`` carrying the RunSpec as JSON
  (``VOICELANE_RAY_PYTHON`` names the cluster's python; the cluster must have voicelane installed
  at the same commit). It asks for
  ``VOICELANE_RAY_NUM_CPUS`` (default 1) and ``VOICELANE_RAY_NUM_GPUS`` (default 0).
* Dataset and output (``VOICELANE_RAY_TRANSFER``):
  ``shared`` - every path is passed as an absolute path the cluster sees too (same machine, or
  a shared filesystem mounted at the same path); the lane writes its bundle and status in place.
  ``upload`` - the dataset, consent statement and held-out set are copied into a staging folder
  uploaded as the job's ``working_dir``; the lane writes under it on the cluster, and
  ``ray_job`` ships the bundle, dataset manifest and status back through the job log (a
  checksummed tar.gz in base64 lines, ``VOICELANE_RAY_MAX_FETCH_MB``, default 512), which is
  validated, then swapped into the local ``out`` (never an invalid bundle) and the status path.
  ``auto`` (default) - ``shared`` for a loopback address, else ``upload``.
* Logs: streamed with ``tail_job_logs`` (polling ``get_job_logs`` as a fallback) and split into
  real lines by ``voicelane.protocol.iter_lines``; the lane's stdout lines come out as
  ``("stdout", line)`` for ``parse_line``/``JobView`` - PROGRESS/STATS/ARTIFACT reach the caller
  and the service's job record exactly as from a local child.
* States: ``RAY_STATE_MAP`` (PENDING/RUNNING -> running, SUCCEEDED -> completed, STOPPED ->
  cancelled, FAILED -> error, or blocked when the lane exited 2).
* Before ``wait`` reports success the bundle is validated here (``validate_voice_bundle``); an
  invalid or missing bundle turns the run into an error (status rewritten, exit 1).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import queue
import shlex
import shutil
import tarfile
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlparse

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_bytes, atomic_write_json, read_json, swap_dir
from voicelane.protocol import iter_lines
from voicelane.runner.ray_job import encode_spec
from voicelane.runspec import LANES, RunSpec
from voicelane.status import finalize

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
RAY_STATE_MAP = {
    "PENDING": "running",
    "RUNNING": "running",
    "SUCCEEDED": "completed",
    "STOPPED": "cancelled",
    "FAILED": "error",
}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
INPUT_FIELDS = {"data": "data", "consent_statement": "consent", "heldout": "heldout"}
FORWARD_ENV = ("SOURCE_DATE_EPOCH", "PYTHONIOENCODING", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SECRET_ENV = ("VOICELANE_API_TOKEN",)


def job_status(client, job_id: str) -> str:
    """The Ray job's status as a bare name (``JobStatus.RUNNING`` -> ``RUNNING``)."""
    return str(client.get_job_status(job_id)).split(".")[-1]


def map_ray_state(ray_status: str | None, exit_code: int | None = None) -> str:
    """Ray's job status -> the train_status/1 state."""
    state = RAY_STATE_MAP.get(str(ray_status or "").upper(), "error")
    if state == "error" and exit_code == 2:
        return "blocked"
    if state == "error" and exit_code == 130:
        return "cancelled"
    return state


def is_loopback(address: str) -> bool:
    host = urlparse(address if "://" in address else f"http://{address}").hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def cli_args_of(argv: list[str]) -> list[str]:
    """The arguments after ``python -m voicelane`` (or the ``voicelane`` script)."""
    for i, a in enumerate(argv):
        if a == "-m" and i + 1 < len(argv) and argv[i + 1] == "voicelane":
            return list(argv[i + 2 :])
    if argv and Path(argv[0]).name == "voicelane":
        return list(argv[1:])
    if argv and argv[0] in ("train", "dataset"):
        return list(argv)
    raise VoicelaneError(
        "invalid_argument", "a managed job runs `python -m voicelane ...` only", {"argv0": argv[0] if argv else None}
    )


def spec_of(args: list[str], cwd: Path) -> RunSpec | None:
    """The RunSpec of ``run spec.json``; None for any other command (e.g. ``dataset check``)."""
    if len(args) == 2 and args[0] == "run":
        return RunSpec.read(_abs(args[1], cwd))
    return None


def forwarded_env(env: Mapping[str, str]) -> dict[str, str]:
    """Only what the lane needs crosses to the cluster (never tokens or the caller's whole env)."""
    keep = {
        k: v
        for k, v in env.items()
        if (k.startswith("VOICELANE_") and not k.startswith("VOICELANE_RAY_") and k not in SECRET_ENV)
        or k in FORWARD_ENV
    }
    keep["PYTHONUNBUFFERED"] = "1"
    return keep


def _abs(p: str, cwd: Path) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else (cwd / path).resolve()


def _stage_input(src: Path, dst_dir: Path, name: str) -> str:
    """Copy one input into the upload folder; returns its path relative to the job's cwd."""
    if not src.exists():
        raise VoicelaneError("missing_audio_path", f"{src} does not exist", {"audio_path": str(src)})
    dst_dir.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        target = dst_dir / name
        shutil.copytree(src, target, symlinks=False, ignore=shutil.ignore_patterns(".*"))
        return f"inputs/{name}"
    # a single file (a long recording: its same-stem transcript travels with it)
    target_dir = dst_dir / name
    target_dir.mkdir()
    for sib in sorted(src.parent.glob(src.stem + ".*")):
        if sib.is_file():
            shutil.copy2(sib, target_dir / sib.name)
    if not (target_dir / src.name).exists():
        shutil.copy2(src, target_dir / src.name)
    return f"inputs/{name}/{src.name}"


class RayRunner:
    def __init__(
        self,
        address: str | None = None,
        transfer: str | None = None,
        python: str | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        max_fetch_mb: int | None = None,
        env: Mapping[str, str] | None = None,
    ):
        env = os.environ if env is None else env
        self.address = address or env.get("RAY_ADDRESS") or DEFAULT_ADDRESS
        self.transfer = (transfer or env.get("VOICELANE_RAY_TRANSFER") or "auto").strip().lower()
        if self.transfer not in ("auto", "shared", "upload"):
            raise VoicelaneError(
                "invalid_argument",
                "VOICELANE_RAY_TRANSFER must be auto, shared or upload",
                {"variable": "VOICELANE_RAY_TRANSFER", "value": self.transfer},
            )
        self.python = python or env.get("VOICELANE_RAY_PYTHON") or "python"
        self.num_cpus = float(num_cpus if num_cpus is not None else env.get("VOICELANE_RAY_NUM_CPUS") or 1)
        self.num_gpus = float(num_gpus if num_gpus is not None else env.get("VOICELANE_RAY_NUM_GPUS") or 0)
        self.max_fetch_bytes = (
            int(max_fetch_mb if max_fetch_mb is not None else env.get("VOICELANE_RAY_MAX_FETCH_MB") or 512)
            * 1024
            * 1024
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "RayRunner":
        return cls(env=env)

    @property
    def mode(self) -> str:
        if self.transfer != "auto":
            return self.transfer
        return "shared" if is_loopback(self.address) else "upload"

    def unavailable(self, why: str, exc: BaseException | None = None) -> VoicelaneError:
        detail = f"{type(exc).__name__}: {exc}"[:400] if exc else why
        return VoicelaneError(
            "managed_job_unavailable",
            f"no Ray job API at {self.address}: {why}",
            {"address": self.address, "error": detail},
        )

    def client(self):
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError as exc:
            raise self.unavailable("ray is not installed (pip install 'voicelane[ray]')", exc) from None
        try:
            return JobSubmissionClient(self.address)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError ...
            raise self.unavailable("cannot connect", exc) from None

    def start(self, argv: list[str], env: Mapping[str, str], cwd: Path | str | None = None) -> "RayJobHandle":
        cwd = Path(cwd) if cwd else Path.cwd()
        args = cli_args_of(list(argv))
        spec = spec_of(args, cwd)
        client = self.client()
        staging: Path | None = None
        runtime_env: dict[str, Any] = {"env_vars": forwarded_env(env)}
        try:
            if spec is None:
                payload, out_local, status_local = self._command_payload(args, env, cwd)
            elif self.mode == "shared":
                payload, out_local, status_local = self._shared_payload(spec, env, cwd)
            else:
                staging = Path(tempfile.mkdtemp(prefix="voicelane-ray-"))
                payload, out_local, status_local = self._upload_payload(spec, env, cwd, staging)
                runtime_env["working_dir"] = str(staging)
            job_id = self._submit(client, payload, runtime_env, spec)
        finally:
            if staging is not None:  # submit_job has uploaded the package (or failed)
                shutil.rmtree(staging, ignore_errors=True)
        return RayJobHandle(
            client,
            job_id,
            self.address,
            self.mode,
            out_local,
            status_local,
            spec.profile_id if spec else None,
            job_type=spec.job_type if spec else "dataset",
        )

    def _status_local(self, spec: RunSpec | None, env: Mapping[str, str], out_local: Path, cwd: Path) -> Path:
        chosen = (spec.status_path if spec else None) or env.get("TRAIN_STATUS_PATH") or out_local / "train_status.json"
        return _abs(str(chosen), cwd)

    def _command_payload(self, args: list[str], env: Mapping[str, str], cwd: Path) -> tuple[dict, Path, Path]:
        """A command that is not a lane run travels as given: its paths must be the cluster's too."""
        if self.mode != "shared":
            raise VoicelaneError(
                "invalid_argument",
                "only lane runs (`voicelane run spec.json`) can be uploaded to Ray; use VOICELANE_RAY_TRANSFER=shared",
                {"command": " ".join(args[:3])},
            )
        status_local = self._status_local(None, env, cwd, cwd)
        return {"args": args, "status_path": str(status_local), "out": str(cwd), "fetch": False}, cwd, status_local

    def _shared_payload(self, spec: RunSpec, env: Mapping[str, str], cwd: Path) -> tuple[dict, Path, Path]:
        out_local = _abs(str(spec.out), cwd)
        status_local = self._status_local(spec, env, out_local, cwd)
        paths = {f: _abs(str(v), cwd) for f in INPUT_FIELDS if (v := getattr(spec, f)) is not None}
        shipped = spec.updated(out=out_local, status_path=status_local, **paths)
        return (
            {
                "spec": shipped.model_dump(mode="json"),
                "status_path": str(status_local),
                "out": str(out_local),
                "fetch": False,
            },
            out_local,
            status_local,
        )

    def _upload_payload(
        self, spec: RunSpec, env: Mapping[str, str], cwd: Path, staging: Path
    ) -> tuple[dict, Path, Path]:
        out_local = _abs(str(spec.out), cwd)
        status_local = self._status_local(spec, env, out_local, cwd)
        staged = {
            f: Path(_stage_input(_abs(str(v), cwd), staging / "inputs", name))
            for f, name in INPUT_FIELDS.items()
            if (v := getattr(spec, f)) is not None
        }
        shipped = spec.updated(out=Path("out"), status_path=Path("out/train_status.json"), **staged)
        return (
            {
                "spec": shipped.model_dump(mode="json"),
                "status_path": "out/train_status.json",
                "out": "out",
                "fetch": True,
                "max_fetch_bytes": self.max_fetch_bytes,
            },
            out_local,
            status_local,
        )

    def _submit(self, client, payload: dict, runtime_env: dict[str, Any], spec: RunSpec | None) -> str:
        entrypoint = f"{shlex.quote(self.python)} -m voicelane.runner.ray_job {encode_spec(payload)}"
        command = f"run {spec.job_type}" if spec else " ".join(payload["args"][:3])
        try:
            return client.submit_job(
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                submission_id=f"voicelane-{uuid.uuid4().hex[:16]}",
                metadata={"voicelane": "lane", "command": command[:100], "profile": spec.profile_id if spec else ""},
                entrypoint_num_cpus=self.num_cpus,
                entrypoint_num_gpus=self.num_gpus or None,
            )
        except Exception as exc:  # noqa: BLE001
            raise self.unavailable("the job could not be submitted", exc) from None


def make_runner() -> RayRunner:
    """Factory the service's ``make_runner('ray')`` looks for."""
    return RayRunner()


def stop_orphan(ref: Mapping[str, Any]) -> str:
    """Stop a Ray job whose service died (the job record says `orphaned`). Returns the Ray
    status seen after the stop request, or ``unreachable``."""
    try:
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(str(ref["address"]))
        client.stop_job(str(ref["job_id"]))
        deadline = time.monotonic() + 15
        while True:
            status = job_status(client, str(ref["job_id"]))
            if status in TERMINAL or time.monotonic() > deadline:
                return status
            time.sleep(0.5)
    except Exception:  # noqa: BLE001 - the cluster is gone: nothing left running to stop
        return "unreachable"


class RayJobHandle:
    pid = None

    def __init__(
        self,
        client,
        job_id: str,
        address: str,
        mode: str,
        out: Path,
        status_path: Path,
        profile: str | None,
        job_type: str = "tts_prod_train",
        poll_s: float = 0.5,
    ):
        self.client = client
        self.job_id = job_id
        self.address = address
        self.mode = mode
        self.out = out
        self.status_path = status_path
        self.profile = profile
        self.job_type = job_type
        self.is_train = job_type != "dataset"
        self.poll_s = poll_s
        # kept in the service's job record: a restarted service stops what its predecessor left
        self.runner_ref = {"kind": "ray", "address": address, "job_id": job_id}
        self.ray_status: str | None = "PENDING"
        self.state = "running"
        self.result: dict[str, Any] | None = None
        self.remote: dict[str, Any] | None = None
        self.message: str | None = None
        self._blob: list[str] = []
        self._blob_end: dict[str, Any] | None = None
        self._q: queue.Queue = queue.Queue()
        self._rc: int | None = None
        self._final_lock = threading.Lock()
        self._pump = threading.Thread(target=self._pump_logs, daemon=True, name=f"ray-logs-{job_id}")
        self._pump.start()

    # --- logs -------------------------------------------------------------------------------
    def _tail_chunks(self) -> Iterator[str]:
        received = 0
        chunks: queue.Queue = queue.Queue()

        async def consume() -> None:
            async for text in self.client.tail_job_logs(self.job_id):
                chunks.put(text)

        def runner() -> None:
            try:
                asyncio.run(consume())
                chunks.put(None)
            except Exception as exc:  # noqa: BLE001 - fall back to polling below
                chunks.put(exc)

        threading.Thread(target=runner, daemon=True).start()
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, Exception):
                break
            received += len(item)
            yield item
        # fallback: poll the whole log and hand over what is new
        while True:
            status = job_status(self.client, self.job_id)
            text = self.client.get_job_logs(self.job_id)
            if len(text) > received:
                yield text[received:]
                received = len(text)
            if status in TERMINAL:
                return
            time.sleep(1.0)

    def _pump_logs(self) -> None:
        try:
            for line in iter_lines(self._tail_chunks()):
                self._classify(line.rstrip("\r"))
        except Exception as exc:  # noqa: BLE001 - a log hiccup must not hang the caller
            self._q.put(("stderr", f"[ray] log stream ended: {type(exc).__name__}: {exc}"))
        finally:
            self._q.put(None)

    def _classify(self, line: str) -> None:
        import json

        tag, _, rest = line.partition(" ")
        if tag == "VLRAY_OUT":
            self._q.put(("stdout", rest))
        elif tag == "VLRAY_ERR":
            self._q.put(("stderr", rest))
        elif tag == "VLRAY_BLOB":
            self._blob.append(rest.partition(" ")[2])
        elif tag in ("VLRAY_BLOB_END", "VLRAY_RESULT", "VLRAY_START"):
            try:
                doc = json.loads(rest)
            except ValueError:
                doc = {"error": "unparsable"}
            if tag == "VLRAY_BLOB_END":
                self._blob_end = doc
            elif tag == "VLRAY_RESULT":
                self.result = doc
            else:
                self.remote = doc
                self._q.put(
                    (
                        "stderr",
                        f"[ray] job {self.job_id} running on {doc.get('host')} (commit {str(doc.get('commit'))[:8]})",
                    )
                )
        else:
            self._q.put(("stderr", f"[ray] {line}"))

    def lines(self) -> Iterator[tuple[str, str]]:
        while True:
            item = self._q.get()
            if item is None:
                return
            yield item

    # --- completion -----------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> int | None:
        if self._rc is not None:
            return self._rc
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                status = job_status(self.client, self.job_id)
            except Exception as exc:  # noqa: BLE001 - the cluster went away
                self.message = f"lost the Ray job API: {exc}"
                status = "FAILED"
            self.ray_status = status
            if status in TERMINAL:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)
        self._pump.join(timeout=120)
        with self._final_lock:
            if self._rc is None:
                self._rc = self._finalize()
        return self._rc

    def terminate(self, grace_s: float = 10.0) -> None:
        try:
            self.client.stop_job(self.job_id)
        except Exception:  # noqa: BLE001
            pass
        self.wait(grace_s)

    def _finalize(self) -> int:
        info = None
        try:
            info = self.client.get_job_info(self.job_id)
            self.message = self.message or getattr(info, "message", None)
        except Exception:  # noqa: BLE001
            pass
        rc = getattr(info, "driver_exit_code", None) if info is not None else None
        if rc is None and self.result:
            rc = self.result.get("exit_code")
        if rc is None:
            rc = {"SUCCEEDED": 0, "STOPPED": 130}.get(self.ray_status or "", 1)
        rc = int(rc)
        if self.ray_status == "STOPPED" and rc == 0:
            rc = 130
        if self.result is None:
            # the lane never ran (runtime env, python or import failure, or stopped while pending)
            code = "cancelled" if self.ray_status == "STOPPED" else "managed_job_failed"
            self._write_error_status(
                code,
                f"the Ray job {self.job_id} ended {self.ray_status} before the lane "
                f"reported: {self.message or 'no message'}",
            )
            rc = rc or 1
        elif self.mode == "upload":
            try:
                fetched = self._fetch()
            except VoicelaneError as err:
                self._write_error_status(err.code, f"the bundle fetched from Ray: {err.message}", err.details)
                rc = rc or 1
            else:
                if fetched is not None:
                    self._write_error_status("managed_job_failed", fetched)
                    rc = rc or 1
        self._annotate_status()
        if rc == 0 and self.is_train:
            rc = self._validate_bundle()
        if rc == 0 and self.ray_status == "SUCCEEDED":
            self.state = "completed"
        elif rc == 130 or self.ray_status == "STOPPED":
            self.state = "cancelled"
        else:
            self.state = "blocked" if rc == 2 else "error"
        return rc

    def bundle_dir(self) -> Path | None:
        if not self.profile:
            return None
        from voicelane.bundle import bundle_dir_for

        return bundle_dir_for(self.out, self.profile)

    def _fetch(self) -> str | None:
        """Unpack the outputs shipped through the log; returns an error message or None. A bundle
        that does not validate raises ``bundle_invalid`` (and is never swapped in)."""
        end = self._blob_end
        if not end or "sha256" not in end:
            return "the job's outputs did not come back" + (f" ({end.get('error')})" if end else "")
        data = base64.b64decode("".join(self._blob).encode("ascii"))
        if len(data) != end.get("bytes") or hashlib.sha256(data).hexdigest() != end["sha256"]:
            return "the job's outputs arrived corrupted (size or sha256 mismatch)"
        unpack_outputs(data, self.out, self.status_path)
        return None

    def _annotate_status(self) -> None:
        doc = read_json(self.status_path)
        if doc is None:
            return
        doc["managed_job"] = {
            "backend": "ray",
            "address": self.address,
            "job_id": self.job_id,
            "transfer": self.mode,
            "ray_status": self.ray_status,
            "remote_commit": (self.remote or {}).get("commit"),
        }
        if self.mode == "upload":
            bdir = self.bundle_dir()
            if doc.get("bundle") and bdir is not None:
                doc["remote_bundle"] = doc["bundle"]
                doc["bundle"] = str(bdir)
            if doc.get("dataset_manifest"):
                doc["dataset_manifest"] = str(self.out / "dataset" / "dataset_manifest.json")
        atomic_write_json(self.status_path, doc)

    def _validate_bundle(self) -> int:
        from voicelane.bundle import validate_voice_bundle

        bdir = self.bundle_dir()
        res = validate_voice_bundle(bdir) if bdir is not None else None
        if res is not None and res.ok:
            return 0
        err = (res.error if res is not None else None) or {"code": "manifest_missing", "message": "no --profile"}
        self._write_error_status(
            "bundle_invalid",
            f"the bundle fetched from Ray does not validate here: {err.get('code')}: {err.get('message')}",
            {"validator_code": err.get("code"), "bundle": str(bdir)},
        )
        return 1

    def _write_error_status(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        err = VoicelaneError(code, message, dict(details or {}, ray_job_id=self.job_id, address=self.address))
        job_type = self.job_type if self.job_type in LANES else "tts_prod_train"
        finalize(self.status_path, err, state="cancelled" if code == "cancelled" else "error", job_type=job_type)


def unpack_outputs(data: bytes, out: Path, status_path: Path) -> None:
    """Install what ``ray_job`` shipped back (a tar.gz): the status and dataset manifest, then each
    bundle through ``swap_dir`` with the validator as its check, so an invalid bundle raises
    ``bundle_invalid`` and the previous bundle stays in place."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ray-fetch-", dir=out))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        status = tmp / "train_status.json"
        if status.is_file():
            status_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(status_path, status.read_bytes())
        man = tmp / "out" / "dataset" / "dataset_manifest.json"
        if man.is_file():
            atomic_write_bytes(out / "dataset" / "dataset_manifest.json", man.read_bytes())
        bundles = tmp / "out" / "bundles"
        for bdir in sorted(p for p in bundles.glob("*/*") if p.is_dir() and not p.is_symlink()):
            swap_dir(bdir, out / "bundles" / bdir.parent.name / bdir.name, check=_valid_fetched_bundle)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _valid_fetched_bundle(staged: Path) -> None:
    from voicelane.bundle import require_valid_bundle

    try:
        require_valid_bundle(staged, "fetch")
    except VoicelaneError as err:
        raise VoicelaneError(
            "bundle_invalid", err.message, {"validator_code": err.code, "bundle": f"{staged.parent.name}/{staged.name}"}
        ) from None

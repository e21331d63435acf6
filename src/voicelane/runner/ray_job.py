"""What a managed job runs on the Ray cluster: ``python -m voicelane.runner.ray_job <spec>``.

``<spec>`` is base64 of a JSON object (so no path ever passes through a shell string)::

    {"spec": {...RunSpec...} | "args": [...voicelane CLI args...], "status_path": "...", "out": "...",
     "fetch": true|false, "max_fetch_bytes": N}

With ``spec`` it writes the RunSpec to ``<out>/spec.json`` and runs ``python -m voicelane run`` on it
(``args``: a command that is not a lane run, as given). It runs the lane and re-emits, on its
single stdout (Ray merges a job's stdout and stderr into one log, so one writer keeps lines whole
and tells them apart):

    VLRAY_OUT <line>          a line of the lane's stdout (the §3 protocol)
    VLRAY_ERR <line>          a line of the lane's stderr (human log)
    VLRAY_START {json}        where it runs (host, python, commit)
    VLRAY_RESULT {json}       the lane's exit code and whether its status file exists
    VLRAY_BLOB <n> <base64>   with fetch: a tar.gz of the run's bundle(s), status and dataset manifest
    VLRAY_BLOB_END {json}     its sha256, size and chunk count

and exits with the lane's exit code. SIGTERM (``ray job stop``) is forwarded to the lane, which
records ``cancelled``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import sys
import tarfile
from pathlib import Path

from voicelane.fsutil import canonical_json

CHUNK_RAW = 24 * 1024  # -> 32 KiB of base64 per line
DEFAULT_MAX_FETCH = 512 * 1024 * 1024


def encode_spec(spec: dict) -> str:
    return base64.urlsafe_b64encode(canonical_json(spec).encode("utf-8")).decode("ascii")


def decode_spec(text: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(text.encode("ascii")).decode("utf-8"))


def _emit(tag: str, text: str) -> None:
    sys.stdout.write(f"{tag} {text}\n")
    sys.stdout.flush()


def pack_outputs(out: Path, status_path: Path) -> bytes:
    """tar.gz of what the caller needs back: bundles/, the dataset manifest and the status."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        bundles = out / "bundles"
        if bundles.is_dir():
            for path in sorted(bundles.rglob("*")):
                rel = path.relative_to(out)
                if path.is_symlink() or any(part.startswith(".") for part in rel.parts):
                    continue  # staging leftovers and links never travel
                if path.is_file():
                    tar.add(path, arcname=f"out/{rel.as_posix()}", recursive=False)
        manifest = out / "dataset" / "dataset_manifest.json"
        if manifest.is_file():
            tar.add(manifest, arcname="out/dataset/dataset_manifest.json", recursive=False)
        if status_path.is_file():
            tar.add(status_path, arcname="train_status.json", recursive=False)
    return buf.getvalue()


def _lane_argv(spec: dict, out: Path) -> list[str]:
    from voicelane.runspec import SPEC_FILE, RunSpec, child_argv

    if "spec" in spec:
        return child_argv(RunSpec.build(**spec["spec"]).write(out / SPEC_FILE))
    return [sys.executable, "-m", "voicelane", *spec["args"]]


def run(spec: dict) -> int:
    from voicelane.lane import git_commit
    from voicelane.runner.local import LocalRunner, forward_signals

    status_path = Path(spec["status_path"]).resolve()
    out = Path(spec["out"]).resolve()
    status_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TRAIN_STATUS_PATH=str(status_path), PYTHONUNBUFFERED="1")
    env.setdefault("PYTHONIOENCODING", "utf-8")
    _emit(
        "VLRAY_START",
        canonical_json(
            {"host": socket.gethostname(), "python": sys.executable, "commit": git_commit(), "cwd": os.getcwd()}
        ),
    )
    handle = LocalRunner().start(_lane_argv(spec, out), env, None)

    forward_signals(handle)
    for stream, line in handle.lines():
        _emit("VLRAY_OUT" if stream == "stdout" else "VLRAY_ERR", line)
    rc = handle.wait()
    rc = 1 if rc is None else (128 - rc if rc < 0 else rc)
    _emit("VLRAY_RESULT", canonical_json({"exit_code": rc, "status_present": status_path.is_file()}))
    if spec.get("fetch"):
        data = pack_outputs(out, status_path)
        limit = int(spec.get("max_fetch_bytes") or DEFAULT_MAX_FETCH)
        if len(data) > limit:
            _emit(
                "VLRAY_ERR",
                f"[voicelane-ray] outputs are {len(data)} bytes, over the {limit}-byte fetch "
                "limit; use a shared output path (VOICELANE_RAY_TRANSFER=shared)",
            )
            _emit("VLRAY_BLOB_END", canonical_json({"error": "too_large", "bytes": len(data)}))
        else:
            n = 0
            for i in range(0, len(data), CHUNK_RAW):
                _emit("VLRAY_BLOB", f"{n} {base64.b64encode(data[i : i + CHUNK_RAW]).decode('ascii')}")
                n += 1
            _emit(
                "VLRAY_BLOB_END",
                canonical_json({"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "chunks": n}),
            )
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m voicelane.runner.ray_job <base64 spec>", file=sys.stderr)
        return 2
    return run(decode_spec(argv[0]))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

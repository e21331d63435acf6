"""The service's choice of runner (local child processes, or Ray); the runner itself lives in
``voicelane.runner`` and is shared with the orchestrator."""

from __future__ import annotations

from voicelane.runner import (  # noqa: F401  (re-exported for the service)
    READ_CHUNK, LocalHandle, LocalRunner, RunHandle, Runner, decoded_chunks, kill_orphan, pid_alive,
    proc_cmdline,
)


def make_runner(kind: str) -> Runner:
    if kind == "local":
        return LocalRunner()
    if kind == "ray":
        try:
            from voicelane.ops import ray_backend  # type: ignore[attr-defined]
        except ImportError as exc:
            raise RuntimeError("VOICELANE_RUNNER=ray needs voicelane.ops.ray_backend and ray "
                               f"(pip install 'voicelane[ray]'): {exc}") from exc
        factory = getattr(ray_backend, "make_runner", None) or getattr(ray_backend, "RayRunner", None)
        if factory is None:
            raise RuntimeError("voicelane.ops.ray_backend provides neither make_runner() nor RayRunner")
        return factory()
    raise RuntimeError(f"unknown runner {kind!r}")



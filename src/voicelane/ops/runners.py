"""Run a lane process and read its lines. The shape is the one the HTTP service's job runner uses
(``voicelane.service.core.runner``), so the orchestrator and the service can swap runners::

    runner.start(argv: list[str], env: dict[str, str], cwd: Path) -> handle
    handle.pid                      int | None (None when the process is not local)
    handle.lines()                  iterator of ("stdout" | "stderr", line without "\\n")
    handle.wait(timeout=None)       exit status, or None while still running
    handle.terminate(grace_s)       SIGTERM (the lane records `cancelled`), SIGKILL after grace_s

``LocalRunner`` runs the process here; ``voicelane.ops.ray_backend.RayRunner`` runs it as a Ray
job; ``voicelane.ops.docker_lane.DockerRunner`` inside a container.
"""

from voicelane.runner import LocalHandle, LocalRunner, forward_signals  # noqa: F401  (one implementation, shared)

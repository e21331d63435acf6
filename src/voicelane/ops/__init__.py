"""Operations (SPEC §10-12): the one-command orchestrator, the Docker lane, managed jobs on
Ray, the verification gate (`voicelane verify`) and the readiness report (`voicelane readiness`).

Modules:

- ``orchestrator``  - ``python -m voicelane.ops.orchestrator`` (what
  ``scripts/voice/train_production_voice.sh`` execs): TRAIN_BACKEND = local | local_docker |
  managed_job.
- ``docker_lane``   - docker build/run for the orchestrator, and the container entrypoint
  (``python -m voicelane.ops.docker_lane entrypoint``) that prints the final report block.
- ``verify``        - the constraint pack, certificate and training trace; talks to a service
  over HTTP only.
- ``readiness``     - ``reports/readiness.md`` from real checks.

Runners (local process, Ray) live in ``voicelane.runner``, below both ops and the service; ops
and the service never import each other (tests/test_architecture.py).
"""

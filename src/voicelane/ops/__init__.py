"""Operations (SPEC §10-12): the one-command orchestrator, the Docker lane, managed jobs on
Ray, the verification gate (`voicelane verify`) and the readiness report (`voicelane readiness`).

Modules:

- ``orchestrator``  - ``python -m voicelane.ops.orchestrator`` (what
  ``scripts/voice/train_production_voice.sh`` execs): TRAIN_BACKEND = local | local_docker |
  managed_job.
- ``runners``       - run a lane as a local child process (the runner shape the service uses).
- ``docker_lane``   - docker build/run for the orchestrator, and the container entrypoint
  (``python -m voicelane.ops.docker_lane entrypoint``) that prints the final report block.
- ``ray_backend``   - ``RayRunner``: a lane as a Ray job (JobSubmissionClient), logs streamed
  through the line parser, the bundle fetched back and validated locally.
- ``ray_job``       - what runs on the Ray cluster (wraps the lane, ships the output back).
- ``verify``        - the ``voicelane-lane/1`` constraint pack, certificate and training trace.
- ``readiness``     - ``reports/readiness.md`` from real checks.
- ``codes``         - error codes these modules add (additively) to ``voicelane.errors``.
"""

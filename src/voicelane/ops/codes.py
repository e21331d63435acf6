"""Error codes the operations modules add to ``voicelane.errors.NEXT_ACTIONS`` (additively).

They are registered at import time with ``setdefault`` so that a code later moved into
``voicelane/errors.py`` keeps its wording there. Existing codes are never changed.
"""

from __future__ import annotations

from voicelane.errors import NEXT_ACTIONS

OPS_CODES: dict[str, str] = {
    # managed jobs
    "managed_job_failed": "Read the Ray job log named in the error (`ray job logs <id>`): the job failed before "
                          "the lane wrote its status; fix the cluster's Python environment and rerun.",
    # verify / readiness
    "status_not_found": "Run the production lane first (scripts/voice/train_production_voice.sh), or pass "
                        "--status with the run's train_status JSON.",
    "status_not_completed": "The run has not completed: wait for it, or rerun the lane and read its status' error.",
    "verify_missing": "Run `voicelane verify --bundle DIR --status FILE --tests-cmd ...` to record a verdict.",
    "verify_failed": "Fix the constraint named by firstFail in the latest verify record, then rerun `voicelane verify`.",
    "certificate_stale": "A bound artifact changed after the last verify; rerun `voicelane verify` on the "
                         "current bundle.",
    "ops_artifact_missing": "Restore the named file from the repository (git checkout -- PATH).",
}


def register() -> None:
    for code, action in OPS_CODES.items():
        NEXT_ACTIONS.setdefault(code, action)


register()

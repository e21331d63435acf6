"""Stable error codes (SPEC §14): extend, never rename.

Every failure a user can hit is a `VoicelaneError` carrying one of these codes, a message and
one sentence telling the operator how to unblock (`next_action`).
"""

from __future__ import annotations

from typing import Any, Iterable

NEXT_ACTIONS: dict[str, str] = {
    # dataset
    "missing_audio_path": "Pass an existing dataset folder or recording (--data / AUDIO_PATH).",
    "dataset_empty": "Add audio clips with transcripts; see `voicelane dataset check DIR` for why each clip was rejected.",
    "dataset_too_small": "Record more clips (at least the configured minimum minutes; 1-2 h recommended) or fix the rejected ones listed in the dataset report.",
    "metadata_invalid": "Fix metadata.csv at the reported line: UTF-8 without BOM, `id|text` rows separated by `|`, no blank rows.",
    "audio_undecodable": "Re-export the file as WAV, FLAC or OGG and rerun.",
    "path_not_allowed": "Copy the file into the dataset folder instead of linking to it from outside (or set the dataset option follow_external_symlinks deliberately).",
    "alignment_failed": "Check the clip's transcript against its audio (a missing or extra word is the usual cause), fix or drop it, and rerun `voicelane dataset align`.",
    # gates
    "allowlist_rejected": "Use a base weights id listed by `voicelane base list`, or train without --base.",
    "license_noncommercial": "Pick base weights whose code and weights licences allow commercial use, or pass --accept-license-risk to record an explicit override.",
    "license_unknown": "Pick base weights with a known licence, or pass --accept-license-risk to record an explicit override.",
    "consent_missing": "Pass --consent-statement FILE with the speaker's consent (text or recorded audio).",
    "eval_gate_failed": "Inspect eval.json: add or clean data, train longer (more steps or the gpu preset), or relax the gate in the config deliberately.",
    # training
    "non_finite_loss": "Lower the learning rate or check the dataset for corrupt clips, then rerun (training resumes from the last checkpoint).",
    "runtime_dependency_missing": "Install the project's pinned dependencies (README setup command) and rerun.",
    "out_of_memory": "Lower the batch size or use a smaller preset, then rerun; training resumes from the last checkpoint.",
    "cancelled": "Rerun the same command to resume from the last checkpoint.",
    # bundle
    "manifest_missing": "Re-export the bundle; manifest.json is required.",
    "manifest_invalid": "Re-export the bundle; manifest.json does not match the voice_bundle/1 schema.",
    "required_file_missing": "Re-export the bundle; a file listed in the manifest (or required by it) is missing.",
    "bytes_mismatch": "The bundle was modified or truncated after export; re-export it or restore the original files.",
    "checksum_mismatch": "The bundle was modified after export; re-export it or restore the original files.",
    "path_unsafe": "The manifest names a path outside the bundle; refuse this bundle and re-export it from a trusted run.",
    "duplicate_path": "The manifest lists a file twice; re-export the bundle.",
    # orchestrator
    "deterministic_head_mismatch": "Check out the commit named by EXPECTED_HEAD or unset it.",
    "invalid_backend": "Set TRAIN_BACKEND to local, local_docker or managed_job.",
    "docker_build_failed": "Read the docker build log above, fix the image, and rerun.",
    "docker_run_failed": "Read the container log above; the report block names the lane's exit code.",
    "managed_job_unavailable": "Start a Ray head (`ray start --head`) and set RAY_ADDRESS to it, or use TRAIN_BACKEND=local.",
    # extensions (additive)
    "invalid_argument": "Fix the named argument and rerun.",
    "profile_id_invalid": "Use 1-64 characters from a-z, 0-9, '_' and '-', starting with a letter or digit.",
    "language_unsupported": "Use a language the phonemizer supports (see `voicelane languages`).",
    "text_unvoiceable": "Remove characters the voice cannot pronounce, or use a voice trained for that language.",
    "checkpoint_invalid": "Delete the run folder's checkpoint and rerun from scratch.",
    "base_weights_missing": "Restore the base weights file from the repository (git checkout) or train it with `voicelane base train`.",
    "bundle_invalid": "Re-export the bundle; see the validator code in details.",
    # studio uploads and recordings (docs/studio.md)
    "upload_empty": "The upload or recording arrived empty (0 bytes); pick the file again or re-take the recording.",
    "upload_invalid": "Upload a .zip of an LJSpeech folder (metadata.csv at the top, audio under wavs/).",
    "upload_unsafe": "Re-create the zip from the dataset folder itself: entries may not be absolute, contain '..' or be symlinks.",
    "dataset_exists": "Pick another dataset name, or remove the existing folder first.",
    "recording_invalid": "Record again: takes must be WAV at 16 kHz or more and last 0.5-20 s.",
    "recording_silent": "Check that the right microphone is selected and not muted, raise its input level, then re-take.",
    "engine_unavailable": "This installation has no such engine (e.g. NeMo for tts_prod_train_nemo); start the job with jobType tts_prod_train, which trains with voicelane's own engine.",
    "bundle_compat_only": "This bundle is in the old minimal layout (five manifest fields, no voicelane model/config/eval): it validates with level compat but cannot be served; retrain or re-export it with `voicelane train`.",
    # operations (verify / readiness / managed jobs)
    "managed_job_failed": "Read the Ray job log named in the error (`ray job logs <id>`): the job failed before the lane wrote its status; fix the cluster's Python environment and rerun.",
    "status_not_found": "Run the production lane first (scripts/voice/train_production_voice.sh), or pass --status with the run's train_status JSON.",
    "status_not_completed": "The run has not completed: wait for it, or rerun the lane and read its status' error.",
    "verify_missing": "Run `voicelane verify --bundle DIR --status FILE --junit FILE` (FILE from VOICELANE_JUNIT=FILE "
    "bash scripts/test.sh) to record a verdict.",
    "verify_failed": "Fix the constraint named by firstFail in the latest verify record, then rerun `voicelane verify`.",
    "certificate_stale": "A bound artifact changed after the last verify; rerun `voicelane verify` on the current bundle.",
    "gate_thresholds_loosened": "Retrain without relaxing the gates (drop TRAIN_GATES / --gates looser than the verify "
    "pack's pinned policy); a voice evaluated against looser gates is never certified.",
    "tests_not_default_suite": "Bind the junit of the whole default suite: VOICELANE_JUNIT=FILE bash scripts/test.sh "
    "(no extra arguments), then voicelane verify --junit FILE.",
    "ops_artifact_missing": "Restore the named file from the repository (git checkout -- PATH).",
    "internal_error": "Rerun with the log attached to a bug report.",
    # speaking (workers, streaming, playback)
    "synthesis_failed": "A synthesis worker failed or died; retry (a replacement worker starts at once) and attach the service log to a bug report if it repeats.",
    "audio_player_missing": "Install a command-line player (`apt-get install alsa-utils` for aplay, or pulseaudio-utils / sox / ffmpeg), or write a file with --out instead of --play.",
    # local-service protection (docs/security.md)
    "unsupported_media_type": "Send JSON bodies with `Content-Type: application/json`.",
    "host_not_allowed": "Call the service by a loopback name, or add the name you use to VOICELANE_ALLOWED_HOSTS.",
    "origin_not_allowed": "Call the service from its own page, or add the calling page's origin to VOICELANE_CORS_ORIGINS.",
    "job_database_corrupt": "The unreadable job database was moved aside (its new name is in the log and in /health) and the service started with an empty one; runs, statuses and bundles on disk are untouched.",
    "disk_full": "Free disk space (or raise the file-size limit) and rerun; what was there before (the previous bundle, the job records) was kept.",
    "unauthorized": "Send `Authorization: Bearer <token>`: the token is printed when the service starts and stored in <data dir>/api_token (or set VOICELANE_API_TOKEN).",
    "orphaned": "The service stopped while this job ran; start the job again (training resumes from its last checkpoint).",
}


DISK_FULL_ERRNOS = (28, 27, 122)  # ENOSPC, EFBIG (a file-size limit), EDQUOT


def disk_full_error(exc: BaseException, doing: str, path: str | None = None) -> "VoicelaneError | None":
    """``disk_full`` for an OSError that means no space (or a file-size limit), else None."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_FULL_ERRNOS:
        return None
    return VoicelaneError(
        "disk_full",
        f"no space left while {doing} ({exc.strerror})",
        {"errno": exc.errno, **({"path": path} if path else {})},
    )


def reported_code(lines: "Iterable[str]") -> "tuple[str, str] | None":
    """(code, message) of the last ``error: <code>: <message>`` line the CLI printed (stderr) with a
    stable code other than ``internal_error``: how a child that wrote no status says why it failed."""
    for line in reversed(list(lines)):
        head, sep, rest = line.partition(": ")
        if head != "error" or not sep:
            continue
        code, sep, message = rest.partition(": ")
        if sep and code in NEXT_ACTIONS and code != "internal_error":
            return code, message[:500]
    return None


class VoicelaneError(Exception):
    """An operator-facing failure with a stable code."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None, next_action: str | None = None):
        if code not in NEXT_ACTIONS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.next_action = next_action or NEXT_ACTIONS[code]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return f"{self.code}: {self.message}"

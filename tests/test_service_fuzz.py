"""schemathesis fuzzes every operation of the published OpenAPI document against a real server
(with a real tiny production voice): no request may produce a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis import GenerationMode  # noqa: E402

MAX_EXAMPLES = 20


@pytest.fixture(scope="module")
def svc_fuzz_server(svc_start_voice_server):
    # its data root does not exist: no generated request can start a real training job
    return svc_start_voice_server("svc_fuzz", VOICELANE_SPEAK_QUEUE_SIZE="64")


@pytest.fixture(scope="module")
def svc_fuzz_schema(svc_fuzz_server):
    schema = schemathesis.openapi.from_url(svc_fuzz_server.url + "/openapi.json")
    schema.config.base_url = svc_fuzz_server.url
    return schema


def test_openapi_fuzz_no_server_errors(svc_fuzz_schema, svc_fuzz_server):
    """Positive and negative cases for every operation (schemathesis strategies driven by
    hypothesis directly: schemathesis's pytest plugin does not support this pytest)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    failures: list[str] = []
    labels: list[str] = []
    no_negative: list[str] = []
    for result in svc_fuzz_schema.get_all_operations():
        op = result.ok()
        labels.append(op.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                resp = case.call(base_url=svc_fuzz_server.url, headers=svc_fuzz_server.auth_headers, timeout=150)
                if resp.status_code >= 500:
                    failures.append(
                        f"{case.operation.label} -> {resp.status_code} {resp.text[:300]}\n"
                        f"{case.as_curl_command(base_url=svc_fuzz_server.url)}"
                    )

            try:
                run()
            except Unsatisfiable:
                # no invalid input exists for an operation without parameters or body
                assert mode == GenerationMode.NEGATIVE, op.label
                no_negative.append(op.label)
    assert len(labels) >= 12, labels
    assert not failures, "\n\n".join(failures[:10])
    # operations that take a body or constrained parameters really got invalid input
    assert not {
        "POST /api/voice/speak",
        "POST /api/train/start",
        "POST /api/train/dataset",
        "GET /api/train/jobs",
    } & set(no_negative), no_negative


def test_openapi_document(svc_fuzz_server):
    doc = svc_fuzz_server.client.get("/openapi.json").json()
    paths = doc["paths"]
    for p in (
        "/api/train/start",
        "/api/train/dataset",
        "/api/train/job/{job_id}",
        "/api/train/status",
        "/api/train/status/reset",
        "/api/train/jobs",
        "/api/train/job/{job_id}/cancel",
        "/api/train/job/{job_id}/events",
        "/api/train/job/{job_id}/log",
        "/api/voice/speak",
        "/api/voice/profiles",
        "/health",
    ):
        assert p in paths, p
    speak = paths["/api/voice/speak"]["post"]
    props = speak["requestBody"]["content"]["application/json"]["schema"]["properties"]
    for field in (
        "text",
        "mode",
        "priority",
        "voiceProfile",
        "voice_profile_id",
        "format",
        "consent_asserted",
        "watermark_mode",
        "traceId",
        "missionId",
        "eventId",
        "referenceAudioHash",
        "dedupe_key",
        "provider",
        "contextTier",
        "sessionState",
        "voiceMode",
    ):
        assert field in props, field
    assert {"400", "403", "404", "429", "503", "504"} <= set(speak["responses"])

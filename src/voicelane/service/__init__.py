"""The voicelane HTTP service (SPEC §9): training jobs over HTTP and `/api/voice/speak`.

The HTTP layer holds no ML: training runs in child processes speaking the line protocol
(`python -m voicelane ...`), and speech comes from validated `voice_bundle/1` bundles loaded
through `voicelane.speak.load_bundle_voice`.
"""

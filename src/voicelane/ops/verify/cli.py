"""CLI glue: ``voicelane verify`` and ``voicelane verify export``."""

from __future__ import annotations

import json
import sys
from dataclasses import fields

from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_bytes
from voicelane.ops.verify.evidence import default_status, env_token
from voicelane.ops.verify.gate import verify
from voicelane.ops.verify.options import VerifyOptions
from voicelane.ops.verify.trace import export_trace


def options_from_args(a) -> VerifyOptions:
    """Each ``voicelane verify`` flag sets the option of its name; status and token have defaults
    from the environment."""
    given = {f.name: getattr(a, f.name) for f in fields(VerifyOptions) if hasattr(a, f.name)}
    given.update(status=a.status or default_status(), token=a.token or env_token())
    given["run_tests"] = bool(given.get("run_tests", False))
    return VerifyOptions(**given)


def run_verify_cli(a) -> int:
    """``voicelane verify``: JSON on stdout; exit 0 PASS, 2 FAIL, 1 error."""
    try:
        doc = verify(options_from_args(a))
    except VoicelaneError as err:
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        print(f"next: {err.next_action}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(doc, sort_keys=True, indent=2)
    print(text)
    if a.json_out:
        atomic_write_bytes(a.json_out, (text + "\n").encode("utf-8"))
    print(
        f"[verify] verdict={doc['verdict']} firstFail={doc['firstFail']} "
        f"certificate={doc['certificate']['certificateId']} integrityOk={doc['certificate']['integrityOk']}",
        file=sys.stderr,
    )
    return 0 if doc["pass"] else 2


def run_export_cli(a) -> int:
    try:
        n = export_trace(a.trace, a.out, profile=getattr(a, "profile", None), limit=getattr(a, "limit", None))
    except OSError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "exported": n,
                "out": str(a.out),
                "trace": str(a.trace),
                "profile": getattr(a, "profile", None),
                "limit": getattr(a, "limit", None),
            },
            sort_keys=True,
        )
    )
    return 0

"""The `voicelane` command: a thin layer over the library functions the service also calls."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from voicelane.errors import VoicelaneError
from voicelane.protocol import Emitter

EXIT_OK, EXIT_ERROR, EXIT_BLOCKED, EXIT_CANCELLED = 0, 1, 2, 130


def _print_error(err: VoicelaneError, stream=None) -> None:
    stream = stream or sys.stderr
    print(f"error: {err.code}: {err.message}", file=stream)
    if err.details:
        print("details: " + json.dumps(err.details, sort_keys=True, default=str)[:2000], file=stream)
    print(f"next: {err.next_action}", file=stream)


def _exit_code(err: VoicelaneError) -> int:
    from voicelane.status import BLOCKING_CODES

    if err.code == "cancelled":
        return EXIT_CANCELLED
    return EXIT_BLOCKED if err.code in BLOCKING_CODES else EXIT_ERROR


def _sigterm_to_interrupt() -> None:
    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _lane_args(p: argparse.ArgumentParser) -> None:
    from voicelane.runspec import add_cli_arguments

    add_cli_arguments(p)
    p.add_argument("--protocol", action="store_true", help="stdout carries only the line protocol")
    p.add_argument(
        "--publish",
        action="store_true",
        help="after a successful production run, publish the bundle into the voice registry",
    )
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="voice registry root (default VOICELANE_REGISTRY_DIR, else VOICELANE_DATA_DIR, else ./var)",
    )


def _run_spec(spec, protocol: bool) -> int:
    from voicelane.lane import run_lane
    from voicelane.progress import make_reporter

    _sigterm_to_interrupt()
    rep = make_reporter(protocol=protocol)
    try:
        result = run_lane(spec, Emitter(sys.stdout), rep)
    finally:
        rep.close()
    rep.summary(result)
    return EXIT_OK


def cmd_train(a: argparse.Namespace) -> int:
    from voicelane.runspec import from_namespace

    spec = from_namespace(a)
    rc = _run_spec(spec, a.protocol)
    if getattr(a, "publish", False):
        from voicelane import registry
        from voicelane.bundle import bundle_dir_for

        pub = registry.publish(bundle_dir_for(spec.out, spec.profile_id), a.registry)
        print(f"published: profile={pub.profile} version={pub.version} bundle={pub.bundle}", file=sys.stderr)
    return rc


def cmd_run(a: argparse.Namespace) -> int:
    """What a runner's child runs: the lane for one RunSpec JSON file, stdout = the line protocol."""
    from voicelane.runspec import RunSpec

    return _run_spec(RunSpec.read(a.spec), protocol=True)


def cmd_dataset_check(a: argparse.Namespace) -> int:
    from voicelane import dataset
    from voicelane.engine.frontend import check_language

    cfg = dataset.DatasetConfig(language=check_language(a.language))  # language_unsupported first
    if a.min_minutes is not None:
        cfg.min_total_minutes = a.min_minutes
    report = dataset.inspect_dataset(a.path, cfg)
    if a.json:
        print(json.dumps(report, sort_keys=True, indent=2))
    else:
        from voicelane.progress import print_dataset_report

        print_dataset_report(report)
    err = report.get("error")
    if err:
        print(f"error: {err['code']}: {err['message']}\nnext: {err.get('next_action', '')}", file=sys.stderr)
        return EXIT_BLOCKED
    return EXIT_OK


def cmd_dataset_align(a: argparse.Namespace) -> int:
    from voicelane import dataset

    cfg = dataset.DatasetConfig(language=a.language, min_total_minutes=0.0, denoise=a.denoise)
    report = dataset.align_dataset(a.path, a.out, cfg)
    if a.json:
        print(json.dumps(report, sort_keys=True, indent=2))
    else:
        from voicelane.progress import print_dataset_report

        print_dataset_report(report)
        al = report["alignment"]
        print(
            f"aligned {al['aligned']} clip(s), alignment_failed {al['failed']}; median score "
            f"{al['score_median']}; TextGrids in {a.out / dataset.TEXTGRID_DIR}"
        )
    if not report["entries"]:
        print("error: no clip could be aligned; see the report", file=sys.stderr)
        return EXIT_BLOCKED
    return EXIT_OK


def cmd_dataset_prepare(a: argparse.Namespace) -> int:
    from voicelane.lane import run_lane
    from voicelane.runspec import RunSpec

    _sigterm_to_interrupt()
    spec = RunSpec.build(
        job_type="dataset",
        data=a.data,
        profile_id=a.profile,
        out=a.out or Path("runs") / a.profile,
        language=a.language,
        min_minutes=a.min_minutes,
    )
    run_lane(spec, Emitter(sys.stdout))
    return EXIT_OK


def cmd_validate(a: argparse.Namespace) -> int:
    from voicelane.bundle import validate_voice_bundle

    if a.json:  # the old validator's CLI: its result shape, minimal bundles accepted
        legacy = validate_voice_bundle(a.bundle, legacy=True)
        print(json.dumps(legacy, sort_keys=True, separators=(",", ":")))
        return EXIT_OK if legacy["ok"] else EXIT_ERROR
    res = validate_voice_bundle(a.bundle, level=a.level)
    print(json.dumps(res.to_dict(), sort_keys=True, indent=2))
    return EXIT_OK if res.ok else EXIT_ERROR


def cmd_speak(a: argparse.Namespace) -> int:
    from voicelane.speak import speak_and_play, speak_to_file

    if a.play:
        info = speak_and_play(a.bundle, a.text, engine=a.engine, length_scale=a.length_scale, out=a.out)
    elif a.out is None:
        raise VoicelaneError("invalid_argument", "pass --out FILE, --play, or both", {"flag": "--out"})
    else:
        info = speak_to_file(a.bundle, a.text, a.out, engine=a.engine, length_scale=a.length_scale)
    print(json.dumps(info, sort_keys=True))
    return EXIT_OK


def cmd_languages(a: argparse.Namespace) -> int:
    from voicelane.engine.frontend import languages_table

    rows = languages_table()
    if a.json:
        print(json.dumps(rows, sort_keys=True, ensure_ascii=False))
        return EXIT_OK
    for r in rows:
        numbers = "numbers" if r["numbers"] else "no number rules: write numbers as words"
        print(
            f"{r['code']:<6} {r['name']:<32} {r['package']} {r['package_version']}  "
            f"{r['phonemes']} tokens, {r['script']} script, {numbers}"
        )
    return EXIT_OK


def cmd_demo(a: argparse.Namespace) -> int:
    from voicelane.demo import run_demo

    _sigterm_to_interrupt()
    return run_demo(out=a.out, protocol=a.protocol, quick=a.quick, threads=a.threads)


def cmd_base(a: argparse.Namespace) -> int:
    from voicelane import base_voice

    if a.base_cmd == "list":
        base_voice.print_allowlist()
        return EXIT_OK
    _sigterm_to_interrupt()
    return base_voice.train_base(out=a.out, steps=a.steps, threads=a.threads, protocol=a.protocol, do_install=a.install)


def cmd_serve(a: argparse.Namespace) -> int:
    from voicelane.service.main import serve

    return serve(host=a.host, port=a.port)


def cmd_verify(a: argparse.Namespace) -> int:
    from voicelane.ops import verify

    if a.verify_cmd == "export":
        return verify.run_export_cli(a)
    return verify.run_verify_cli(a)


def cmd_voices(a: argparse.Namespace) -> int:
    """The voice registry: list, publish a bundle, roll a profile back to its previous version."""
    from voicelane import registry

    if a.voices_cmd == "list":
        print(json.dumps(registry.status(a.registry), sort_keys=True, indent=2))
        return EXIT_OK
    if a.voices_cmd == "publish":
        cert = None
        if a.certificate is not None:
            try:
                cert = json.loads(a.certificate.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                raise VoicelaneError(
                    "invalid_argument", f"cannot read --certificate {a.certificate}: {exc}", {"flag": "--certificate"}
                ) from None
        pub = registry.publish(a.bundle, a.registry, a.profile, certificate=cert)
    else:
        pub = registry.rollback(a.registry, a.profile)
    print(json.dumps({a.voices_cmd: pub.to_dict()}, sort_keys=True))
    return EXIT_OK


def cmd_readiness(a: argparse.Namespace) -> int:
    from voicelane.ops import readiness

    return readiness.run_readiness_cli(a)


def build_parser() -> argparse.ArgumentParser:
    from voicelane.runspec import default_threads

    ap = argparse.ArgumentParser(prog="voicelane", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="run a training lane on a dataset")
    _lane_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="run the lane for a RunSpec JSON file (what the service and runners start)")
    p.add_argument("spec", type=Path, help="spec.json (voicelane.runspec.RunSpec)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("dataset", help="dataset checks and preparation")
    dsub = p.add_subparsers(dest="dataset_cmd", required=True)
    c = dsub.add_parser("check", help="print the dataset report without training")
    c.add_argument("path", type=Path)
    c.add_argument("--language", default="en-us")
    c.add_argument("--min-minutes", type=float, default=None)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_dataset_check)
    c = dsub.add_parser("align", help="force-align every clip; write Praat TextGrids and a report")
    c.add_argument("path", type=Path)
    c.add_argument("--language", default="en-us", help="BCP-47 language of the transcripts")
    c.add_argument("--out", type=Path, required=True, help="folder for textgrids/ and the report")
    c.add_argument("--denoise", action="store_true", help="denoise clips (noisereduce) first")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_dataset_align)
    c = dsub.add_parser("prepare", help="validate + normalise a dataset (the `dataset` job)")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--profile", required=True)
    c.add_argument("--out", type=Path, default=None)
    c.add_argument("--language", default="en-us")
    c.add_argument("--min-minutes", type=float, default=None)
    c.set_defaults(func=cmd_dataset_prepare)

    p = sub.add_parser("validate", help="validate a voice_bundle/1 directory")
    p.add_argument("bundle", type=Path)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the old validator's result shape {ok, profileId, filesValidated} | "
        "{ok: false, failure: {code, message, details}} (level compat)",
    )
    p.add_argument(
        "--level",
        choices=("full", "compat"),
        default="full",
        help="compat also accepts the old minimal layout (five manifest fields + files)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("speak", help="synthesise text with a validated bundle")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--out", type=Path, default=None, help="write a WAV here (required unless --play)")
    p.add_argument(
        "--play",
        action="store_true",
        help="stream the speech into an audio player as it is made ($VOICELANE_PLAYER or the first of "
        "pw-play/aplay/paplay/ffplay/play on PATH; none: error audio_player_missing)",
    )
    p.add_argument("--engine", choices=["auto", "pytorch", "onnx"], default="auto")
    p.add_argument("--length-scale", type=float, default=1.0)
    p.set_defaults(func=cmd_speak)

    p = sub.add_parser("languages", help="list the languages of the front end (--language takes BCP-47: ru, pt-BR...)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_languages)

    p = sub.add_parser("demo", help="the main job: fine-tune the shipped base voice to the demo speaker")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    p.add_argument("--protocol", action="store_true")
    p.add_argument("--quick", action="store_true", help="~1 minute smoke run")
    p.add_argument("--threads", type=int, default=default_threads())
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("base", help="the shipped base voice")
    bsub = p.add_subparsers(dest="base_cmd", required=True)
    c = bsub.add_parser("list", help="list allowlisted base weights and their licences")
    c.set_defaults(func=cmd_base)
    c = bsub.add_parser("train", help="reproduce the base voice from the embedded slt corpus")
    c.add_argument("--out", type=Path, default=Path("runs/base"))
    c.add_argument("--steps", type=int, default=None)
    c.add_argument("--threads", type=int, default=default_threads())
    c.add_argument("--protocol", action="store_true")
    c.add_argument("--install", action="store_true", help="copy the result into weights/ and update the allowlist")
    c.set_defaults(func=cmd_base)

    p = sub.add_parser(
        "verify",
        help="verification gate: pack voicelane-lane/2 -> PASS/FAIL + certificate (exit 0 PASS, 2 FAIL, 1 error)",
    )
    p.add_argument("--bundle", type=Path, default=None, help="bundle dir (default: the one the status names)")
    p.add_argument(
        "--status",
        type=Path,
        default=None,
        help="train_status JSON (default TRAIN_STATUS_PATH or artifacts/train_status.tts_prod_train.json)",
    )
    p.add_argument(
        "--url",
        default=None,
        help="running service to replay the train routes against (default: start one on loopback)",
    )
    p.add_argument("--token", default=None, help="bearer token for --url (default VOICELANE_API_TOKEN)")
    p.add_argument("--trace", type=Path, default=Path("reports/training-trace.jsonl"))
    p.add_argument("--junit", type=Path, default=None, help="junit XML of the test run")
    p.add_argument(
        "--run-tests", action="store_true", help="run the README test command (bash scripts/test.sh) and bind its junit"
    )
    p.add_argument("--skip-determinism", action="store_true", help="do not run the lane twice (fails the constraint)")
    p.add_argument("--determinism-data", type=Path, default=None)
    p.add_argument("--determinism-steps", type=int, default=2)
    p.add_argument("--consent-statement", type=Path, default=None, help="re-hash and bind the consent statement")
    p.add_argument("--trace-id", default=None)
    p.add_argument("--rtf-max", type=float, default=None)
    p.add_argument("--latency-ms-max", type=float, default=None)
    p.add_argument("--json-out", type=Path, default=None, help="also write the verdict JSON here")
    p.set_defaults(func=cmd_verify, verify_cmd=None)
    vsub = p.add_subparsers(dest="verify_cmd")
    c = vsub.add_parser("export", help="write the training-trace records")
    c.add_argument("--out", type=Path, required=True, help="FILE.jsonl (or .json for an array)")
    c.add_argument("--trace", type=Path, default=Path("reports/training-trace.jsonl"))
    c.add_argument("--profile", default=None, help="only this voice profile's records")
    c.add_argument("--limit", type=int, default=None, help="only the newest N records")
    c.set_defaults(func=cmd_verify)

    p = sub.add_parser("voices", help="the voice registry the service serves from (list, publish, rollback)")
    vsub = p.add_subparsers(dest="voices_cmd", required=True)
    for name, help_ in (
        ("list", "published profiles and their versions"),
        ("publish", "publish a validated production bundle (a failed gate never publishes)"),
        ("rollback", "serve the profile's previous version again"),
    ):
        c = vsub.add_parser(name, help=help_)
        c.add_argument(
            "--registry",
            type=Path,
            help="registry root (default VOICELANE_REGISTRY_DIR, else VOICELANE_DATA_DIR, else ./var)",
        )
        if name == "publish":
            c.add_argument("bundle", type=Path)
            c.add_argument("--profile", default=None)
            c.add_argument(
                "--certificate", type=Path, help="the `voicelane verify --json-out` document that certified this bundle"
            )
        elif name == "rollback":
            c.add_argument("profile")
        c.set_defaults(func=cmd_voices)

    p = sub.add_parser("readiness", help="write reports/readiness.md and .json from real checks (exit 0 GO, 2 NO-GO)")
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--status", type=Path, default=None)
    p.add_argument("--trace", type=Path, default=Path("reports/training-trace.jsonl"))
    p.add_argument("--out", type=Path, default=Path("reports/readiness.md"))
    p.set_defaults(func=cmd_readiness)

    p = sub.add_parser("serve", help="run the HTTP service")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(func=cmd_serve)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VoicelaneError as err:
        if os.environ.get("VOICELANE_DEBUG") and err.__cause__ is not None:
            import traceback

            traceback.print_exception(err.__cause__)
        _print_error(err)
        return _exit_code(err)
    except KeyboardInterrupt:
        _print_error(VoicelaneError("cancelled", "interrupted"))
        return EXIT_CANCELLED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

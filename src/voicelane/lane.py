"""The training lanes (SPEC §2): dataset -> features -> train -> evaluate -> bundle -> validate.

`run_lane` is the one function the CLI, the HTTP job runner and the orchestrator call (the
latter two through a child process speaking the line protocol).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicelane import __version__, bundle, dataset
from voicelane.errors import VoicelaneError
from voicelane.fsutil import atomic_write_json, canonical_json, sha256_file, sha256_text
from voicelane.paths import REPO_ROOT
from voicelane.protocol import Emitter
from voicelane.runspec import LANES, RunSpec
from voicelane.status import StatusWriter, default_status_path, finalize

# Gates of the production lane (overridable with --gates JSON). Metric names from eval.json.
DEFAULT_GATES = {"wer_max": 0.35, "mcd_db_max": 12.0}
LOG_EVERY = 10


class Reporter:
    """Human-facing progress (stderr). The CLI swaps in a rich implementation."""

    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, done: int, total: int | None = None) -> None:
        pass

    def log(self, msg: str) -> None:
        import sys

        try:
            print(msg, file=sys.stderr, flush=True)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the reader is gone; the status JSON remains the record

    def close(self) -> None:
        pass


def git_commit() -> str:
    """The code's commit: git, else VOICELANE_BUILD_COMMIT (set in the Docker image), else unknown."""
    env = os.environ.get("VOICELANE_BUILD_COMMIT")
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() or env or "unknown"
    except (OSError, subprocess.SubprocessError):
        return env or "unknown"


def fixed_created_at(dataset_manifest: dict[str, Any]) -> str:
    """SOURCE_DATE_EPOCH when set; else a date derived from nothing but the inputs (reproducible)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return bundle.created_at_from(epoch, "1980-01-01T00:00:00Z")


def read_consent(path: Path | None, speaker_name: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    if not path.is_file():
        raise VoicelaneError("consent_missing", f"consent statement {path} does not exist", {"path": str(path)})
    digest, size = sha256_file(path)
    if size == 0:
        raise VoicelaneError("consent_missing", f"consent statement {path} is empty", {"path": str(path)})
    fields: dict[str, str] = {}
    if path.suffix.lower() in (".txt", ".md", ""):
        for line in path.read_text("utf-8", errors="replace").splitlines():
            key, sep, val = line.partition(":")
            if sep and key.strip().lower() in ("speaker_name", "recorded_at", "asserted_by"):
                fields[key.strip().lower()] = val.strip()
    return {
        "speaker_name": speaker_name or fields.get("speaker_name") or "unknown",
        "statement_sha256": digest,
        "statement_kind": "audio" if path.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3") else "text",
        "recorded_at": fields.get("recorded_at"),
        "asserted_by": fields.get("asserted_by") or "operator",
    }


# --- what each stage of a run hands to the next ------------------------------------------------


@dataclass
class Plan:
    language: str
    prod: bool
    preset: dict[str, Any]
    steps: int


@dataclass
class BaseGates:
    consent: dict[str, Any] | None
    base_gate: Any = None  # weights.LicenceGate when fine-tuning
    base_dir: Path | None = None


@dataclass
class Data:
    manifest: dict[str, Any]
    ds_dir: Path

    @property
    def manifest_path(self) -> Path:
        return self.ds_dir / "dataset_manifest.json"


@dataclass
class Features:
    aligned: list[dict[str, Any]]
    train_items: list[Any]


@dataclass
class Start:
    arch: dict[str, Any]
    init_state: dict[str, Any] | None
    mean: np.ndarray
    std: np.ndarray
    symbols: list[str]


@dataclass
class Trained:
    ck: dict[str, Any]
    start: Start
    tcfg: Any  # engine.train.TrainConfig
    run_dir: Path


@dataclass
class Evaluated:
    voice: Any  # engine.voice.Voice
    voice_dir: Path
    res: dict[str, Any]
    samples: list[Any]
    rtf: float
    failed: list[dict[str, Any]]
    summary: dict[str, Any]


class Lane:
    def __init__(self, opts: RunSpec, emitter: Emitter, reporter: Reporter | None = None):
        self.o = opts
        self.em = emitter
        self.rep = reporter or Reporter()
        self.lane = LANES[opts.job_type]
        self.status = StatusWriter(opts.status_path or default_status_path(opts.job_type), opts.job_type, self.lane)
        # keys old status readers use, present from the first write (the run updates them)
        self.status.stats({"dataset_items": 0, "bundle_valid": False})
        self.timings: dict[str, float] = {}

    # --- protocol helpers -------------------------------------------------
    def tick(self, current: int, stats: dict[str, Any] | None = None, artifacts: tuple[str, ...] = ()) -> None:
        self.em.progress(current)
        self.status.doc["progress"] = {"current": current, "total": self.em.total}
        if stats:
            self.em.stats(stats)
            self.status.stats(stats, flush=False)
        for a in artifacts:
            self.em.artifact(a)
            self.status.doc["artifacts"].append(a)
        self.status.flush()

    def rel(self, p: Path) -> str:
        return Path(os.path.relpath(p, self.o.out)).as_posix()

    def timed(self, key: str, t0: float) -> None:
        import time

        self.timings[key] = round(time.perf_counter() - t0, 3)
        self.status.doc["timings_s"] = dict(self.timings)

    # --- the run -------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            result = self._run()
        except VoicelaneError as err:
            finalize(self.status.path, err, doc=self.status.doc)
            raise
        except KeyboardInterrupt:
            err = VoicelaneError("cancelled", "the run was interrupted", {})
            finalize(self.status.path, err, doc=self.status.doc)
            raise err from None
        except MemoryError as exc:
            err = VoicelaneError("out_of_memory", f"out of memory: {exc}", {})
            finalize(self.status.path, err, doc=self.status.doc)
            raise err from exc
        except Exception as exc:
            err = VoicelaneError("internal_error", f"{type(exc).__name__}: {exc}", {})
            finalize(self.status.path, err, doc=self.status.doc)
            raise err from exc
        finalize(self.status.path, doc=self.status.doc)
        return result

    def _run(self) -> dict[str, Any]:
        plan = self._plan()
        gates = self._gates_before_data(plan)
        data = self._dataset(plan)
        if self.o.job_type == "dataset":
            return {"dataset_manifest": str(data.manifest_path), "totals": data.manifest["totals"]}
        feats = self._features(plan, data)
        trained = self._train(plan, gates, feats)
        evaluated = self._evaluate(plan, data, trained)
        return self._bundle(plan, gates, data, trained, evaluated)

    # --- the stages, in order ------------------------------------------------------------------
    def _plan(self) -> Plan:
        from voicelane.engine import model as model_mod
        from voicelane.engine.frontend import check_language

        o = self.o
        bundle.validate_profile_id(o.profile_id)
        language = check_language(o.language)
        preset = model_mod.preset(o.preset)
        finetune = bool(o.base) and o.job_type != "dataset"
        steps = int(o.steps if o.steps is not None else preset["finetune_steps" if finetune else "steps"])
        total = 1 if o.job_type == "dataset" else steps + 4
        self.em.set_total(total)
        self.status.doc["progress"] = {"current": 0, "total": total}
        self.status.doc["options"] = {
            "profile_id": o.profile_id,
            "preset": o.preset,
            "base": o.base,
            "steps": steps,
            "seed": o.seed,
            "language": language,
        }
        self.status.flush()
        o.out.mkdir(parents=True, exist_ok=True)
        return Plan(language, o.job_type == "tts_prod_train", preset, steps)

    def _gates_before_data(self, plan: Plan) -> BaseGates:
        """Consent and licence: the gates that need no data come first."""
        o = self.o
        consent = read_consent(o.consent_statement, o.speaker_name)
        if plan.prod and consent is None and o.job_type != "dataset":
            raise VoicelaneError(
                "consent_missing",
                "the production lane needs the speaker's consent statement",
                {"flag": "--consent-statement"},
            )
        if not o.base or o.job_type == "dataset":
            return BaseGates(consent)
        from voicelane import weights

        gate = weights.licence_gate(o.base, o.accept_license_risk)
        return BaseGates(consent, gate, weights.verify_files(gate))

    def _dataset(self, plan: Plan) -> Data:
        t0 = time.perf_counter()
        self.rep.phase("dataset")
        cfg = dataset.DatasetConfig(language=plan.language)
        if self.o.min_minutes is not None:
            cfg.min_total_minutes = self.o.min_minutes
        ds_dir = self.o.out / "dataset"
        manifest = dataset.prepare_dataset(self.o.data, ds_dir, cfg, on_progress=self.rep.advance)
        totals = manifest["totals"]
        for w in manifest.get("warnings", []):
            self.rep.log(f"warning: {w}")
        self.timed("dataset", t0)
        data = Data(manifest, ds_dir)
        self.status.doc["dataset_manifest"] = str(data.manifest_path)
        # `dataset_items` (and `schema` for dataset jobs): the voice_dataset/1 STATS old readers parse
        dataset_stats = {
            "phase": "dataset",
            "kept": totals["kept"],
            "dataset_items": totals["kept"],
            "rejected": totals["rejected"],
            "kept_minutes": totals["kept_minutes"],
            "dataset_sha256": manifest["dataset_sha256"],
        }
        if self.o.job_type == "dataset":
            dataset_stats["schema"] = "voice_dataset/1"
        self.tick(1, dataset_stats, (self.rel(data.manifest_path),))
        return data

    def _features(self, plan: Plan, data: Data) -> Features:
        from voicelane.engine import data as data_mod

        t0 = time.perf_counter()
        self.rep.phase("features", len(data.manifest["entries"]))
        entries = [dict(e, abs_path=data.ds_dir / e["path"]) for e in data.manifest["entries"]]
        items, align_errors = data_mod.prepare_all(
            entries, self.o.out / "work" / "cache", plan.language, workers=self.o.threads, on_done=self.rep.advance
        )
        aligned = [e for e in entries if e["id"] not in align_errors]
        # with a separate held-out set, the validation split is not needed for evaluation
        train_items = items if self.o.heldout else [it for it, e in zip(items, aligned) if e["split"] == "train"]
        train_items = train_items or items
        if not train_items:
            raise VoicelaneError(
                "dataset_empty", "no clip could be aligned to its transcript", {"alignment_failures": len(align_errors)}
            )
        self.timed("features", t0)
        self.tick(
            2,
            {
                "phase": "features",
                "aligned": len(items),
                "alignment_failures": len(align_errors),
                "train_items": len(train_items),
            },
        )
        return Features(aligned, train_items)

    def _starting_point(self, plan: Plan, gates: BaseGates, feats: Features) -> Start:
        """Architecture, initial weights and feature statistics: the base's when fine-tuning."""
        from voicelane.engine import crosslingual, frontend
        from voicelane.engine import data as data_mod
        from voicelane.engine import model as model_mod

        inventory = frontend.inventory(plan.language)
        if gates.base_dir is None:
            mean, std = data_mod.feature_stats(feats.train_items)
            return Start(
                model_mod.architecture(plan.preset, len(inventory.symbols)), None, mean, std, inventory.symbols
            )
        from safetensors.torch import load_file

        from voicelane.engine.features import LF0_IDX
        from voicelane.engine.voice import CONFIG_FILE, WEIGHTS_FILE

        base_cfg = json.loads((gates.base_dir / CONFIG_FILE).read_text("utf-8"))
        arch = dict(base_cfg["arch"], num_chars=len(inventory.symbols))
        # sounds the base never heard start from their nearest base sound (crosslingual.py)
        init_state = crosslingual.extend_state(load_file(str(gates.base_dir / WEIGHTS_FILE)), inventory.symbols)
        if inventory.new_symbols:
            self.status.doc["crosslingual_init"] = crosslingual.init_table(inventory.symbols)
        mean = np.asarray(base_cfg["feat_mean"], dtype=np.float32)
        std = np.asarray(base_cfg["feat_std"], dtype=np.float32)
        # Pitch is normalised per speaker: the base's F0 contours land in the new speaker's
        # range from step 0 (measured: docs/model-choice.md); spectra keep the base's statistics.
        spk_mean, spk_std = data_mod.feature_stats(feats.train_items)
        mean[LF0_IDX], std[LF0_IDX] = spk_mean[LF0_IDX], spk_std[LF0_IDX]
        return Start(arch, init_state, mean, std, inventory.symbols)

    def _train(self, plan: Plan, gates: BaseGates, feats: Features) -> Trained:
        from voicelane.engine import train as train_mod

        o, p, steps = self.o, plan.preset, plan.steps
        start = self._starting_point(plan, gates, feats)
        ft = "finetune_" if gates.base_dir is not None else ""
        tcfg = train_mod.TrainConfig(
            steps=steps,
            batch_size=p["batch_size"],
            lr=p[f"{ft}lr"],
            warmup=p[f"{ft}warmup"],
            checkpoint_every=p["checkpoint_every"],
            seed=o.seed,
            threads=o.threads,
            snapshot_every=o.snapshot_every,
            finetune_scope=(o.finetune_scope or p["finetune_scope"]) if ft else "all",
            device=o.device,
        )
        t0 = time.perf_counter()
        self.rep.phase("train", steps)
        run_dir = o.out / "work" / "train"

        def on_step(step: int, losses: dict[str, float]) -> None:
            self.rep.advance(step, steps)
            if step % LOG_EVERY == 0 or step == steps:
                self.tick(
                    2 + step,
                    {
                        "phase": "train",
                        "step": step,
                        **{k: round(v, 4) for k, v in sorted(losses.items()) if k in ("loss", "loss_spec", "loss_dur")},
                    },
                )

        if o.nproc > 1:
            from voicelane.engine import ddp
            from voicelane.engine.voice import WEIGHTS_FILE

            train_ids = {it.id for it in feats.train_items}
            spec = ddp.write_spec(
                o.out / "work" / "ddp_spec.json",
                [e for e in feats.aligned if e["id"] in train_ids],
                o.out / "work" / "cache",
                plan.language,
                start.arch,
                tcfg,
                run_dir,
                start.mean,
                start.std,
                (gates.base_dir / WEIGHTS_FILE) if gates.base_dir is not None else None,
            )
            ddp.launch(spec, o.nproc, on_step)
            ck = train_mod.load_checkpoint(run_dir / train_mod.CKPT_NAME)
        else:
            ck = train_mod.train(
                feats.train_items, start.arch, tcfg, run_dir, start.mean, start.std, start.init_state, on_step
            )
        self.timed("train", t0)
        self.status.doc["train_s_per_step"] = round(self.timings["train"] / max(1, steps), 4)
        return Trained(ck, start, tcfg, run_dir)

    def _evaluate(self, plan: Plan, data: Data, trained: Trained) -> Evaluated:
        from voicelane import evaluate as ev
        from voicelane.engine.voice import Voice, save_voice

        o, start = self.o, trained.start
        voice_dir = o.out / "work" / "voice"
        voice_dir.mkdir(parents=True, exist_ok=True)
        extra = {
            "engine": self.engine_info(),
            "preset": o.preset,
            "steps": plan.steps,
            "base_weights": o.base,
            "postfilter": 0.0,
        }
        weights_state = trained.ck["model"]
        if o.select_snapshot and o.snapshot_every:
            from voicelane.selection import select_snapshot

            chosen = select_snapshot(trained.run_dir, trained.ck, start.arch, start.mean, start.std, plan.language)
            weights_state = chosen.state
            extra["selected_step"] = chosen.step
            self.status.doc["snapshot_selection"] = chosen.table
            self.em.stats({"phase": "select", "selected_step": chosen.step, "selected_prompts_wer": chosen.prompts_wer})
        save_voice(
            voice_dir, weights_state, start.arch, start.mean, start.std, plan.language, extra, symbols=start.symbols
        )
        voice = Voice.load(voice_dir, threads=1)
        t0 = time.perf_counter()
        clips = self.heldout_clips(data.manifest, data.ds_dir, plan.language)
        self.rep.phase("evaluate", len(clips) + 8)
        prompts = ev.REGRESSION_PROMPTS[: o.eval_max] if o.eval_max else None
        res = ev.evaluate(voice.synthesize, clips, prompts, language=plan.language, on_progress=self.rep.advance)
        samples = res.pop("_audio")
        rtf = res.pop("rtf")
        self.timed("evaluate", t0)
        res["model_params"] = int(sum(v.numel() for v in trained.ck["model"].values()))
        gates = dict(ev.gates_for(plan.language) if plan.prod else {}) | (o.gates or {})
        failed = ev.check_gates(res, gates)
        res["gates"] = {"thresholds": gates, "failed": failed, "passed": not failed}
        res["heldout"] = self.heldout_record(clips)
        summary = {
            k: res[k]
            for k in (
                *ev.HEADLINE_METRICS,
                "f0_rmse_hz",
                "duration_ratio",
                "prompts_wer",
                "n_heldout",
                "per",
                "per_floor_real_audio",
                "per_broad",
                "per_broad_floor_real_audio",
            )
        }
        self.status.doc["perf"] = {"rtf": rtf}
        self.tick(plan.steps + 3, {"phase": "evaluate", **summary, "gates_passed": not failed})
        return Evaluated(voice, voice_dir, res, samples, rtf, failed, summary)

    def _bundle(
        self, plan: Plan, gates: BaseGates, data: Data, trained: Trained, evaluated: Evaluated
    ) -> dict[str, Any]:
        o, failed = self.o, evaluated.failed
        files = self.stage_bundle_files(
            evaluated.voice_dir, evaluated.res, evaluated.samples, evaluated.voice, o.profile_id
        )
        manifest_fields = self._manifest_fields(plan, gates, data, trained, evaluated)
        # a voice that failed its gates never replaces the served bundle: it lands in candidates/
        export_root = o.out / "candidates" if failed else o.out
        result = bundle.export_bundle(
            export_root,
            o.profile_id,
            o.display_name or o.profile_id,
            files,
            fixed_created_at(data.manifest),
            manifest_fields,
        )
        shutil.rmtree(o.out / "work" / "staging", ignore_errors=True)
        bdir = bundle.bundle_dir_for(export_root, o.profile_id)
        perf = {
            "rtf_pytorch": evaluated.rtf,
            "timings_s": self.timings,
            "threads": o.threads,
            "note": "machine-dependent; not covered by the manifest checksums",
        }
        atomic_write_json(bdir / "perf.json", perf)
        if not result.ok:
            raise VoicelaneError("bundle_invalid", "the exported bundle failed validation", result.error or {})
        self.status.doc["bundle"] = str(bdir)
        self.status.doc["bundle_manifest_sha256"] = sha256_file(bdir / "manifest.json")[0]
        if failed:
            self.tick(
                plan.steps + 4,
                {"phase": "bundle", "bundle_valid": True, "promotable": False},
                (self.rel(bdir / "manifest.json"),),
            )
            raise VoicelaneError(
                "eval_gate_failed",
                "the voice did not pass the evaluation gates: "
                + ", ".join(f"{f['gate']}={f['value']} (limit {f['limit']})" for f in failed),
                {"failed": failed, "candidate_bundle": self.rel(bdir)},
            )
        self.tick(
            plan.steps + 4,
            {
                "phase": "bundle",
                "bundle_valid": True,
                "files_validated": result.files_validated,
                "promotable": manifest_fields["promotable"],
            },
            (self.rel(bdir / "manifest.json"),),
        )
        return {"bundle": str(bdir), "eval": evaluated.summary, "rtf": evaluated.rtf}

    def _manifest_fields(
        self, plan: Plan, gates: BaseGates, data: Data, trained: Trained, evaluated: Evaluated
    ) -> dict[str, Any]:
        train_cfg = {k: v for k, v in trained.tcfg.__dict__.items() if k not in ("threads", "snapshot_every")}
        base_gate = gates.base_gate
        return {
            "lane": self.lane,
            "promotable": plan.prod and not evaluated.failed,
            "language": plan.language,
            "engine": {
                "name": "voicelane-forwardtts-world",
                "version": __version__,
                "model_type": "coqui-tts ForwardTTS (SpeedySpeech) + WORLD vocoder",
                "library": f"coqui-tts {self.engine_info()['coqui_tts']}",
                "sample_rate": 16000,
            },
            "provenance": {
                "commit": git_commit(),
                "config_sha256": sha256_text(
                    canonical_json({"arch": trained.start.arch, "preset": self.o.preset, "train": train_cfg})
                ),
                "dataset_sha256": data.manifest["dataset_sha256"],
                "base_weights": base_gate.provenance() if base_gate else None,
                "license_override": bool(base_gate and base_gate.override),
            },
            "consent": gates.consent,
            "eval": evaluated.summary | {"gates_passed": not evaluated.failed},
        }

    def engine_info(self) -> dict[str, str]:
        import importlib.metadata as md

        return {
            "coqui_tts": md.version("coqui-tts"),
            "torch": md.version("torch"),
            "pyworld": md.version("pyworld"),
            "gruut": md.version("gruut"),
        }

    def heldout_record(self, clips) -> dict[str, Any]:
        """Which real recordings the voice was scored against (ids + texts, the source folder's
        name, never its path), so a listener can find and play them beside the voice."""
        source = self.o.heldout or self.o.data
        return {
            "source": "heldout_dataset" if self.o.heldout else "val_split",
            "dataset_name": Path(source).name if source else None,
            "clips": [{"id": c.id, "text": c.text} for c in clips],
        }

    def heldout_clips(self, manifest: dict[str, Any], ds_dir: Path, language: str):
        import soundfile as sf

        from voicelane.evaluate import Clip

        if self.o.heldout:
            cfg = dataset.DatasetConfig(language=language, min_total_minutes=0.0, val_fraction=0.0, val_min=0)
            hman = dataset.prepare_dataset(self.o.heldout, self.o.out / "heldout", cfg)
            root, entries = self.o.out / "heldout", hman["entries"]
        else:
            root, entries = ds_dir, [e for e in manifest["entries"] if e["split"] == "val"]
        entries = sorted(entries, key=lambda e: e["id"])[: self.o.eval_max or None]
        return [Clip(e["id"], e["text"], sf.read(root / e["path"], dtype="float32")[0]) for e in entries]

    def stage_bundle_files(
        self, voice_dir: Path, res: dict[str, Any], samples, voice, profile_id: str
    ) -> dict[str, Path]:
        import soundfile as sf

        staging = self.o.out / "work" / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        files: dict[str, Path] = {
            "model.safetensors": voice_dir / "model.safetensors",
            "voice_config.json": voice_dir / "voice_config.json",
        }
        atomic_write_json(staging / "eval.json", res)
        files["eval.json"] = staging / "eval.json"
        sample = voice.synthesize(SAMPLE_TEXT)
        sf.write(staging / "sample.wav", sample.audio, sample.sample_rate, subtype="PCM_16")
        files["sample.wav"] = staging / "sample.wav"
        for clip_id, _text, audio in samples:
            name = f"samples/{clip_id}.wav"
            (staging / "samples").mkdir(exist_ok=True)
            sf.write(staging / name, audio, 16000, subtype="PCM_16")
            files[name] = staging / name
        if self.o.onnx:
            from voicelane.engine import onnx_export

            try:
                onnx_path = onnx_export.export(voice, staging / "model.onnx")
                files["model.onnx"] = onnx_path
            except onnx_export.ExportUnavailable as exc:
                self.rep.log(f"onnx export skipped: {exc}")
        return files


SAMPLE_TEXT = "Hello. This voice was trained on your own recordings, and it runs entirely on this machine."


def run_lane(opts: RunSpec, emitter: Emitter, reporter: Reporter | None = None) -> dict[str, Any]:
    return Lane(opts, emitter, reporter).run()

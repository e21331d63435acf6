"""Robustness suite: degrade a clean corpus reproducibly, then check and align it.

    .venv/bin/python tools/render_align_refs.py --out /tmp/align_refs      # needs Festival
    .venv/bin/python bench/robustness.py --refs /tmp/align_refs [--lang cs] [--json out.json]

Degradations (bench/degrade.py, seeded per clip): pink noise at 30/20/10 dB SNR, reverb from a
simulated shoebox room (pyroomacoustics, RT60 0.4 s), both (20 dB + reverb), level drift (gain
falling linearly by 24 dB across the corpus), 5 % of transcripts with one wrong word, 10 dB SNR
with the dataset step's opt-in denoising (noisereduce), and the
8 kHz telephone band (written as 8 kHz files, so the dataset step's narrowband path runs).

For each language and degradation the bench builds an LJSpeech folder, runs the dataset step
with alignment (``voicelane dataset align``'s code: checks, TextGrids, ``alignment_failed``)
and measures boundary accuracy of the same aligner on the degraded, untrimmed clips against
Festival's segment times. Printed: boundary accuracy (within 20/50 ms), clips rejected by
reason, whether the corrupted transcripts were caught, and the corpus SNR estimate.

With ``--finetune-steps N`` the bench also runs the lane's quick fine-tune per language and
degradation: the first ``--finetune-clips`` clips of the language's training corpus
(FINETUNE_CORPORA: en = corpora/kal, it = runs/it_corpus/train from
bench/multilingual/italian_corpus.py) are degraded the same way, then ``voicelane train --lane
tts_prod_train --base voicelane-slt-base-v1 --preset cpu --steps N --threads 1 --no-onnx`` runs
in process on that folder, scored against CLEAN held-out recordings of the same speaker (en =
corpora/kal_heldout, it = runs/it_corpus/heldout): MCD-DTW, median F0 error, F0 RMSE, duration
ratio, WER (English) and PER / PER broad, from the lane's eval.json. Run folders go to
``--finetune-out`` (a finished condition's row.json is reused unless ``--fresh``)::

    nice -n 19 .venv/bin/python bench/robustness.py --finetune-only --finetune-steps 100 --lang en
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tools"))

CONDITIONS = (
    "clean",
    "snr30",
    "snr20",
    "snr10",
    "snr10+denoise",
    "reverb",
    "snr20+reverb",
    "drift",
    "wrongword",
    "tel",
)
# most telling first, so a run cut short still compares clean with the hard cases
FINETUNE_CONDITIONS = ("clean", "snr10", "snr20+reverb", "reverb", "snr20", "tel", "wrongword", "drift")


def corrupt_transcripts(texts: list[str], share: float, seed: int) -> tuple[list[str], set[int]]:
    """Replace one word in `share` of the transcripts with a word from another transcript."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(share * len(texts))))
    picked = set(int(i) for i in rng.choice(len(texts), size=n, replace=False))
    out = list(texts)
    for i in sorted(picked):
        words = out[i].split()
        donors = [
            w
            for j, t in enumerate(texts)
            if j != i
            for w in t.split()
            if w.isalpha() and len(w) > 3 and w.lower() not in out[i].lower()
        ]
        k = int(rng.integers(len(words)))
        words[k] = donors[int(rng.integers(len(donors)))]
        out[i] = " ".join(words)
    return out, picked


def build_condition(source: Path, cond: str, n: int, folder: Path) -> dict:
    """The first `n` clips of the LJSpeech folder `source`, degraded by `cond`, written to `folder`."""
    from degrade import degrade, level_drift

    meta = [line.split("|") for line in (source / "metadata.csv").read_text("utf-8").splitlines() if line][:n]
    ids = [m[0] for m in meta]
    texts = [m[1].strip() for m in meta]
    wrong: set[int] = set()
    if cond == "wrongword":
        texts, wrong = corrupt_transcripts(texts, 0.05, seed=7)
    (folder / "wavs").mkdir(parents=True)
    audio = {}
    for k, clip_id in enumerate(ids):
        y, sr = sf.read(str(source / "wavs" / f"{clip_id}.flac"), dtype="float64")
        if cond == "drift":
            y = level_drift(y, -24.0 * k / max(len(ids) - 1, 1))
        elif cond == "snr10+denoise":
            y = degrade(y, sr, "snr10", seed=1000 + k)
        elif cond not in ("clean", "wrongword"):
            y = degrade(y, sr, cond, seed=1000 + k)
        y = y * min(1.0, 0.99 / max(np.max(np.abs(y)), 1e-9))
        audio[clip_id] = (y, sr)
        if cond == "tel":
            import soxr

            sf.write(folder / "wavs" / f"{clip_id}.flac", soxr.resample(y, sr, 8000), 8000)
        else:
            sf.write(folder / "wavs" / f"{clip_id}.flac", y, sr)
    (folder / "metadata.csv").write_text("".join(f"{i}|{t}\n" for i, t in zip(ids, texts)), encoding="utf-8")
    return {"ids": ids, "texts": texts, "wrong": {ids[i] for i in wrong}, "audio": audio}


def boundary_accuracy(refs: Path, lang: str, built: dict, denoise: bool = False) -> dict:
    from align_accuracy import hit_rate, reference_boundaries
    from render_align_refs import read_segs

    from voicelane.engine import align

    tot = {"ref": 0, "h20": 0, "h50": 0, "failed": 0}
    for clip_id, text in zip(built["ids"], built["texts"]):
        if clip_id in built["wrong"]:
            continue  # accuracy is measured on right transcripts only
        y, sr = built["audio"][clip_id]
        if denoise:
            from voicelane.dataset import _denoise

            y = _denoise(y, sr)
        ref = reference_boundaries(read_segs(refs / lang / "segs" / f"{clip_id}.lab"))
        try:
            pred = align.align_text(y, sr, text, lang).boundaries()
        except Exception:  # noqa: BLE001 - a failed clip scores zero hits
            pred, tot["failed"] = [], tot["failed"] + 1
        tot["ref"] += len(ref)
        tot["h20"] += hit_rate(ref, pred, 0.020)
        tot["h50"] += hit_rate(ref, pred, 0.050)
    return {
        "within_20ms": round(tot["h20"] / max(tot["ref"], 1), 3),
        "within_50ms": round(tot["h50"] / max(tot["ref"], 1), 3),
        "align_failed_direct": tot["failed"],
    }


def run_one(refs: Path, lang: str, cond: str, n: int) -> dict:
    from voicelane.dataset import DatasetConfig, align_dataset

    with tempfile.TemporaryDirectory(prefix="voicelane-robust-") as tmp:
        built = build_condition(refs / lang, cond, n, Path(tmp) / "data")
        cfg = DatasetConfig(language=lang, min_total_minutes=0.0, denoise=cond.endswith("denoise"))
        report = align_dataset(Path(tmp) / "data", Path(tmp) / "out", cfg)
    rejected = {r["id"]: r["reason"] for r in report["rejected"]}
    by_reason = {k: v for k, v in report["totals"]["rejected_by_reason"].items() if v}
    row = {
        "lang": lang,
        "condition": cond,
        "clips": len(built["ids"]),
        "rejected": by_reason,
        "kept": report["totals"]["kept"],
        "snr_db_median": report["quality"]["corpus"]["snr_db_median"],
        "level_drift_db_per_100_clips": report["quality"]["corpus"].get("level_drift_db_per_100_clips"),
        "align_score_median": report["alignment"]["score_median"],
    }
    if built["wrong"]:
        row["wrong_transcripts"] = sorted(built["wrong"])
        row["wrong_caught"] = sorted(i for i in built["wrong"] if i in rejected)
        row["wrong_caught_by"] = sorted({rejected[i] for i in built["wrong"] if i in rejected})
    row.update(boundary_accuracy(refs, lang, built, denoise=cond.endswith("denoise")))
    print(json.dumps(row, sort_keys=True), flush=True)
    return row


def markdown(header: list[str], align: str, cells: list[list[str]]) -> str:
    """A markdown table; `align` has one letter per column: l(eft) or r(ight)."""
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(c) + " |" for c in cells])


def _rejected(r: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(r["rejected"].items())) or "-"


def table(rows: list[dict]) -> str:
    header = ["language", "degradation", "≤20 ms", "≤50 ms", "kept", "rejected (reason: clips)"]
    header += ["SNR est. (median dB)", "wrong transcripts caught"]
    cells = []
    for r in rows:
        caught = (
            f"{len(r['wrong_caught'])}/{len(r['wrong_transcripts'])} ({', '.join(r['wrong_caught_by']) or 'none'})"
            if "wrong_transcripts" in r
            else ""
        )
        cells.append(
            [r["lang"], r["condition"], f"{r['within_20ms'] * 100:.1f} %", f"{r['within_50ms'] * 100:.1f} %"]
            + [f"{r['kept']}/{r['clips']}", _rejected(r), str(r["snr_db_median"]), caught]
        )
    return markdown(header, "llrrrlrl", cells)


# --- the lane's quick fine-tune on each degraded corpus -----------------------------------------

BASE_ID = "voicelane-slt-base-v1"
# language -> (training corpus, clean held-out recordings of the same speaker), LJSpeech folders
FINETUNE_CORPORA = {
    "en": (REPO / "corpora" / "kal", REPO / "corpora" / "kal_heldout"),
    "it": (REPO / "runs" / "it_corpus" / "train", REPO / "runs" / "it_corpus" / "heldout"),
}
EVAL_KEYS = (
    "mcd_db",
    "f0_median_rel_error",
    "f0_rmse_hz",
    "duration_ratio",
    "wer",
    "wer_floor_real_audio",
    "per",
    "per_broad",
    "per_floor_real_audio",
    "per_broad_floor_real_audio",
    "n_heldout",
)


def finetune_corpora(args, lang: str) -> tuple[Path, Path]:
    given = dict(v.split("=", 1) for v in args.finetune_corpus or [])
    if lang in given:
        train, heldout = given[lang].split(",")
        return Path(train), Path(heldout)
    if lang not in FINETUNE_CORPORA:
        raise SystemExit(f"no fine-tune corpus for {lang}: pass --finetune-corpus {lang}=TRAIN_DIR,HELDOUT_DIR")
    return FINETUNE_CORPORA[lang]


def consent_file(train: Path) -> Path:
    for p in (train / "CONSENT.txt", train.parent / "CONSENT.txt"):
        if p.is_file():
            return p
    raise SystemExit(f"no CONSENT.txt in {train} or its parent (the production lane needs one)")


def lane_stats(log: Path) -> dict[str, dict]:
    """The STATS lines of a protocol log, merged per phase."""
    from voicelane.protocol import parse_line

    out: dict[str, dict] = {}
    for line in log.read_text("utf-8").splitlines():
        ev = parse_line(line)
        if ev.kind == "STATS":
            out.setdefault(ev.stats.get("phase", ""), {}).update(ev.stats)
    return out


def run_finetune_lane(lang: str, cond: str, args, run_dir: Path, train: Path, heldout: Path) -> list[dict]:
    """`voicelane train --lane tts_prod_train --base ... --preset cpu --threads 1` in process;
    returns the failed gates (the voice then lands in candidates/, still evaluated)."""
    from voicelane.errors import VoicelaneError
    from voicelane.lane import run_lane
    from voicelane.protocol import Emitter
    from voicelane.runspec import RunSpec

    spec = RunSpec.build(
        job_type="tts_prod_train",
        data=run_dir / "data",
        profile_id=profile_id(lang, cond),
        out=run_dir / "lane",
        preset="cpu",
        base=BASE_ID,
        consent_statement=consent_file(train),
        heldout=heldout,
        language=lang,
        steps=args.finetune_steps,
        eval_max=args.finetune_eval,
        threads=1,
        min_minutes=0.0,
        status_path=run_dir / "train_status.json",
        onnx=False,
    )
    with open(run_dir / "protocol.log", "w", encoding="utf-8") as log:
        try:
            run_lane(spec, Emitter(log))
        except VoicelaneError as err:
            if err.code != "eval_gate_failed":
                raise
            return err.details["failed"]
    return []


def profile_id(lang: str, cond: str) -> str:
    return f"robust_{lang}_{cond.replace('+', '_')}"


def finetune_one(lang: str, cond: str, args) -> dict:
    """Degrade the training corpus, fine-tune the base on it, score against clean held-out clips."""
    from voicelane import bundle

    run_dir = args.finetune_out / lang / cond.replace("+", "_")
    if (run_dir / "row.json").is_file() and not args.fresh:
        row = json.loads((run_dir / "row.json").read_text("utf-8"))
        print(json.dumps(row, sort_keys=True), flush=True)
        return row
    if cond.endswith("denoise"):
        raise SystemExit("the lane has no denoise option: leave snr10+denoise out of the fine-tune conditions")
    shutil.rmtree(run_dir, ignore_errors=True)
    train, heldout = finetune_corpora(args, lang)
    built = build_condition(train, cond, args.finetune_clips, run_dir / "data")
    t0 = time.perf_counter()
    failed = run_finetune_lane(lang, cond, args, run_dir, train, heldout)
    wall = time.perf_counter() - t0
    root = run_dir / "lane" / ("candidates" if failed else "")
    bdir = bundle.bundle_dir_for(root, profile_id(lang, cond))
    res = json.loads((bdir / "eval.json").read_text("utf-8"))
    timings = json.loads((bdir / "perf.json").read_text("utf-8"))["timings_s"]
    manifest = json.loads((run_dir / "lane" / "dataset" / "dataset_manifest.json").read_text("utf-8"))
    stats = lane_stats(run_dir / "protocol.log")
    row = {
        "lang": lang,
        "condition": cond,
        "part": "finetune",
        "steps": args.finetune_steps,
        "clips": len(built["ids"]),
        "kept": manifest["totals"]["kept"],
        "rejected": {k: v for k, v in manifest["totals"]["rejected_by_reason"].items() if v},
        "alignment_failures": stats.get("features", {}).get("alignment_failures"),
        "train_items": stats.get("features", {}).get("train_items"),
        "gates_failed": sorted(f["gate"] for f in failed),
        "timings_s": timings,
        "wall_s": round(wall, 1),
    } | {k: res.get(k) for k in EVAL_KEYS}
    (run_dir / "row.json").write_text(json.dumps(row, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps(row, sort_keys=True), flush=True)
    return row


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def finetune_table(rows: list[dict]) -> str:
    header = ["language", "degradation", "kept", "rejected (reason: clips)", "align fail", "MCD (dB)"]
    header += ["F0 median err", "F0 RMSE (Hz)", "duration ratio", "WER", "PER", "PER broad", "gates failed", "train s"]
    cells = []
    for r in rows:
        f0 = "-" if r["f0_median_rel_error"] is None else f"{r['f0_median_rel_error'] * 100:.1f} %"
        cells.append(
            [r["lang"], r["condition"], f"{r['kept']}/{r['clips']}", _rejected(r), str(r["alignment_failures"])]
            + [_num(r["mcd_db"], ".2f"), f0, _num(r["f0_rmse_hz"], ".1f"), _num(r["duration_ratio"], ".3f")]
            + [_num(r[k], ".3f") for k in ("wer", "per", "per_broad")]
            + [", ".join(r["gates_failed"]) or "-", f"{r['timings_s'].get('train', 0):.0f}"]
        )
    return markdown(header, "llrlrrrrrrrrlr", cells)


def main() -> None:
    from align_accuracy import ref_langs, refs_parser, report

    ap = refs_parser(__doc__, ",".join(CONDITIONS), refs_required=False)
    ap.add_argument("--finetune-steps", type=int, default=0, help="also run the lane's fine-tune (N steps)")
    ap.add_argument("--finetune-only", action="store_true", help="skip the alignment part (no --refs needed)")
    ap.add_argument("--finetune-clips", type=int, default=60, help="training clips per condition")
    ap.add_argument("--finetune-eval", type=int, default=12, help="clean held-out clips scored")
    ap.add_argument("--finetune-conditions", default=",".join(FINETUNE_CONDITIONS))
    ap.add_argument("--finetune-corpus", action="append", help="LANG=TRAIN_DIR,HELDOUT_DIR")
    ap.add_argument("--finetune-out", type=Path, default=REPO / "runs" / "robustness_ft")
    ap.add_argument("--fresh", action="store_true", help="rerun conditions that already have a row.json")
    args = ap.parse_args()
    if not args.finetune_only and args.refs is None:
        ap.error("--refs is required (or --finetune-only with --finetune-steps)")
    if args.finetune_only and not args.finetune_steps:
        ap.error("--finetune-only needs --finetune-steps N")
    if args.refs is None and not args.lang:
        ap.error("--lang is required without --refs")
    langs = ref_langs(args)
    rows = []
    if not args.finetune_only:
        rows = [run_one(args.refs, lang, cond, args.n) for lang in langs for cond in args.conditions.split(",")]
    ft_rows = []
    if args.finetune_steps:
        conds = args.finetune_conditions.split(",")
        ft_rows = [finetune_one(lang, cond, args) for lang in langs for cond in conds]
    text = "\n\n".join(t for t in (rows and table(rows), ft_rows and finetune_table(ft_rows)) if t)
    report(args, rows + ft_rows, text)


if __name__ == "__main__":
    main()

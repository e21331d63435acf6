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
reason, whether the corrupted transcripts were caught, and the corpus SNR estimate. Training is
not run here (the machine is shared; see docs/robustness.md).
"""

from __future__ import annotations

import json
import sys
import tempfile
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


def build_condition(refs: Path, lang: str, cond: str, n: int, folder: Path) -> dict:
    from degrade import degrade, level_drift

    meta = [line.split("|", 1) for line in (refs / lang / "metadata.csv").read_text("utf-8").splitlines()][:n]
    ids = [m[0] for m in meta]
    texts = [m[1].strip() for m in meta]
    wrong: set[int] = set()
    if cond == "wrongword":
        texts, wrong = corrupt_transcripts(texts, 0.05, seed=7)
    (folder / "wavs").mkdir(parents=True)
    audio = {}
    for k, clip_id in enumerate(ids):
        y, sr = sf.read(str(refs / lang / "wavs" / f"{clip_id}.flac"), dtype="float64")
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
        built = build_condition(refs, lang, cond, n, Path(tmp) / "data")
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


def table(rows: list[dict]) -> str:
    lines = [
        "| language | degradation | ≤20 ms | ≤50 ms | kept | rejected (reason: clips) | "
        "SNR est. (median dB) | wrong transcripts caught |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(r["rejected"].items())) or "-"
        caught = (
            f"{len(r['wrong_caught'])}/{len(r['wrong_transcripts'])} ({', '.join(r['wrong_caught_by']) or 'none'})"
            if "wrong_transcripts" in r
            else ""
        )
        lines.append(
            f"| {r['lang']} | {r['condition']} | {r['within_20ms'] * 100:.1f} % | "
            f"{r['within_50ms'] * 100:.1f} % | {r['kept']}/{r['clips']} | {rej} | "
            f"{r['snr_db_median']} | {caught} |"
        )
    return "\n".join(lines)


def main() -> None:
    from align_accuracy import ref_langs, refs_parser, report

    args = refs_parser(__doc__, ",".join(CONDITIONS)).parse_args()
    langs = ref_langs(args)
    rows = [run_one(args.refs, lang, cond, args.n) for lang in langs for cond in args.conditions.split(",")]
    report(args, rows, table(rows))


if __name__ == "__main__":
    main()

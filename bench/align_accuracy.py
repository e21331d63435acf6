"""Boundary accuracy of forced alignment against Festival's own segment times.

    .venv/bin/python tools/render_align_refs.py --out /tmp/align_refs      # needs Festival
    .venv/bin/python bench/align_accuracy.py --refs /tmp/align_refs [--lang cs] [--n 20]
        [--conditions clean,snr20+reverb] [--methods map-en] [--json out.json]

For every reference phone boundary (the end of each Festival segment except the last; a run of
pauses counts once) the bench asks whether the aligner put a phone boundary within 20 ms and
within 50 ms. It also prints the ratio of predicted to reference boundaries, so a method cannot
score by over-segmenting. Degraded conditions come from bench/degrade.py with a seed per clip.

Methods:
* ``map-en``: gruut IPA per word mapped onto the en-us phone set (engine/align.py), pocketsphinx
  en-us model, 10 ms frames (the method the lane uses);
* ``map-en-5ms``: the same decoder at 200 frames/s;
* ``map-en+wpe``: ``map-en`` after single-channel WPE dereverberation (nara-wpe, MIT).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tools"))

PAUSES = {"#", "pau", "sil", "h#", "_"}
METHODS = ("map-en", "map-en-5ms", "map-en+wpe", "map-en+refine", "map-en+refine10")


def dereverberate(y: np.ndarray) -> np.ndarray:
    """Weighted prediction error dereverberation (nara-wpe), 32 ms frames, 10 taps."""
    from nara_wpe.utils import istft, stft
    from nara_wpe.wpe import wpe

    spec = stft(y[None, :], size=512, shift=128).transpose(2, 0, 1)
    out = wpe(spec, taps=10, delay=3, iterations=3, statistics_mode="full").transpose(1, 2, 0)
    z = istft(out, size=512, shift=128)[0][: len(y)]
    return np.pad(z, (0, len(y) - len(z)))


def reference_boundaries(segs: list[tuple[float, str]]) -> list[float]:
    out = []
    for (end, ph), (_next_end, nxt) in zip(segs, segs[1:]):
        if ph in PAUSES and nxt in PAUSES:
            continue
        out.append(end)
    return out


def hit_rate(ref: list[float], pred: list[float], tol: float) -> int:
    if not pred:
        return 0
    p = np.asarray(sorted(pred))
    hits = 0
    for b in ref:
        i = np.searchsorted(p, b)
        near = min(abs(p[j] - b) for j in (i - 1, i) if 0 <= j < len(p))
        hits += near <= tol + 1e-9
    return hits


def spectral_change(y: np.ndarray, sr: int, hop_s: float = 0.0025) -> tuple[np.ndarray, float]:
    """Frame-to-frame change of the log-mel spectrum (the distance across +-1 frame)."""
    import librosa

    hop = int(sr * hop_s)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=int(0.02 * sr), hop_length=hop, n_mels=40)
    lm = np.log(mel + 1e-8)
    d = np.zeros(lm.shape[1])
    d[1:-1] = np.sqrt(np.sum((lm[:, 2:] - lm[:, :-2]) ** 2, axis=0))
    return d, hop_s


def refine(bounds: list[float], y: np.ndarray, sr: int, window_s: float) -> list[float]:
    """Move each boundary to the largest spectral change within +-window_s, keeping order."""
    d, hop_s = spectral_change(y, sr)
    out = []
    for i, b in enumerate(bounds):
        lo = max(b - window_s, (out[-1] + 0.01) if out else 0.0)
        hi = min(b + window_s, bounds[i + 1] - 0.01 if i + 1 < len(bounds) else b + window_s)
        a, z = int(lo / hop_s), int(hi / hop_s) + 1
        if z <= a or a >= len(d):
            out.append(b)
            continue
        k = a + int(np.argmax(d[a : min(z, len(d))]))
        out.append(k * hop_s)
    return out


def predicted_boundaries(y, sr, text, lang, method):
    from voicelane.engine import align

    options = {"frate": 200} if method == "map-en-5ms" else {}
    if method == "map-en+wpe":
        y = dereverberate(y)
    al = align.align_text(y, sr, text, lang, **options)
    if method.startswith("map-en+refine"):
        w = {"map-en+refine": 0.02, "map-en+refine10": 0.01}[method]
        return refine(al.boundaries(), y, sr, w), al
    return al.boundaries(), al


def run(refs: Path, langs, conditions, methods, n) -> list[dict]:
    from degrade import degrade
    from render_align_refs import read_segs

    rows = []
    for lang in langs:
        meta = [line.split("|", 1) for line in (refs / lang / "metadata.csv").read_text("utf-8").splitlines()][:n]
        for cond in conditions:
            for method in methods:
                tot = {"ref": 0, "pred": 0, "h20": 0, "h50": 0, "failed": 0, "cpu_s": 0.0}
                for k, (clip_id, text) in enumerate(meta):
                    y, sr = sf.read(str(refs / lang / "wavs" / f"{clip_id}.flac"), dtype="float64")
                    y = degrade(y, sr, cond, seed=1000 + k)
                    ref = reference_boundaries(read_segs(refs / lang / "segs" / f"{clip_id}.lab"))
                    t0 = time.process_time()
                    try:
                        pred, _al = predicted_boundaries(y, sr, text.strip(), lang, method)
                    except Exception:  # noqa: BLE001 - a failed clip scores zero hits
                        pred = []
                        tot["failed"] += 1
                    tot["cpu_s"] += time.process_time() - t0
                    tot["ref"] += len(ref)
                    tot["pred"] += len(pred)
                    tot["h20"] += hit_rate(ref, pred, 0.020)
                    tot["h50"] += hit_rate(ref, pred, 0.050)
                rows.append(
                    {
                        "lang": lang,
                        "condition": cond,
                        "method": method,
                        "clips": len(meta),
                        "boundaries": tot["ref"],
                        "within_20ms": round(tot["h20"] / max(tot["ref"], 1), 3),
                        "within_50ms": round(tot["h50"] / max(tot["ref"], 1), 3),
                        "pred_per_ref": round(tot["pred"] / max(tot["ref"], 1), 2),
                        "failed": tot["failed"],
                        "cpu_s_per_clip": round(tot["cpu_s"] / max(len(meta), 1), 2),
                    }
                )
                print(json.dumps(rows[-1], sort_keys=True), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| language | condition | method | boundaries | ≤20 ms | ≤50 ms | pred/ref | failed |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['lang']} | {r['condition']} | {r['method']} | {r['boundaries']} | "
            f"{r['within_20ms'] * 100:.1f} % | {r['within_50ms'] * 100:.1f} % | "
            f"{r['pred_per_ref']} | {r['failed']} |"
        )
    return "\n".join(lines)


def refs_parser(doc: str, conditions: str, refs_required: bool = True) -> argparse.ArgumentParser:
    """The options of a bench over reference sets (this one and bench/robustness.py)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--refs", type=Path, required=refs_required)
    ap.add_argument("--lang", action="append")
    ap.add_argument("--conditions", default=conditions)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--json", type=Path)
    return ap


def ref_langs(args: argparse.Namespace) -> list[str]:
    """The languages asked for, or every reference set under --refs."""
    return args.lang or sorted(p.name for p in args.refs.iterdir() if (p / "segs").is_dir())


def report(args: argparse.Namespace, rows: list[dict], text: str) -> None:
    """Print the table; with --json also write the rows."""
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def main() -> None:
    ap = refs_parser(__doc__, "clean,snr20+reverb")
    ap.add_argument("--methods", default="map-en")
    args = ap.parse_args()
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m}; choose from {', '.join(METHODS)}")
    rows = run(args.refs, ref_langs(args), args.conditions.split(","), methods, args.n)
    report(args, rows, table(rows))


if __name__ == "__main__":
    main()

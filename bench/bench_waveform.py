"""Waveform-path candidates: speed and quality proxies against the real recordings.

For each candidate path (WORLD with a given FFT size) the same acoustic-model frames of held-out
sentences are rendered, timed, and scored against the real recording of each sentence:
MCD and F0 RMSE along a DTW path (evaluate.mcd_f0_dtw), pocketsphinx WER, and DNSMOS (P.808 MOS
and P.835 OVRL, `speechmos`, MIT, ONNX models inside the wheel). Copy-synthesis rows (real audio
-> WORLD analysis -> the candidate's synthesis) isolate the vocoder from the acoustic model.
The real recordings' own WER and DNSMOS are the floor/ceiling rows.

Timings are medians of ``--repeats`` renders of each sentence, interleaved across candidates in
one process so that load from other jobs hits all of them alike.

Usage:
  .venv/bin/python bench/bench_waveform.py --voice DIR --heldout corpora/kal_heldout [--n 12]
      [--fft 1024,512,256] [--json out.json]
DIR is a voice folder (voice_config.json + model.safetensors) or a bundle's voice_bundle folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def load_clips(corpus: Path, n: int) -> list[tuple[str, str, np.ndarray]]:
    import soundfile as sf

    from voicelane.engine import features

    rows = list(csv.reader((corpus / "metadata.csv").open(encoding="utf-8"), delimiter="|"))[:n]
    out = []
    for row in rows:
        path = next((corpus / "wavs").glob(row[0] + ".*"))
        wav, sr = sf.read(path, dtype="float32")
        if sr != features.SAMPLE_RATE:
            import soxr

            wav = soxr.resample(wav, sr, features.SAMPLE_RATE)
        out.append((row[0], row[-1], wav))
    return out


def load_voice(path: Path):
    from voicelane.engine.voice import Voice

    return Voice.load(path, threads=1)


def dnsmos(wav: np.ndarray) -> tuple[float, float]:
    from speechmos import dnsmos as dm

    peak = float(np.max(np.abs(wav))) or 1.0
    r = dm.run((wav * (0.7 / peak)).astype(np.float32), 16000)
    return float(r["p808_mos"]), float(r["ovrl_mos"])


def score(asr, text: str, real: np.ndarray, wav: np.ndarray) -> dict[str, float]:
    from voicelane import evaluate as ev
    from voicelane.engine import features

    ref = ev.reference_words(text)
    e, n = ev.wer_counts(ref, ev._words(asr.transcribe(wav, features.SAMPLE_RATE)))
    m = ev.mcd_f0_dtw(real, wav) if wav is not real else {"mcd_db": 0.0, "f0_rmse_hz": 0.0}
    p808, ovrl = dnsmos(wav)
    return {"err": e, "n": n, "mcd": m["mcd_db"], "f0": m["f0_rmse_hz"], "p808": p808, "ovrl": ovrl}


def summarise(rows: list[dict[str, float]], ms: list[float], audio_s: float) -> dict[str, float]:
    f0 = [r["f0"] for r in rows if np.isfinite(r["f0"])]
    return {
        "wer": round(sum(r["err"] for r in rows) / max(sum(r["n"] for r in rows), 1), 4),
        "mcd_db": round(statistics.fmean(r["mcd"] for r in rows), 3),
        "f0_rmse_hz": round(statistics.fmean(f0), 2) if f0 else None,
        "dnsmos_p808": round(statistics.fmean(r["p808"] for r in rows), 3),
        "dnsmos_ovrl": round(statistics.fmean(r["ovrl"] for r in rows), 3),
        "ms_per_audio_s": round(sum(ms) / max(audio_s, 1e-9), 2) if ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voice", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--fft", default="1024,512,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from voicelane import evaluate as ev
    from voicelane.engine import features, frontend
    from voicelane.engine.voice import join_sentences

    torch.set_num_threads(1)
    voice = load_voice(args.voice)
    clips = load_clips(args.heldout, args.n)
    ffts = [int(x) for x in args.fft.split(",")]
    frames = [[voice.frames_for(u) for u in frontend.phonemize_sentences(text)] for _, text, _ in clips]
    copies = [features.analyze(wav) for _, _, wav in clips]
    timings: dict[int, list[float]] = {f: [] for f in ffts}
    tts: dict[int, list[np.ndarray]] = {f: [] for f in ffts}
    cps: dict[int, list[np.ndarray]] = {f: [] for f in ffts}
    for k, parts in enumerate(frames):
        for _ in range(args.repeats):
            for f in ffts:  # interleaved: background load hits every candidate alike
                t0 = time.perf_counter()
                wav = join_sentences([features.synthesize(p, voice.postfilter, fft_size=f) for p in parts])
                timings[f].append((time.perf_counter() - t0) * 1000.0)
                if len(tts[f]) <= k:
                    tts[f].append(wav)
        for f in ffts:
            cps[f].append(features.synthesize(copies[k], 0.0, fft_size=f))
    asr = ev.ASR()
    table: dict[str, dict] = {}
    real_rows = [score(asr, text, wav, wav) for _, text, wav in clips]
    table["real recordings"] = summarise(real_rows, [], 0.0)
    for f in ffts:
        audio_s = sum(len(w) for w in tts[f]) / features.SAMPLE_RATE
        # per-sentence medians over the repeats, summed
        ms = [statistics.median(timings[f][k * args.repeats : (k + 1) * args.repeats]) for k in range(len(clips))]
        rows = [score(asr, clips[k][1], clips[k][2], tts[f][k]) for k in range(len(clips))]
        table[f"voice -> WORLD fft {f}"] = summarise(rows, ms, audio_s)
        rows = [score(asr, clips[k][1], clips[k][2], cps[f][k]) for k in range(len(clips))]
        table[f"copy-synthesis WORLD fft {f}"] = summarise(rows, [], 0.0)
    out = {
        "voice": str(args.voice),
        "heldout": str(args.heldout),
        "n": len(clips),
        "repeats": args.repeats,
        "load_avg": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "table": table,
    }
    print(json.dumps(out, indent=2))
    print(f"\n{'path':34} {'ms/s audio':>10} {'WER':>6} {'MCD dB':>7} {'F0 RMSE':>8} {'P808':>6} {'OVRL':>6}")
    for name, r in table.items():
        print(
            f"{name:34} {str(r['ms_per_audio_s'] or '-'):>10} {r['wer']:>6} {r['mcd_db']:>7} "
            f"{str(r['f0_rmse_hz']):>8} {r['dnsmos_p808']:>6} {r['dnsmos_ovrl']:>6}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

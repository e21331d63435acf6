"""Evaluation (SPEC §7): measured on rendered audio, never derived from the loss.

* intelligibility: pocketsphinx (offline, model in the wheel) WER and content-word recall of
  synthesised held-out sentences, beside the same ASR on the real recordings (the floor);
* spectral distance: mel-cepstral distortion (pysptk mel-cepstra of WORLD envelopes) along a
  DTW path (librosa);
* F0: median voiced F0 of synthesis vs the real recordings, and F0 RMSE along the DTW path;
* duration ratio, synthesis real-time factor;
* any language: phone error rate (PER), the language-independent intelligibility proxy.
  pocketsphinx's en-us acoustic model decodes the audio as a free phone loop (its en-us phone
  bigram, no words, no lexicon); the reference is the transcript's own tokens mapped onto the
  same en-us phones (``frontend.arpabet``, nearest base sound by articulatory features for
  other languages). The same recogniser on the real held-out recordings is the floor. Reported
  on exact phones (``per``) and on broad manner classes (``per_broad``: vowel, stop, fricative,
  affricate, nasal, liquid/glide), which does not count an Italian /a/ heard as English AE as
  an error; ``per_broad`` is the gated proxy. On English both rank voices as WER does
  (bench/per_proxy.py, docs/model-choice.md).
  WER needs an ASR for the language and is reported for English only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from voicelane.engine import features, frontend
from voicelane.fsutil import atomic_write_bytes

STOPWORDS = set(
    """a an the and or but if of to in on at by for with from as is are was were be been
being it its this that these those i you he she we they me him her us them my your his our their
do does did not no so than too very can will just into over out up down off about then there here
what which who whom when where why how all any each some such only own same s t""".split()
)

REGRESSION_PROMPTS = [
    "Unit 4, proceed to gate 12 and wait for further instructions.",
    "The meeting starts at 7:45 on Tuesday, March 3rd, 2026.",
    "Dr. Smith lives at 221 Baker St., not far from the station.",
    "Is the north door locked, or should I check it again?",
    "Temperature is 21.5 degrees; humidity is 40 percent.",
    "Warning: pressure in tank three has dropped below the safe level!",
    "Please call 555 0142 if you have any questions about your order.",
    (
        "When the long convoy finally reached the river crossing late that evening, the drivers "
        "found the bridge closed, so they waited patiently under the trees until the engineers "
        "confirmed it was safe."
    ),
]


def _words(text: str) -> list[str]:
    return [w for w in re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split() if w]


# the figures every held-out evaluation reports (the lane's summary adds its own after these)
HEADLINE_METRICS = (
    "wer",
    "wer_floor_real_audio",
    "content_word_recall",
    "mcd_db",
    "f0_median_hz",
    "f0_median_real_hz",
)


def _decode_utterance(dec, wav: np.ndarray, sample_rate: int) -> None:
    """One whole utterance through a pocketsphinx decoder, at the 16 kHz its models expect."""
    if sample_rate != 16000:
        import soxr

        wav = soxr.resample(wav, sample_rate, 16000)
    pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()
    # pocketsphinx's front end carries state from one utterance to the next (measured: 2 of 12
    # held-out clips decode differently in reverse order), so a WER depended on what the decoder
    # heard before: the worker split, the order, a cached floor. A fresh front end per utterance
    # decodes every clip as a new decoder would, at no measurable cost.
    dec.reinit_feat()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()


class ASR:
    """pocketsphinx's stock US English model; one decoder reused (a fresh front end per utterance)."""

    def __init__(self):
        from pocketsphinx import Decoder

        self.dec = Decoder(samprate=16000, loglevel="FATAL")

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        _decode_utterance(self.dec, wav, sample_rate)
        hyp = self.dec.hyp()
        return hyp.hypstr if hyp is not None else ""


class PhoneRecognizer:
    """pocketsphinx en-us acoustic model + en-us phone bigram: audio -> ARPAbet phones."""

    def __init__(self):
        import os

        from pocketsphinx import Decoder, get_model_path

        lm = os.path.join(get_model_path(), "en-us-phone.lm.bin")
        self.dec = Decoder(samprate=16000, allphone=lm, lm=None, lw=2.0, beam=1e-20, pbeam=1e-20, loglevel="FATAL")

    def phones(self, wav: np.ndarray, sample_rate: int) -> list[str]:
        _decode_utterance(self.dec, wav, sample_rate)
        return [seg.word for seg in self.dec.seg() if seg.word not in ("SIL", "+NSN+", "+SPN+", "<s>", "</s>")]


FLOOR_CACHE_VERSION = "vl-floor-2"  # 2: each utterance decoded from a fresh front end


class RealAudioMemo:
    """What the recognisers hear in the *real* held-out recordings (the floor), kept by content.

    The floor does not depend on the voice: a rerun on the same recordings (the demo, a retrain)
    reads it instead of decoding every clip twice more. Keyed by the audio samples, the sample
    rate, the pocketsphinx version and the recogniser; kept in the feature cache (``floor/``)
    (``VOICELANE_FEATURE_CACHE=off`` turns both off). A broken entry is decoded again.
    """

    def __init__(self):
        from importlib.metadata import version

        from voicelane.engine.data import shared_cache_dir

        shared = shared_cache_dir()
        self.root = None if shared is None else shared / "floor"
        self.tag = f"{FLOOR_CACHE_VERSION}|pocketsphinx-{version('pocketsphinx')}"

    def get(self, kind: str, wav: np.ndarray, decode: Callable[[], Any]) -> Any:
        if self.root is None:
            return decode()
        h = hashlib.sha256(f"{self.tag}|{kind}|{features.SAMPLE_RATE}|{wav.dtype}|".encode())
        h.update(np.ascontiguousarray(wav).tobytes())
        path = self.root / kind / f"{h.hexdigest()}.json"
        try:
            return json.loads(path.read_text("utf-8"))["value"]
        except (OSError, ValueError, KeyError):
            pass
        value = decode()
        try:
            atomic_write_bytes(path, json.dumps({"value": value}).encode("utf-8"))
        except OSError:
            pass  # a read-only or full cache never fails the evaluation
        return value


def reference_phones(text: str, language: str = "en-us") -> list[str]:
    """The transcript's tokens as en-us phones (what the phone recogniser should hear)."""
    out = []
    for utt in frontend.phonemize_sentences(text, language):
        for tok in utt.tokens:
            if tok in frontend.PROSODY_TOKENS:
                continue
            try:
                phone = frontend.arpabet(tok)
            except KeyError:
                phone = frontend.arpabet(frontend.nearest_base_phoneme(tok))
            out.append(phone)
    return out


def phone_errors(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(edit distance, reference length) over phone sequences."""
    import editdistance

    return int(editdistance.eval(ref, hyp)), len(ref)


BROAD_CLASS = {
    p: c
    for c, phones in {
        "V": "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW",
        "S": "P B T D K G",
        "F": "F V TH DH S Z SH ZH HH",
        "A": "CH JH",
        "N": "M N NG",
        "L": "L R W Y",
    }.items()
    for p in phones.split()
}


def broad(phones: list[str]) -> list[str]:
    """ARPAbet phones -> manner classes (what survives a recogniser trained on another language)."""
    return [BROAD_CLASS.get(p, "?") for p in phones]


class PhoneScore:
    """Accumulates exact and broad-class phone errors over clips."""

    def __init__(self):
        self.err = self.broad_err = self.n = 0

    def add(self, ref: list[str], hyp: list[str]) -> tuple[float, float]:
        e, n = phone_errors(ref, hyp)
        b, _ = phone_errors(broad(ref), broad(hyp))
        self.err, self.broad_err, self.n = self.err + e, self.broad_err + b, self.n + n
        return e / max(n, 1), b / max(n, 1)

    def rates(self) -> tuple[float | None, float | None]:
        if not self.n:
            return None, None
        return round(self.err / self.n, 4), round(self.broad_err / self.n, 4)


def reference_words(text: str, language: str = "en-us") -> list[str]:
    return [w for w in _words(" ".join(frontend.normalized_words(text, language)))]


def wer_counts(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(edit distance, reference length)."""
    import jiwer

    if not ref:
        return len(hyp), 0
    out = jiwer.process_words(" ".join(ref), " ".join(hyp) if hyp else "")
    return out.substitutions + out.deletions + out.insertions, len(ref)


def content_recall(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    content = [w for w in ref if w not in STOPWORDS]
    pool = list(hyp)
    hit = 0
    for w in content:
        if w in pool:
            pool.remove(w)
            hit += 1
    return hit, len(content)


def mcep(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pysptk
    import pyworld

    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0 = features.analyze_f0(x)
    t = np.arange(len(f0)) * features.FRAME_MS / 1000.0
    sp = pyworld.cheaptrick(x, f0, t, features.SAMPLE_RATE, fft_size=features.FFT_SIZE)
    return pysptk.sp2mc(sp, order=24, alpha=0.42), f0


def mcd_f0_dtw(ref_wav: np.ndarray, syn_wav: np.ndarray) -> dict[str, float]:
    """MCD (dB) and F0 RMSE (Hz) along a DTW path between real and synthetic speech."""
    return _mcd_f0_dtw(*mcep(ref_wav), *mcep(syn_wav))


def _mcd_f0_dtw(mc_r: np.ndarray, f0_r: np.ndarray, mc_s: np.ndarray, f0_s: np.ndarray) -> dict[str, float]:
    import librosa

    _, path = librosa.sequence.dtw(X=mc_r[:, 1:].T, Y=mc_s[:, 1:].T, metric="euclidean")
    path = path[::-1]
    diff = mc_r[path[:, 0], 1:] - mc_s[path[:, 1], 1:]
    mcd = float(np.mean(10.0 / math.log(10.0) * np.sqrt(2.0 * np.sum(diff**2, axis=1))))
    fr, fs_ = f0_r[path[:, 0]], f0_s[path[:, 1]]
    both = (fr > 0) & (fs_ > 0)
    f0_rmse = float(np.sqrt(np.mean((fr[both] - fs_[both]) ** 2))) if both.any() else float("nan")
    return {"mcd_db": mcd, "f0_rmse_hz": f0_rmse}


@dataclass
class Clip:
    id: str
    text: str
    wav: np.ndarray  # real recording at the engine rate


def _median_f0(voiced: Iterable[np.ndarray]) -> float:
    """Median over the voiced F0 values (Hz) of several recordings."""
    vals = list(voiced)
    allv = np.concatenate(vals) if vals else np.array([])
    return float(np.median(allv)) if len(allv) else float("nan")


@dataclass
class _Job:
    """One rendered text to score: a held-out clip (with its real recording) or a prompt."""

    syn: np.ndarray
    sample_rate: int
    ref_words: list[str] | None  # None: no word recogniser for the language
    ref_phones: list[str] | None  # None: a prompt (words only)
    real: np.ndarray | None = None
    with_floor: bool = False


_SCORERS: dict[str, Any] = {}  # per process: the recognisers, built on first use


def _scorer(name: str):
    if name not in _SCORERS:
        _SCORERS[name] = {"asr": ASR, "phones": PhoneRecognizer, "memo": RealAudioMemo}[name]()
    return _SCORERS[name]


def _score(job: _Job) -> dict[str, Any]:
    """What the recognisers hear and how far the spectra are; runs in a scoring worker."""
    out: dict[str, Any] = {}
    if job.ref_words is not None:
        out["hyp"] = _words(_scorer("asr").transcribe(job.syn, job.sample_rate))
    if job.ref_phones is None:
        return out
    out["syn_phones"] = _scorer("phones").phones(job.syn, job.sample_rate)
    if job.with_floor:
        memo, rate = _scorer("memo"), features.SAMPLE_RATE
        out["real_phones"] = memo.get("phones", job.real, lambda: _scorer("phones").phones(job.real, rate))
        if job.ref_words is not None:
            real_words = memo.get("words", job.real, lambda: _scorer("asr").transcribe(job.real, rate))
            out["real_hyp"] = _words(real_words)
    (mc_r, f0_r), (mc_s, f0_s) = mcep(job.real), mcep(job.syn)
    out["mcd"] = _mcd_f0_dtw(mc_r, f0_r, mc_s, f0_s)
    out["voiced_f0"], out["real_voiced_f0"] = f0_s[f0_s > 0], f0_r[f0_r > 0]  # for the medians
    return out


def eval_workers() -> int:
    """Scoring processes (``VOICELANE_EVAL_WORKERS``; default: one per core, at most 2)."""
    import os

    env = os.environ.get("VOICELANE_EVAL_WORKERS", "").strip()
    return max(1, int(env)) if env.isdigit() else max(1, min(2, os.cpu_count() or 1))


_POOL: dict[int, Any] = {}


def _scored(jobs: list[_Job], workers: int):
    """Scores in job order. Recognition and DTW dominate an evaluation (~1 s a clip against
    ~0.1 s of synthesis) and are independent per clip, so they run in spawned worker processes
    (kept for the life of the process: selection scores several snapshots); the results do not
    depend on the number of workers."""
    if workers <= 1 or len(jobs) < 4:
        return map(_score, jobs)
    if workers not in _POOL:
        import atexit
        import multiprocessing as mp
        import os
        from concurrent.futures import ProcessPoolExecutor

        from voicelane.lifeline import exit_with

        _POOL[workers] = ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=exit_with, initargs=(os.getpid(),)
        )
        atexit.register(_POOL[workers].shutdown, cancel_futures=True)
    return _pooled(workers, jobs)


def _pooled(workers: int, jobs: list[_Job]):
    """The pool's scores in order; if a worker dies (OOM killer, a signal), the pool is dropped
    and the rest is scored here, so one lost process never fails the evaluation."""
    from concurrent.futures.process import BrokenProcessPool

    done = 0
    try:
        for out in _POOL[workers].map(_score, jobs, chunksize=1):
            done += 1
            yield out
    except BrokenProcessPool:
        _POOL.pop(workers, None)
        yield from map(_score, jobs[done:])


def evaluate(
    synthesize: Callable[[str], Any],
    clips: list[Clip],
    prompts: list[str] | None = None,
    language: str = "en-us",
    with_floor: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    keep_audio: int = 3,
    workers: int | None = None,
) -> dict[str, Any]:
    """Synthesise each held-out clip's text (+ prompts) and measure it against the real audio.

    `synthesize(text)` returns an engine Synthesis. Returns the eval dict (eval.json) and,
    under "_audio", up to `keep_audio` rendered (id, text, waveform) samples. Synthesis runs
    here; scoring in `workers` processes (default ``eval_workers()``).
    """
    language = frontend.check_language(language)
    has_asr = language == "en-us"  # pocketsphinx's stock model is US English
    prompts = (REGRESSION_PROMPTS if has_asr else []) if prompts is None else prompts
    prompts = prompts if has_asr else []  # the prompts are scored by the word recogniser only
    total = len(clips) + len(prompts)
    compute_s = audio_s = 0.0
    jobs: list[_Job] = []
    seconds: list[float] = []
    audio_keep = []
    for clip in clips:
        syn = synthesize(clip.text)
        compute_s, audio_s = compute_s + syn.compute_s, audio_s + syn.seconds
        seconds.append(syn.seconds)
        ref_words = reference_words(clip.text, language) if has_asr else None
        ref_ph = reference_phones(clip.text, language)
        jobs.append(_Job(syn.audio, syn.sample_rate, ref_words, ref_ph, clip.wav, with_floor))
        if len(audio_keep) < keep_audio:
            audio_keep.append((clip.id, clip.text, syn.audio))
    for text in prompts:
        syn = synthesize(text)
        compute_s, audio_s = compute_s + syn.compute_s, audio_s + syn.seconds
        seconds.append(syn.seconds)
        jobs.append(_Job(syn.audio, syn.sample_rate, reference_words(text, language), None))
    err = ref_n = floor_err = floor_n = hit = cnt = floor_hit = floor_cnt = p_err = p_n = 0
    syn_ph, real_ph = PhoneScore(), PhoneScore()
    mcds, f0rmses, ratios, per, prompt_rows, voiced, real_voiced = [], [], [], [], [], [], []
    for k, (job, scored) in enumerate(zip(jobs, _scored(jobs, eval_workers() if workers is None else workers))):
        if k >= len(clips):  # a prompt
            e, n = wer_counts(job.ref_words, scored["hyp"])
            p_err, p_n = p_err + e, p_n + n
            text = prompts[k - len(clips)]
            prompt_rows.append(
                {"text_sha256": _sha(text), "wer": round(e / max(n, 1), 4), "seconds": round(seconds[k], 3)}
            )
        else:
            clip = clips[k]
            clip_per, clip_per_b = syn_ph.add(job.ref_phones, scored["syn_phones"])
            row = {"id": clip.id, "per": round(clip_per, 4), "per_broad": round(clip_per_b, 4)}
            if with_floor:
                fper, fper_b = real_ph.add(job.ref_phones, scored["real_phones"])
                row.update({"floor_per": round(fper, 4), "floor_per_broad": round(fper_b, 4)})
            if has_asr:
                e, n = wer_counts(job.ref_words, scored["hyp"])
                h, c = content_recall(job.ref_words, scored["hyp"])
                err, ref_n, hit, cnt = err + e, ref_n + n, hit + h, cnt + c
                row.update({"wer": round(e / max(n, 1), 4), "hyp": " ".join(scored["hyp"])})
            if with_floor and has_asr:
                fe, fn = wer_counts(job.ref_words, scored["real_hyp"])
                fh, fc = content_recall(job.ref_words, scored["real_hyp"])
                floor_err, floor_n, floor_hit, floor_cnt = floor_err + fe, floor_n + fn, floor_hit + fh, floor_cnt + fc
                row["floor_wer"] = round(fe / max(fn, 1), 4)
            m = scored["mcd"]
            voiced.append(scored["voiced_f0"])
            real_voiced.append(scored["real_voiced_f0"])
            mcds.append(m["mcd_db"])
            if not math.isnan(m["f0_rmse_hz"]):
                f0rmses.append(m["f0_rmse_hz"])
            ratios.append(seconds[k] / max(len(clip.wav) / features.SAMPLE_RATE, 1e-6))
            row.update({k2: round(v, 3) for k2, v in m.items()})
            per.append(row)
        if on_progress:
            on_progress(k + 1, total)
    syn_med, real_med = _median_f0(voiced), _median_f0(real_voiced)
    result = {
        "schema": "voice_eval/1",
        "language": language,
        "asr": "pocketsphinx-5.1.1 en-us (stock model)" if has_asr else None,
        "phone_recognizer": "pocketsphinx-5.1.1 en-us acoustic model, en-us phone bigram (allphone)",
        "n_heldout": len(clips),
        "wer": round(err / max(ref_n, 1), 4) if has_asr else None,
        "content_word_recall": round(hit / max(cnt, 1), 4) if has_asr else None,
        "wer_floor_real_audio": round(floor_err / max(floor_n, 1), 4) if with_floor and has_asr else None,
        "content_word_recall_floor": round(floor_hit / max(floor_cnt, 1), 4) if with_floor and has_asr else None,
        "per": syn_ph.rates()[0],
        "per_broad": syn_ph.rates()[1],
        "per_floor_real_audio": real_ph.rates()[0],
        "per_broad_floor_real_audio": real_ph.rates()[1],
        "mcd_db": round(float(np.mean(mcds)), 3) if mcds else None,
        "f0_rmse_hz": round(float(np.mean(f0rmses)), 2) if f0rmses else None,
        "f0_median_hz": round(syn_med, 2),
        "f0_median_real_hz": round(real_med, 2),
        "f0_median_rel_error": round(abs(syn_med - real_med) / real_med, 4)
        if math.isfinite(syn_med) and math.isfinite(real_med)
        else None,
        "duration_ratio": round(float(np.mean(ratios)), 4) if ratios else None,
        "prompts_wer": round(p_err / max(p_n, 1), 4) if has_asr and prompts else None,
        "rtf": round(compute_s / max(audio_s, 1e-9), 4),
        "per_clip": per,
        "prompts": prompt_rows,
    }
    result = _finite(result)
    result["_audio"] = audio_keep
    return result


def _finite(obj: Any) -> Any:
    """NaN/inf (e.g. the median F0 of a voice that produced no voiced frame) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def gates_for(language: str) -> dict[str, float]:
    """The production lane's evaluation gates for a language (data/eval_gates.json): WER where
    an ASR exists (English), the phone-error-rate proxy elsewhere."""
    import json
    from pathlib import Path

    table = json.loads((Path(__file__).parent / "data" / "eval_gates.json").read_text("utf-8"))["gates"]
    code = frontend.check_language(language)
    return dict(table.get(code, table["default"]))


def check_gates(result: dict[str, Any], gates: dict[str, float]) -> list[dict[str, Any]]:
    """Gates from config: {metric_max: value} / {metric_min: value}. Returns failed gates."""
    failed = []
    for key, limit in sorted(gates.items()):
        metric, _, kind = key.rpartition("_")
        val = result.get(metric)
        if not _is_finite_number(limit) or kind not in ("max", "min"):  # fail closed: a NaN would pass every test
            failed.append({"gate": key, "value": val, "limit": limit, "reason": "threshold_invalid"})
        elif val is None or not _is_finite_number(val):
            failed.append({"gate": key, "value": None, "limit": limit})
        elif (kind == "max" and val > limit) or (kind == "min" and val < limit):
            failed.append({"gate": key, "value": val, "limit": limit})
    return failed


warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

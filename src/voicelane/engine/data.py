"""Training items: (token ids, durations, WORLD frames) per clip, cached as .npz files."""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from voicelane.engine import align, features, frontend
from voicelane.fsutil import atomic_write_bytes

CACHE_VERSION = "vl-feat-2"  # 2: F0 of band-limited (telephone) audio from the restored fundamental


@dataclass
class Item:
    id: str
    ids: np.ndarray  # [T_text] int64
    durations: np.ndarray  # [T_text] int64, sums to frames
    feats: np.ndarray  # [frames, FEAT_DIM] float32


def prepare_clip(clip_id: str, wav_path: str, text: str, language: str = "en-us") -> dict:
    wav, sr = sf.read(wav_path, dtype="float32", always_2d=False)
    if sr != features.SAMPLE_RATE:
        raise ValueError(f"{wav_path}: expected {features.SAMPLE_RATE} Hz, got {sr}")
    utt = frontend.phonemize(text, language)
    feats = features.analyze(wav)
    try:
        dur = align.token_durations(wav, utt, len(feats))
    except align.AlignmentError as exc:
        return {"id": clip_id, "error": str(exc)}
    return {"id": clip_id, "ids": np.asarray(utt.ids, dtype=np.int64), "durations": dur, "feats": feats}


def _cache_path(cache_dir: Path, clip_id: str, sha: str) -> Path:
    return cache_dir / f"{clip_id}.{sha[:16]}.npz"


def shared_cache_dir() -> Path | None:
    """Features shared across runs, keyed by content (``VOICELANE_FEATURE_CACHE``: a folder, or
    ``off``; default ``$XDG_CACHE_HOME/voicelane/features``). A second run on the same recordings
    (the demo, a retrain with other options) skips alignment and WORLD analysis."""
    env = os.environ.get("VOICELANE_FEATURE_CACHE", "").strip()
    if env.lower() == "off":
        return None
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "voicelane" / "features"


def content_key(sha: str, text: str, language: str) -> str:
    """What the features depend on: the audio bytes, the tokens (and ids) the front end makes of
    the text, the feature code's version. Never the clip's name or folder."""
    import hashlib

    utt = frontend.phonemize(text, language)
    blob = "\x1f".join(
        [CACHE_VERSION, str(features.FEAT_DIM), sha, language, " ".join(utt.tokens), " ".join(map(str, utt.ids))]
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _from_shared(shared: Path | None, key: str, out: Path) -> bool:
    if shared is None:
        return False
    src = shared / key[:2] / f"{key}.npz"
    try:
        data = src.read_bytes()
        with np.load(io.BytesIO(data)) as z:
            if str(z["version"]) != CACHE_VERSION:
                return False
    except (OSError, ValueError, KeyError):
        return False
    atomic_write_bytes(out, data)
    return True


def _to_shared(shared: Path | None, key: str, data: bytes) -> None:
    if shared is None:
        return
    try:
        atomic_write_bytes(shared / key[:2] / f"{key}.npz", data)
    except OSError:
        pass  # a read-only or full cache never fails the run


def _prepare_to_cache(args: tuple[str, str, str, str, str, str]) -> tuple[str, str | None]:
    clip_id, wav_path, text, language, sha, cache_dir = args
    out = _cache_path(Path(cache_dir), clip_id, sha)
    if out.exists():
        return clip_id, None
    shared = shared_cache_dir()
    key = content_key(sha, text, language) if shared is not None else ""
    if _from_shared(shared, key, out):
        return clip_id, None
    res = prepare_clip(clip_id, wav_path, text, language)
    if "error" in res:
        return clip_id, res["error"]
    buf = io.BytesIO()
    np.savez(buf, ids=res["ids"], durations=res["durations"], feats=res["feats"], version=np.array(CACHE_VERSION))
    atomic_write_bytes(out, buf.getvalue())
    _to_shared(shared, key, buf.getvalue())
    return clip_id, None


def prepare_all(
    entries: list[dict],
    cache_dir: str | os.PathLike,
    language: str = "en-us",
    workers: int = 2,
    on_done: Callable[[int, int], None] | None = None,
) -> tuple[list[Item], dict[str, str]]:
    """Prepare every manifest entry (id, path, text, sha256). Returns (items, {id: alignment error})."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(e["id"], str(e["abs_path"]), e["text"], language, e["sha256"], str(cache_dir)) for e in entries]
    errors: dict[str, str] = {}
    done = 0
    if workers > 1 and len(jobs) > 4:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for clip_id, err in pool.map(_prepare_to_cache, jobs, chunksize=4):
                done += 1
                if err:
                    errors[clip_id] = err
                if on_done:
                    on_done(done, len(jobs))
    else:
        for job in jobs:
            clip_id, err = _prepare_to_cache(job)
            done += 1
            if err:
                errors[clip_id] = err
            if on_done:
                on_done(done, len(jobs))
    items = []
    for e in entries:
        if e["id"] in errors:
            continue
        with np.load(_cache_path(cache_dir, e["id"], e["sha256"])) as z:
            items.append(Item(e["id"], z["ids"], z["durations"], z["feats"]))
    return items, errors


def feature_stats(items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean/std over all frames; voicing stays raw 0/1."""
    allf = np.concatenate([it.feats for it in items], axis=0).astype(np.float64)
    mean = allf.mean(axis=0)
    std = allf.std(axis=0) + 1e-5
    mean[features.VUV_IDX], std[features.VUV_IDX] = 0.0, 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def batches_for_epoch(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Deterministic length-bucketed batches for one epoch: a pure function of (seed, epoch)."""
    rng = np.random.RandomState((seed * 100003 + epoch) % (2**31))
    order = rng.permutation(len(lengths))
    pool = batch_size * 20
    batches: list[list[int]] = []
    for s in range(0, len(order), pool):
        chunk = sorted(order[s : s + pool].tolist(), key=lambda i: (lengths[i], i))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def collate(items: list[Item], mean: np.ndarray, std: np.ndarray) -> dict:
    import torch

    B = len(items)
    tl = [len(it.ids) for it in items]
    fl = [len(it.feats) for it in items]
    T, F = max(tl), max(fl)
    x = np.zeros((B, T), dtype=np.int64)
    dr = np.zeros((B, T), dtype=np.int64)
    y = np.zeros((B, F, features.FEAT_DIM), dtype=np.float32)
    for b, it in enumerate(items):
        x[b, : tl[b]] = it.ids
        dr[b, : tl[b]] = it.durations
        y[b, : fl[b]] = (it.feats - mean) / std
    return {
        "text_input": torch.from_numpy(x),
        "text_lengths": torch.tensor(tl),
        "mel_input": torch.from_numpy(y),
        "mel_lengths": torch.tensor(fl),
        "durations": torch.from_numpy(dr),
        "d_vectors": None,
        "speaker_ids": None,
        "pitch": None,
        "energy": None,
    }

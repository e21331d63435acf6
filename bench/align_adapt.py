"""Method (b): adapt the en-us acoustic model to the corpus with sphinxtrain, then align.

    apt-get install sphinxtrain sphinxbase-utils pocketsphinx festival ...   # see docs/alignment.md
    .venv/bin/python bench/align_adapt.py --refs /tmp/align_refs --lang it --condition reverb

For one language and degradation: the 20 degraded reference clips are written as WAV, their
transcripts spelled in en-us phones exactly as engine/align.py does; `sphinx_fe` computes the
model's features, `bw` collects statistics on the transcripts, then `mllr_solve` (one global
MLLR transform, used through the decoder's `mllr` option) and `map_adapt` (MAP means, variances,
mixture weights, used as a new model folder) adapt the model. The bench prints boundary accuracy
of the base model, MLLR and MAP on the same clips (adaptation and test on the same recordings,
as an operator's corpus would be). The wheel ships only quantised `sendump` mixture weights;
`bw` needs `mixture_weights`, converted here (a Python 3 port of sphinxtrain's sendump.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tools"))
SPHINXTRAIN = Path("/usr/lib/sphinxtrain")


def _model_dir() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us"


def sendump_to_mixture_weights(sendump: Path, out: Path) -> None:
    """Dequantise pocketsphinx's sendump into a Sphinx-III mixture_weights file."""
    with open(sendump, "rb") as fh:
        fmt = "<I" if struct.unpack("<I", fh.read(4))[0] <= 65536 else ">I"
        fh.seek(0)

        def readstr():
            n = struct.unpack(fmt, fh.read(4))[0]
            return None if n == 0 else fh.read(n)[:-1].decode("latin-1")

        readstr()  # title
        header = {}
        while (line := readstr()) is not None:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                header[parts[0]] = int(parts[1])
        if header.get("cluster_count", 0):
            raise SystemExit("clustered sendump not supported")
        n_density = struct.unpack(fmt, fh.read(4))[0]
        n_senone = struct.unpack(fmt, fh.read(4))[0]
        n_feat, shift = header["feature_count"], header.get("mixw_shift", 10)
        mixw = np.empty((n_senone, n_feat, n_density))
        for f in range(n_feat):
            for d in range(n_density):
                q = np.frombuffer(fh.read(n_senone), dtype=np.uint8).astype(np.float64)
                mixw[:, f, d] = np.power(1.0001, -(q * 2**shift))
    with open(out, "wb") as fh:
        fh.write(b"s3\nversion 1.0\n")
        pad = (fh.tell() + len(b"endhdr\n")) & 3
        fh.write((b" " * (4 - pad) if pad else b"") + b"endhdr\n")
        fh.write(struct.pack("=i", 0x11223344))
        fh.write(struct.pack("=IIII", *mixw.shape, mixw.size))
        mixw.ravel().astype("<f4").tofile(fh)


def write_corpus(refs: Path, lang: str, cond: str, n: int, work: Path) -> list[tuple[str, str]]:
    from degrade import degrade

    from voicelane.engine import align, frontend

    (work / "wav").mkdir(parents=True)
    meta = [line.split("|", 1) for line in (refs / lang / "metadata.csv").read_text("utf-8").splitlines()][:n]
    trans, dictionary = [], {}
    for k, (clip_id, text) in enumerate(meta):
        y, sr = sf.read(str(refs / lang / "wavs" / f"{clip_id}.flac"), dtype="float64")
        y = degrade(y, sr, cond, seed=1000 + k)
        sf.write(work / "wav" / f"{clip_id}.wav", y * min(1.0, 0.99 / np.max(np.abs(y))), sr, subtype="PCM_16")
        names = []
        for i, (_w, phones) in enumerate(frontend.words_ipa(text.strip(), lang)):
            arpa = [a for p in phones for a in align.ipa_to_arpabet(p)]
            if arpa:
                names.append(f"{clip_id}_W{i}".upper())
                dictionary[names[-1]] = arpa
        trans.append(f"<s> {' '.join(names)} </s> ({clip_id})")
    (work / "ctl").write_text("".join(f"{c}\n" for c, _t in meta))
    (work / "trans").write_text("".join(f"{t}\n" for t in trans))
    (work / "dict").write_text("".join(f"{k} {' '.join(v)}\n" for k, v in sorted(dictionary.items())))
    (work / "fdict").write_text("<s> SIL\n</s> SIL\n<sil> SIL\n")
    return [(c, t.strip()) for c, t in meta]


def run(cmd: list[str], log: Path) -> None:
    with open(log, "w") as fh:
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True)


def adapt(work: Path) -> tuple[Path, Path]:
    m = _model_dir()
    subprocess.run(
        ["pocketsphinx_mdef_convert", "-text", str(m / "mdef"), str(work / "mdef.txt")], check=True, capture_output=True
    )
    sendump_to_mixture_weights(m / "sendump", work / "mixture_weights")
    (work / "mfc").mkdir()
    (work / "acc").mkdir()
    run(
        [
            "sphinx_fe",
            "-argfile",
            str(m / "feat.params"),
            "-samprate",
            "16000",
            "-c",
            str(work / "ctl"),
            "-di",
            str(work / "wav"),
            "-do",
            str(work / "mfc"),
            "-ei",
            "wav",
            "-eo",
            "mfc",
            "-mswav",
            "yes",
        ],
        work / "fe.log",
    )
    common = [
        "-moddeffn",
        str(work / "mdef.txt"),
        "-ts2cbfn",
        ".ptm.",
        "-meanfn",
        str(m / "means"),
        "-varfn",
        str(m / "variances"),
        "-mixwfn",
        str(work / "mixture_weights"),
        "-tmatfn",
        str(m / "transition_matrices"),
    ]
    run(
        [
            str(SPHINXTRAIN / "bw"),
            "-hmmdir",
            str(m),
            *common,
            "-feat",
            "1s_c_d_dd",
            "-svspec",
            "0-12/13-25/26-38",
            "-cmn",
            "batch",
            "-agc",
            "none",
            "-dictfn",
            str(work / "dict"),
            "-fdictfn",
            str(work / "fdict"),
            "-ctlfn",
            str(work / "ctl"),
            "-lsnfn",
            str(work / "trans"),
            "-accumdir",
            str(work / "acc"),
            "-cepdir",
            str(work / "mfc"),
        ],
        work / "bw.log",
    )
    run(
        [
            str(SPHINXTRAIN / "mllr_solve"),
            "-meanfn",
            str(m / "means"),
            "-varfn",
            str(m / "variances"),
            "-outmllrfn",
            str(work / "mllr_matrix"),
            "-accumdir",
            str(work / "acc"),
        ],
        work / "mllr.log",
    )
    map_dir = work / "map"
    shutil.copytree(m, map_dir)
    (map_dir / "sendump").unlink()
    run(
        [
            str(SPHINXTRAIN / "map_adapt"),
            *common,
            "-accumdir",
            str(work / "acc"),
            "-mapmeanfn",
            str(map_dir / "means"),
            "-mapvarfn",
            str(map_dir / "variances"),
            "-mapmixwfn",
            str(map_dir / "mixture_weights"),
            "-maptmatfn",
            str(map_dir / "transition_matrices"),
        ],
        work / "map.log",
    )
    return work / "mllr_matrix", map_dir


def accuracy(refs: Path, lang: str, work: Path, clips, options: dict) -> tuple[float, float]:
    from align_accuracy import hit_rate, reference_boundaries
    from render_align_refs import read_segs

    from voicelane.engine import align

    h20 = h50 = total = 0
    for clip_id, text in clips:
        y, sr = sf.read(str(work / "wav" / f"{clip_id}.wav"), dtype="float64")
        ref = reference_boundaries(read_segs(refs / lang / "segs" / f"{clip_id}.lab"))
        total += len(ref)
        try:
            pred = align.align_text(y, sr, text, lang, **options).boundaries()
        except Exception:  # noqa: BLE001 - a failed clip scores zero hits
            continue
        h20 += hit_rate(ref, pred, 0.020)
        h50 += hit_rate(ref, pred, 0.050)
    return h20 / max(total, 1), h50 / max(total, 1)


def main() -> None:
    import pocketsphinx

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", type=Path, required=True)
    ap.add_argument("--lang", required=True)
    ap.add_argument("--condition", default="clean")
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="voicelane-adapt-") as tmp:
        work = Path(tmp)
        clips = write_corpus(args.refs, args.lang, args.condition, args.n, work)
        mllr, map_dir = adapt(work)
        cmudict = os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")
        for name, options in (
            ("base", {}),
            ("mllr", {"mllr": str(mllr)}),
            ("map", {"hmm": str(map_dir), "dict": cmudict}),
        ):
            a20, a50 = accuracy(args.refs, args.lang, work, clips, options)
            print(
                f"{args.lang} {args.condition} {name}: within 20 ms {a20 * 100:.1f} %, within 50 ms {a50 * 100:.1f} %",
                flush=True,
            )


if __name__ == "__main__":
    main()

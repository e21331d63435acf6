"""Model-choice race on the slt corpus: same data, same minutes, same evaluation.

    .venv/bin/python bench/model_race.py --minutes 10 [--n 12] [--variants external,aligner]

* external: coqui ForwardTTS (SpeedySpeech) + durations from pocketsphinx forced alignment (ours)
* aligner:  the same model learning its own alignment (coqui's AlignTTS-style aligner + MAS,
            ``use_aligner=True``, the FastPitch recipe), i.e. without forced alignment
Both predict WORLD frames; each trains for --minutes of wall time on this CPU, then the held-out
slt sentences are synthesised and scored. Prints a JSON row per variant.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    import torch
    from learning_curve import heldout_clips

    from voicelane import dataset
    from voicelane.engine import data, model, train
    from voicelane.engine.voice import Voice
    from voicelane.evaluate import evaluate

    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default="external,aligner")
    a = ap.parse_args()
    work = Path(tempfile.gettempdir()) / "voicelane-race"
    man = dataset.prepare_dataset(REPO / "corpora/slt", work / "ds", dataset.DatasetConfig(val_fraction=0, val_min=0))
    entries = [dict(e, abs_path=work / "ds" / e["path"]) for e in man["entries"]]
    items, _ = data.prepare_all(entries, work / "cache", workers=2)
    mean, std = data.feature_stats(items)
    clips = heldout_clips(REPO / "corpora/slt_heldout", a.n)
    p = model.preset("cpu")
    torch.set_num_threads(a.threads)
    for variant in a.variants.split(","):
        arch = model.architecture(p)
        train.seed_everything(1234)
        net, crit = model.build_model(arch)
        if variant == "aligner":
            from TTS.tts.layers.generic.aligner import AlignmentNetwork
            from TTS.tts.layers.losses import ForwardTTSLoss

            from voicelane.engine import compat  # noqa: F401

            net.use_aligner = net.args.use_aligner = True
            net.aligner = AlignmentNetwork(in_query_channels=arch["out_channels"], in_key_channels=arch["hidden"])
            net.config.model_args.use_aligner = True
            crit = ForwardTTSLoss(net.config)
            net.binary_loss_weight = 1.0
        opt = torch.optim.AdamW([q for q in net.parameters() if q.requires_grad], lr=p["lr"], betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, train.lr_lambda_factory(p["warmup"], 6000))
        lengths = [len(it.feats) for it in items]
        t0 = time.perf_counter()
        step = 0
        net.train()
        while time.perf_counter() - t0 < a.minutes * 60:
            epoch, pos = divmod(step, 10**9)
            batches = data.batches_for_epoch(lengths, p["batch_size"], 1234, step // 40)
            idx = batches[step % len(batches)]
            batch = data.collate([items[i] for i in idx], mean, std)
            _, losses = net.train_step(batch, crit)
            opt.zero_grad()
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
        minutes = (time.perf_counter() - t0) / 60
        net.eval()
        v = Voice(
            net,
            {"arch": arch, "language": "en-us", "feat_mean": list(map(float, mean)), "feat_std": list(map(float, std))},
        )
        r = evaluate(v.synthesize, clips, prompts=[], with_floor=False)
        print(
            json.dumps(
                {
                    "variant": variant,
                    "steps": step,
                    "train_minutes": round(minutes, 2),
                    "wer": r["wer"],
                    "content_word_recall": r["content_word_recall"],
                    "mcd_db": r["mcd_db"],
                    "duration_ratio": r["duration_ratio"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

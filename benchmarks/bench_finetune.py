"""Which weights should learn when fine-tuning Whisper on a CPU: the whole decoder or LoRA adapters,
side by side on the same encoded clips, measured on a target set and a general set.

    .venv/bin/python benchmarks/bench_finetune.py --data ../shared/data
    .venv/bin/python benchmarks/bench_finetune.py --data ../shared/data --train kathleen_train --dev kathleen_dev

Prints one row per way of learning: steps taken, training seconds, the held-out greedy WER that early
stopping saw, and the saved model's WER (beam search, the model's own decoding) on the target and the
general set, beside the base's.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from asrkit.audio import load_audio
from asrkit.data.augment import AugmentConfig, Augmenter
from asrkit.evaluate import evaluate
from asrkit.finetune import hold_out, select_clips
from asrkit.manifest import read_manifest
from asrkit.models import load_model
from asrkit.models.whisper.finetune import TRAINABLE, FinetuneOptions, encode_examples, finetune, save_finetuned
from asrkit.models.whisper.model import WhisperModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--train", default="fsdd_train", help="split to learn from")
    parser.add_argument("--dev", default="fsdd_dev", help="target split")
    parser.add_argument("--general", default="fixtures_dev", help="general split (forgetting)")
    parser.add_argument("--max-clips", type=int, default=600)
    parser.add_argument("--dev-clips", type=int, default=200, help="target clips measured, spread over the split")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--base", default="whisper-tiny.en")
    args = parser.parse_args()
    splits = args.data / "splits"
    exclude = (splits / "eval_texts_to_exclude_from_training.txt").read_text(encoding="utf-8").splitlines()
    clips, _ = select_clips(read_manifest(splits / f"{args.train}.tsv"), exclude=exclude, max_clips=args.max_clips)
    train_utts, held_utts = hold_out(clips, fraction=0.1, seed=0)
    dev_all = read_manifest(splits / f"{args.dev}.tsv")
    dev = [dev_all[int(i * len(dev_all) / args.dev_clips)] for i in range(min(args.dev_clips, len(dev_all)))]
    general = read_manifest(splits / f"{args.general}.tsv")

    base = load_model(args.base)
    rows = [
        (
            "base",
            "",
            "",
            "",
            evaluate(base, dev, progress=False).corpus.wer,
            evaluate(base, general, progress=False).corpus.wer,
        )
    ]
    augmenter = Augmenter(
        args.data / "noise", config=AugmentConfig(reverb_prob=0.3, noise_prob=0.5, snr_db=(10.0, 30.0))
    )
    began = time.monotonic()
    train_set = encode_examples(
        base,
        [load_audio(u.audio_path) for u in train_utts],
        [u.transcript for u in train_utts],
        copies=args.copies,
        augmenter=augmenter,
    )
    held_set = encode_examples(base, [load_audio(u.audio_path) for u in held_utts], [u.transcript for u in held_utts])
    encode_s = time.monotonic() - began
    with tempfile.TemporaryDirectory() as scratch:
        for way in TRAINABLE:
            model = load_model(args.base)
            options = FinetuneOptions(trainable=way, steps=args.steps, copies=args.copies)
            result = finetune(model, train_set, held_set, run_dir=Path(scratch) / f"{way}.run", options=options)
            folder = save_finetuned(model, result, folder=Path(scratch) / way, card=replace(model.card, name=way))
            tuned = WhisperModel.load(folder)
            best = next(e for e in result.evaluations if e.step == result.best_step)
            rows.append(
                (
                    way,
                    f"{result.best_step}/{result.steps}",
                    f"{result.train_s:.0f}",
                    f"{100 * best.wer:.2f}",
                    evaluate(tuned, dev, progress=False).corpus.wer,
                    evaluate(tuned, general, progress=False).corpus.wer,
                )
            )
            shutil.rmtree(folder)
    print(
        f"learning from {len(train_utts)} clips of {args.train} (+{args.copies} augmented copies each; encoding took "
        f"{encode_s:.0f} s), {len(held_utts)} held out; {len(dev)} clips of {args.dev}, "
        f"all {len(general)} of {args.general}"
    )
    print(
        f"{'learns':<10}{'best/steps':>11}{'train s':>9}{'held-out %':>12}"
        f"{args.dev + ' %':>16}{args.general + ' %':>16}"
    )
    for way, steps, seconds, held, dev_wer, general_wer in rows:
        print(f"{way:<10}{steps:>11}{seconds:>9}{held:>12}{100 * dev_wer:>16.2f}{100 * general_wer:>16.2f}")


if __name__ == "__main__":
    main()

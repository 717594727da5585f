"""Underfitting or overfitting? A Keras CTC model's CTC loss per character on clean clips it trained on
against held-out clips of the same voices, and on strangers (fixtures_dev).

Train close to dev means the network has not yet learnt what it hears (compute, capacity); train far
below dev means it learnt those clips or speakers and does not carry over (data, speaker variety).

    .venv/bin/python benchmarks/bench_loss_gap.py [--model asrkit-ctc-en] [--limit 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from asrkit.audio import load_audio
from asrkit.manifest import read_manifest
from asrkit.models import load_model
from asrkit.text import normalize_text
from asrkit.train import ctc_loss

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "splits"


def mean_loss(model, manifest: Path, limit: int) -> tuple[float, int]:
    """Mean per-character CTC loss over ``limit`` clips spread evenly through the manifest."""
    utterances = read_manifest(manifest)
    utterances = utterances[:: max(1, len(utterances) // limit)][:limit]
    losses = []
    for u in utterances:
        logits = model.logits([model.features(load_audio(u.audio_path))])[0]
        labels = model.tokenizer.encode(normalize_text(u.transcript))
        packed = np.array([[len(logits), *labels]], np.float32)
        losses.append(float(np.asarray(ctc_loss(packed, logits[None]))[0]))
    return float(np.mean(losses)), len(utterances)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="asrkit-ctc-en", help="a Keras CTC model")
    parser.add_argument("--limit", type=int, default=100, help="clips per split")
    args = parser.parse_args()
    model = load_model(args.model)
    print(f"{model.name}: CTC loss per character")
    print(f"{'split':15} {'loss':>6} {'clips':>6}")
    for split in ("kathleen_train", "kathleen_dev", "fsdd_train", "fsdd_dev", "fixtures_dev"):
        loss, n = mean_loss(model, SPLITS / f"{split}.tsv", args.limit)
        print(f"{split:15} {loss:6.3f} {n:6}", flush=True)


if __name__ == "__main__":
    main()

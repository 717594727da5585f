"""What a wider beam buys and costs: a Keras CTC model's network runs once over the first N clips of
each split, then its beam search decodes the same scores at each width; the table gives WER and the
decoding time per second of audio (the network's own time on the first line, for scale).

Choose the width on kathleen_dev and fsdd_dev; fixtures_dev is there to report, not to tune on.

    .venv/bin/python benchmarks/bench_beam_search.py [--model asrkit-ctc-en] [--limit 100] [--widths 16 32 64 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.decoding import beam_search
from asrkit.features import compute_features
from asrkit.manifest import read_manifest
from asrkit.metrics import score_corpus
from asrkit.models import load_model

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "splits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="asrkit-ctc-en", help="a Keras CTC model with a language model")
    parser.add_argument("--limit", type=int, default=100, help="clips per split")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128], help="beam widths to try")
    args = parser.parse_args()
    model = load_model(args.model)
    config, frame = model.config, model.config.frame_duration_s
    splits = {}
    network_s = audio_s = 0.0
    for split in ("kathleen_dev", "fsdd_dev", "fixtures_dev"):
        utterances = read_manifest(SPLITS / f"{split}.tsv")[: args.limit]
        audio = [load_audio(u.audio_path) for u in utterances]
        began = time.process_time()
        logits = model.logits([compute_features(a, config=config.features) for a in audio])
        network_s += time.process_time() - began
        audio_s += sum(len(a) for a in audio) / SAMPLE_RATE
        splits[split] = (logits, [u.transcript for u in utterances], sum(len(a) for a in audio) / SAMPLE_RATE)
    print(
        f"{model.name}: network {network_s / audio_s:.4f} CPU s per audio s over {audio_s / 60:.1f} min; "
        f"decoder alpha {config.decoder.alpha}, beta {config.decoder.beta}, "
        f"closed vocabulary {'yes' if config.decoder.closed_vocabulary else 'no'}"
    )
    print(f"{'width':>5} " + " ".join(f"{s + ' WER':>17} {'CPU s/s':>8}" for s in splits))
    for width in args.widths:
        decoder = dataclasses.replace(config.decoder, beam_width=width)
        row = []
        for logits, references, seconds in splits.values():
            began = time.process_time()
            hyps = [
                beam_search(x, tokenizer=model.tokenizer, frame_duration_s=frame, lm=model.lm, config=decoder)[0]
                for x in logits
            ]
            spent = time.process_time() - began
            row.append(f"{100 * score_corpus(references, hyps).wer:16.2f}% {spent / seconds:8.4f}")
        print(f"{width:5} " + " ".join(row), flush=True)


if __name__ == "__main__":
    main()

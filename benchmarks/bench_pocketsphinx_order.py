"""Does PocketSphinx's transcript of a clip depend on the clips it decoded before? One decoder decodes
the first N clips of each split in manifest order, a fresh one in reverse order; the table counts the
clips whose text agrees, for the decoder as it comes ("as is") and with its feature computer reset
before every clip ("reset", what :class:`asrkit.models.pocketsphinx.PocketSphinxModel` does).

    .venv/bin/python benchmarks/bench_pocketsphinx_order.py [--limit 60]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pocketsphinx import Decoder

from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.manifest import read_manifest
from asrkit.metrics import score_corpus
from asrkit.models.pocketsphinx import _pcm

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "splits"


def transcripts(paths: list[Path], *, reset: bool) -> dict[Path, str]:
    """Each clip's text from one decoder that decodes them in the order given."""
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    out = {}
    for path in paths:
        if reset:
            decoder.reinit_feat()
        decoder.start_utt()
        decoder.process_raw(_pcm(load_audio(path)), full_utt=True)
        decoder.end_utt()
        out[path] = decoder.hyp().hypstr if decoder.hyp() else ""
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60, help="clips per split")
    args = parser.parse_args()
    print(f"{'split':14} {'decoder':8} {'agree':>7} {'WER in order':>13} {'WER reversed':>13} {'s':>5}")
    for split in ("fsdd_dev", "kathleen_dev", "fixtures_dev"):
        utterances = read_manifest(SPLITS / f"{split}.tsv")[: args.limit]
        paths = [u.audio_path for u in utterances]
        references = [u.transcript for u in utterances]
        for reset in (False, True):
            began = time.monotonic()
            forward, backward = transcripts(paths, reset=reset), transcripts(paths[::-1], reset=reset)
            agree = sum(forward[p] == backward[p] for p in paths)
            wers = [score_corpus(references, [run[p] for p in paths]).wer for run in (forward, backward)]
            label = "reset" if reset else "as is"
            print(
                f"{split:14} {label:8} {agree:3}/{len(paths):<3} {100 * wers[0]:12.2f}% {100 * wers[1]:12.2f}% "
                f"{time.monotonic() - began:5.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

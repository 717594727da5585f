"""The lab's data folder (``../shared/data`` beside the repository; see its README) and what our recipes take
from it. asrkit itself knows none of these names: the recipes hand it paths.

The folder holds ``splits/*.tsv`` (manifests), ``splits/eval_texts_to_exclude_from_training.txt`` (every
sentence of the evaluation sets), ``text/`` (LJSpeech, CMU ARCTIC and Harvard sentences) and ``noise/``
(noise clips and ``rir_simulated/`` room responses).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from asrkit.cli import main as asrkit_main
from asrkit.data.synth import allowed_sentences, read_sentences
from asrkit.manifest import read_manifest

# every sentence of the evaluation sets: no training text, LM or prompt may hold one
EXCLUDED = "splits/eval_texts_to_exclude_from_training.txt"
# real speech the CTC model learns from, each clean and in this many augmented copies
CTC_TRAIN = {"kathleen_train": 3, "fsdd_train": 2}
# sets whose first utterances choose the CTC model's best checkpoint; fixtures_dev stays out, since
# choosing checkpoints on it would tune to the strangers it stands for
CTC_DEV = ("kathleen_dev", "fsdd_dev")
# transcripts the word LM learns from, besides text/
LM_TRANSCRIPTS = ("kathleen_train", "fsdd_train")
# the set the beam search's LM weight, word bonus and closed vocabulary are tuned on
DECODER_DEV = "kathleen_dev"
# general speech the forgetting check of fine-tuning measures: 8 speakers no training data has
GENERAL = "fixtures_dev"


def split(data: Path, name: str) -> Path:
    """The manifest of split ``name``."""
    return data / "splits" / f"{name}.tsv"


def check(data: Path) -> Path:
    """``data``, or exit with a message when it is not the lab's data folder."""
    if not (data / EXCLUDED).is_file():
        sys.exit(f"error: {data} is not the data folder: {EXCLUDED} is missing (give --data DIR)")
    return data


def lm_sentences(data: Path) -> list[str]:
    """Text the word LM learns from: text/ and the training transcripts, less every evaluation sentence."""
    excluded = (data / EXCLUDED).read_text(encoding="utf-8").splitlines()
    transcripts = [u.transcript for name in LM_TRANSCRIPTS for u in read_manifest(split(data, name))]
    return allowed_sentences([*read_sentences(data / "text"), *transcripts], excluded)


def run_asrkit(argv: Sequence[str]) -> int:
    """Print the asrkit command line, so it can be run by hand, then run it."""
    print("+ " + shlex.join(["asrkit", *map(str, argv)]), flush=True)
    return asrkit_main([str(a) for a in argv])

"""Reproduce the fine-tuned Whisper models of docs/finetuning.md: ``fsdd`` (an unseen speaker's digits) and
``kathleen`` (a voice the model has heard). Neither learns from the general set or any evaluation sentence.

Arguments after the recipe's name go to ``asrkit finetune`` unchanged.

Usage
-----
::

    python recipes/whisper_finetune.py --data ../shared/data fsdd
    python recipes/whisper_finetune.py --data ../shared/data kathleen --steps 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lab_data

# recipe -> (training split, its dev split, the model's name, asrkit finetune's own options)
RECIPES = {
    "fsdd": ("fsdd_train", "fsdd_dev", "whisper-tiny.en-fsdd", ["--max-clips", "500"]),
    "kathleen": ("kathleen_train", "kathleen_dev", "whisper-tiny.en-kathleen", ["--copies", "0"]),
}


def finetune_argv(data: Path, recipe: str) -> list:
    """``asrkit finetune`` for ``recipe`` (a key of :data:`RECIPES`)."""
    train, dev, name, options = RECIPES[recipe]
    return [
        "finetune",
        lab_data.split(data, train),
        "--name",
        name,
        *options,
        "--dev",
        lab_data.split(data, dev),
        "--general",
        lab_data.split(data, lab_data.GENERAL),
        "--exclude",
        data / lab_data.EXCLUDED,
        "--noise-dir",
        data / "noise",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", type=Path, required=True, help="the lab's data folder, e.g. ../shared/data")
    parser.add_argument("recipe", choices=RECIPES)
    args, rest = parser.parse_known_args(argv)
    return lab_data.run_asrkit([*finetune_argv(lab_data.check(args.data), args.recipe), *rest])


if __name__ == "__main__":
    sys.exit(main())

"""Reproduce asrkit-ctc-en: a TTS corpus, training, and the word LM with its tuned beam search.

Each step prints and runs one ``asrkit`` command with the lab data's choices (see ``lab_data.py``);
arguments after the step's own go to that command unchanged (``--steps``, ``--max-minutes``, ...).

Usage
-----
::

    python recipes/ctc_en.py --data ../shared/data synth runs/synth0
    python recipes/ctc_en.py --data ../shared/data train runs/run4 --synthetic runs/synth0 \\
        --cache-dir runs/features --name asrkit-ctc-en --steps 4000 --max-minutes 150
    asrkit average runs/run4 runs/run4-avg --last 5
    python recipes/ctc_en.py --data ../shared/data decoder runs/run4-avg models/asrkit-ctc-en --limit 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lab_data


def synth_argv(data: Path, out: Path) -> list:
    """``asrkit synth``: every allowed sentence of text/, evaluation sentences left out."""
    return ["synth", out, "--text", data / "text", "--exclude", data / lab_data.EXCLUDED]


def train_argv(data: Path, run_dir: Path) -> list:
    """``asrkit train``: the real speech of :data:`lab_data.CTC_TRAIN`, early stopping on :data:`lab_data.CTC_DEV`."""
    argv = ["train", run_dir, "--noise-dir", data / "noise"]
    for name, copies in lab_data.CTC_TRAIN.items():
        argv += ["--train", f"{lab_data.split(data, name)}:{copies}"]
    for name in lab_data.CTC_DEV:
        argv += ["--dev", lab_data.split(data, name)]
    return argv


def decoder_argv(data: Path, model: Path, out: Path) -> list:
    """``asrkit decoder``: an LM of text/ and the training transcripts, tuned on :data:`lab_data.DECODER_DEV`."""
    argv = [
        "decoder",
        model,
        out,
        "--text",
        data / "text",
        "--exclude",
        data / lab_data.EXCLUDED,
        "--dev",
        lab_data.split(data, lab_data.DECODER_DEV),
    ]
    for name in lab_data.LM_TRANSCRIPTS:
        argv += ["--transcripts", lab_data.split(data, name)]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", type=Path, required=True, help="the lab's data folder, e.g. ../shared/data")
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("synth", help="the TTS corpus").add_argument("out", type=Path, metavar="OUT_DIR")
    steps.add_parser("train", help="train or resume").add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p = steps.add_parser("decoder", help="the word LM and the tuned beam search")
    p.add_argument("model", type=Path, metavar="MODEL_DIR")
    p.add_argument("out", type=Path, metavar="OUT_DIR")
    args, rest = parser.parse_known_args(argv)
    data = lab_data.check(args.data)
    command = {
        "synth": lambda: synth_argv(data, args.out),
        "train": lambda: train_argv(data, args.run_dir),
        "decoder": lambda: decoder_argv(data, args.model, args.out),
    }[args.step]()
    return lab_data.run_asrkit([*command, *rest])


if __name__ == "__main__":
    sys.exit(main())

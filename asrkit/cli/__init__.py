"""The ``asrkit`` command: transcribe files, evaluate on a manifest, show versions and models.

Exit codes: 0 success; 1 some inputs could not be read (the rest were processed); 2 bad usage, an
unknown model, a bad manifest, a bad setting, or a Ray run that cannot start or finish.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import asrkit
from asrkit.cli import models, recognise, training
from asrkit.cli.common import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, printable
from asrkit.cli.recognise import LiveTranscript
from asrkit.cli.training import InputFileError
from asrkit.config import Config
from asrkit.errors import AsrkitError

__all__ = [
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "InputFileError",
    "LiveTranscript",
    "build_parser",
    "main",
]
# The subcommands, each added with its options by its module, in the order 'asrkit --help' lists them.
COMMANDS = (
    recognise.add_transcribe,
    recognise.add_eval,
    recognise.add_compare,
    recognise.add_stream,
    training.add_synth,
    training.add_train,
    training.add_average,
    training.add_decoder,
    models.add_export,
    training.add_adapt,
    training.add_finetune,
    models.add_info,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asrkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"asrkit {asrkit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # recorded beside measured results, so anyone can run the same measurement again
    args.command_line = shlex.join(["asrkit", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args, Config.from_env())
    # every input, setting or model asrkit refuses, each with a message naming it; anything else is a bug
    except AsrkitError as err:
        print(f"error: {printable(str(err))}", file=sys.stderr)
        return EXIT_USAGE

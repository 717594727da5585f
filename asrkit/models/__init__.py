"""The model registry: names and folders to loaded models.

A registered model is a folder under :data:`MODELS_DIR` holding a ``card.json``; its name is the
folder's name. ``load_model()`` with no argument loads ``ASR_MODEL_NAME``, "default" unless set.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from asrkit.config import Config
from asrkit.models.base import CARD_FILE, ASRModel, ModelCard, Span, Transcript

# The shipped models live in the repository's models/ folder; ASR_MODELS_DIR points elsewhere.
MODELS_DIR = Path(os.environ.get("ASR_MODELS_DIR") or Path(__file__).resolve().parents[2] / "models")
# What "default" means: the shipped model with the lowest WER on fixtures_dev (strangers at the
# microphone), as recorded in the models' cards.
DEFAULT_MODEL = "pocketsphinx"
# card.json's config["backend"] to the class that loads such a folder, imported only when used
# (TensorFlow takes seconds to import, and listing models should not need it).
BACKENDS = {
    "keras-ctc": "asrkit.models.keras_ctc:KerasCTCModel",
    "litert-ctc": "asrkit.models.litert_ctc:LiteRTCTCModel",
    "pocketsphinx": "asrkit.models.pocketsphinx:PocketSphinxModel",
}

__all__ = [
    "ASRModel", "DEFAULT_MODEL", "MODELS_DIR", "ModelCard", "ModelEntry", "Span", "Transcript",
    "UnknownModelError", "available_models", "load_model", "resolve_model",
]


class UnknownModelError(LookupError):
    """No registered model has that name and no folder is at that path."""


@dataclass(frozen=True)
class ModelEntry:
    """A model the registry can load, without loading it."""

    name: str
    path: Path
    card: ModelCard


def available_models(models_dir: str | Path | None = None) -> list[ModelEntry]:
    """Registered models, the default first, then by name."""
    root = Path(models_dir) if models_dir is not None else MODELS_DIR
    entries = [
        ModelEntry(folder.name, folder, ModelCard.load(folder))
        for folder in sorted(root.iterdir() if root.is_dir() else [])
        if (folder / CARD_FILE).is_file()
    ]
    return sorted(entries, key=lambda e: (e.name != DEFAULT_MODEL, e.name))


def resolve_model(name_or_path: str | Path | None = None, *, config: Config | None = None) -> Path:
    """The folder that a name, a path or ``ASR_MODEL_NAME`` (None) stands for."""
    config = config or Config.from_env()
    name = str(name_or_path) if name_or_path is not None else config.model_name
    if name == "default":
        name = DEFAULT_MODEL
    for folder in (MODELS_DIR / name, Path(name).expanduser()):
        if (folder / CARD_FILE).is_file():
            return folder
    known = ", ".join(e.name for e in available_models()) or f"none (nothing in {MODELS_DIR})"
    raise UnknownModelError(
        f"no model named {name!r}: registered models are {known}; "
        f"or give a model folder that holds a {CARD_FILE}"
    )


def load_model(name_or_path: str | Path | None = None, *, config: Config | None = None) -> ASRModel:
    """Load a model by registry name or folder; with no argument, ``ASR_MODEL_NAME`` or "default".

    ``hf:<repo id>`` loads a Hugging Face wav2vec 2.0 or Whisper model from the local cache, as does a
    folder saved with ``save_pretrained`` (see :mod:`asrkit.models.hf`).

    Examples
    --------
    >>> model = load_model()  # doctest: +SKIP
    >>> model.name, model.card.trained  # doctest: +SKIP
    ('pocketsphinx', True)
    """
    config = config or Config.from_env()
    name = str(name_or_path) if name_or_path is not None else config.model_name
    from asrkit.models.hf import is_hf_folder, is_hf_name, load_hf_model

    if is_hf_name(name) or is_hf_folder(Path(name).expanduser()):
        # no card.json: the model's own config says what it is (needs the "hf" extra)
        return load_hf_model(name, batch_size=config.batch_size, device=config.device)
    folder = resolve_model(name_or_path, config=config)
    backend = ModelCard.load(folder).config.get("backend")
    if backend not in BACKENDS:
        raise UnknownModelError(f"{folder / CARD_FILE} names backend {backend!r}; asrkit has {', '.join(BACKENDS)}")
    module, cls = BACKENDS[backend].split(":")
    model_class = getattr(importlib.import_module(module), cls)
    return model_class.load(folder, batch_size=config.batch_size, device=config.device)

"""The model registry: names and folders to loaded models.

A registered model is a folder under :data:`MODELS_DIR` (shipped) or :data:`USER_MODELS_DIR` (made on
this machine, e.g. by personal adaptation) holding a ``card.json``; its name is the folder's name, and a
shipped model's name wins. ``load_model()`` with no argument loads ``ASR_MODEL_NAME``, "default" unless set.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from asrkit.config import Config
from asrkit.errors import AsrkitError
from asrkit.models.base import (
    CARD_FILE, GENERAL_SETS, ASRModel, CardError, Headline, ModelCard, ModelFileError, ModelUnavailableError,
    PromptError, Span, Transcript, headline_metric,
)

# The shipped models live in the repository's models/ folder; ASR_MODELS_DIR points elsewhere.
MODELS_DIR = Path(os.environ.get("ASR_MODELS_DIR") or Path(__file__).resolve().parents[2] / "models")
# Cards of models whose weights come from an installed package, shipped inside asrkit so that a plain
# (non-editable) install has them too.
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
# The user's own data (recordings for adaptation, models made from them) outside the repository.
USER_DIR = Path(os.environ.get("ASR_USER_DIR") or Path.home() / ".local" / "share" / "asrkit")
# Models made on this machine; searched after MODELS_DIR, so they can never shadow a shipped model.
USER_MODELS_DIR = Path(os.environ.get("ASR_USER_MODELS_DIR") or USER_DIR / "models")
# What "default" means: the shipped model with the lowest WER on fixtures_dev (strangers at the
# microphone), as recorded in the models' cards.
DEFAULT_MODEL = "whisper-tiny.en"
# card.json's config["backend"] to the class that loads such a folder, imported only when used
# (TensorFlow takes seconds to import, and listing models should not need it).
BACKENDS = {
    "keras-ctc": "asrkit.models.keras_ctc:KerasCTCModel",
    "litert-ctc": "asrkit.models.litert_ctc:LiteRTCTCModel",
    "pocketsphinx": "asrkit.models.pocketsphinx:PocketSphinxModel",
    "whisper": "asrkit.models.whisper.model:WhisperModel",
    "whisper-litert": "asrkit.models.whisper.litert:WhisperLiteRTModel",
}

__all__ = [
    "ASRModel", "DEFAULT_MODEL", "GENERAL_SETS", "MODELS_DIR", "USER_DIR", "USER_MODELS_DIR", "BrokenModel", "CardError",
    "Headline", "ModelCard", "ModelEntry", "ModelFileError", "ModelListing", "ModelUnavailableError", "PromptError",
    "Span", "Transcript", "UnknownModelError", "available_models", "headline_metric", "list_models", "load_model",
    "resolve_model",
]


class UnknownModelError(AsrkitError, LookupError):
    """No registered model has that name and no folder is at that path."""


@dataclass(frozen=True)
class ModelEntry:
    """A model the registry can load, without loading it."""

    name: str
    path: Path
    card: ModelCard


@dataclass(frozen=True)
class BrokenModel:
    """A registered folder whose card could not be read."""

    name: str
    path: Path
    # what reading its card.json raised, naming the file and the problem
    error: CardError

    def describe(self) -> str:
        """One line for people: which folder was left out, and why."""
        return f"{self.name} ({self.error})"


@dataclass(frozen=True)
class ModelListing:
    """What the registry holds: the models it can load, and the folders whose card it could not read."""

    # the default first, then by name
    entries: tuple[ModelEntry, ...]
    # by name
    broken: tuple[BrokenModel, ...]


def list_models(models_dir: str | Path | None = None) -> ModelListing:
    """Registered models (shipped and the user's, or those in ``models_dir``), passing over, and listing,
    the folders whose card cannot be read: one bad folder must not hide the others (the app's picker)."""
    roots = [Path(models_dir)] if models_dir is not None else [MODELS_DIR, SHIPPED_DIR, USER_MODELS_DIR]
    entries: dict[str, ModelEntry] = {}
    broken: dict[str, BrokenModel] = {}
    for root in roots:
        for folder in sorted(root.iterdir() if root.is_dir() else []):
            # a card.json that is a link (to a device, or nowhere) is reported, not passed over
            if not _has_card(folder) or folder.name in entries or folder.name in broken:
                continue
            try:
                entries[folder.name] = ModelEntry(folder.name, folder, ModelCard.load(folder))
            except CardError as err:
                broken[folder.name] = BrokenModel(folder.name, folder, err)
    return ModelListing(tuple(sorted(entries.values(), key=lambda e: (e.name != DEFAULT_MODEL, e.name))),
                        tuple(broken[name] for name in sorted(broken)))


def _has_card(folder: Path) -> bool:
    card = folder / CARD_FILE
    return card.exists() or card.is_symlink()


def available_models(models_dir: str | Path | None = None) -> list[ModelEntry]:
    """Registered models (shipped and the user's, or those in ``models_dir``), the default first, then by
    name; raises what reading the first unreadable card raised (see :func:`list_models`, which does not)."""
    listing = list_models(models_dir)
    if listing.broken:
        raise listing.broken[0].error
    return list(listing.entries)


def resolve_model(name_or_path: str | Path | None = None, *, config: Config | None = None) -> Path:
    """The folder that a name, a path or ``ASR_MODEL_NAME`` (None) stands for."""
    config = config or Config.from_env()
    name = str(name_or_path) if name_or_path is not None else config.model_name
    if name == "default":
        name = DEFAULT_MODEL
    from asrkit.models.hf import is_hf_folder
    from asrkit.models.kerashub import is_keras_hub_folder
    from asrkit.models.whisper.checkpoint import is_whisper_folder

    for folder in (MODELS_DIR / name, SHIPPED_DIR / name, USER_MODELS_DIR / name, Path(name).expanduser()):
        if _has_card(folder) or is_whisper_folder(folder) or is_hf_folder(folder) or is_keras_hub_folder(folder):
            return folder
    listing = list_models()
    known = ", ".join(e.name for e in listing.entries) or f"none (nothing in {MODELS_DIR})"
    unreadable = "".join(f"; left out, its card unreadable: {b.describe()}" for b in listing.broken)
    raise UnknownModelError(
        f"no model named {name!r}: registered models are {known}; "
        f"or give a model folder that holds a {CARD_FILE}{unreadable}"
    )


def load_model(name_or_path: str | Path | None = None, *, config: Config | None = None) -> ASRModel:
    """Load a model by registry name or folder; with no argument, ``ASR_MODEL_NAME`` or "default".

    ``hf:<repo id>`` loads a Hugging Face wav2vec 2.0 or Whisper model from the local cache, as does a
    folder saved with ``save_pretrained`` (see :mod:`asrkit.models.hf`); ``keras-hub:<preset>`` or a
    folder saved with ``save_to_preset`` loads a KerasHub Moonshine model (see :mod:`asrkit.models.kerashub`).

    Usage
    -----
    ::

        model = load_model()
        model.name, model.card.trained
        # ('whisper-tiny.en', True)
    """
    config = config or Config.from_env()
    name = str(name_or_path) if name_or_path is not None else config.model_name
    from asrkit.models.hf import is_hf_folder, is_hf_name, load_hf_model
    from asrkit.models.kerashub import is_keras_hub_folder, is_keras_hub_name, load_keras_hub_model

    from asrkit.models.whisper.checkpoint import is_whisper_folder

    # Whisper checkpoints (CTranslate2 or Hugging Face folders) run on our own Keras network
    if is_whisper_folder(Path(name).expanduser()):
        from asrkit.models.whisper.model import WhisperModel

        return WhisperModel.load(Path(name).expanduser(), batch_size=config.batch_size, device=config.device)
    # hub models have no card.json: their own config says what they are
    if is_keras_hub_name(name) or is_keras_hub_folder(Path(name).expanduser()):
        return load_keras_hub_model(name, batch_size=config.batch_size, device=config.device)
    if is_hf_name(name) or is_hf_folder(Path(name).expanduser()):
        return load_hf_model(name, batch_size=config.batch_size, device=config.device)
    folder = resolve_model(name_or_path, config=config)
    backend = ModelCard.load(folder).config.get("backend")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise UnknownModelError(f"{folder / CARD_FILE} names backend {backend!r}; asrkit has {', '.join(BACKENDS)}")
    module, cls = BACKENDS[backend].split(":")
    model_class = getattr(importlib.import_module(module), cls)
    return model_class.load(folder, batch_size=config.batch_size, device=config.device)

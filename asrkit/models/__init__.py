"""The model registry: names and folders to loaded models.

A registered model is a folder holding a ``card.json``, under ``ASR_MODELS_DIR`` (when set),
:data:`SHIPPED_DIR` (inside the package) or the user's models folder (``ASR_USER_MODELS_DIR``: made on this
machine, e.g. by personal adaptation); its name is the folder's name, and the first folder found wins, so a
user's model never shadows a shipped one. ``load_model()`` with no argument loads ``ASR_MODEL_NAME``,
"default" unless set. The folders come from :class:`asrkit.config.Config`, read when a function is called.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from asrkit.config import DEFAULT_MODEL, Config
from asrkit.contracts import (
    CARD_FILE,
    ASRModel,
    CardError,
    ModelCard,
    ModelFileError,
    ModelUnavailableError,
    PromptError,
    Span,
    Transcript,
)
from asrkit.errors import AsrkitError
from asrkit.models.base import GENERAL_KEY, Headline, headline_metric

# The shipped models, inside the package so that any install has them: asrkit's own (weights and all),
# and the cards of those whose weights come from an installed package (the default model).
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
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
    "ASRModel",
    "DEFAULT_MODEL",
    "GENERAL_KEY",
    "SHIPPED_DIR",
    "BrokenModel",
    "CardError",
    "Headline",
    "ModelCard",
    "ModelEntry",
    "ModelFileError",
    "ModelListing",
    "ModelUnavailableError",
    "PromptError",
    "Span",
    "Transcript",
    "UnknownModelError",
    "available_models",
    "headline_metric",
    "is_shipped",
    "list_models",
    "load_model",
    "model_roots",
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


def model_roots(config: Config | None = None) -> list[Path]:
    """The folders the registry searches, in order: ``config.paths.models_dir`` (when set), the shipped
    models, then the user's (``config`` defaults to :meth:`Config.from_env`)."""
    paths = (config or Config.from_env()).paths
    extra = [paths.models_dir] if paths.models_dir is not None else []
    return [*extra, SHIPPED_DIR, Path(paths.user_models_dir)]


def is_shipped(name: str, *, config: Config | None = None) -> bool:
    """Whether ``name`` is taken by a model searched before the user's (shipped, or in ``ASR_MODELS_DIR``):
    a user's model of that name could never be loaded, and such a model is never the user's to delete."""
    return any((root / name).exists() for root in model_roots(config)[:-1])


def list_models(models_dir: str | Path | None = None, *, config: Config | None = None) -> ModelListing:
    """Registered models (those of :func:`model_roots`, or those in ``models_dir``), passing over, and
    listing, the folders whose card cannot be read: one bad folder must not hide the others (the app's picker)."""
    roots = [Path(models_dir)] if models_dir is not None else model_roots(config)
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
    return ModelListing(
        tuple(sorted(entries.values(), key=lambda e: (e.name != DEFAULT_MODEL, e.name))),
        tuple(broken[name] for name in sorted(broken)),
    )


def _has_card(folder: Path) -> bool:
    card = folder / CARD_FILE
    return card.exists() or card.is_symlink()


def available_models(models_dir: str | Path | None = None, *, config: Config | None = None) -> list[ModelEntry]:
    """Registered models (those of :func:`model_roots`, or those in ``models_dir``), the default first, then
    by name; raises what reading the first unreadable card raised (see :func:`list_models`, which does not)."""
    listing = list_models(models_dir, config=config)
    if listing.broken:
        raise listing.broken[0].error
    return list(listing.entries)


def resolve_model(name_or_path: str | Path | None = None, *, config: Config | None = None) -> Path:
    """The folder that a name, a path or ``ASR_MODEL_NAME`` (None) stands for."""
    config = config or Config.from_env()
    name = str(name_or_path) if name_or_path is not None else config.model.name
    if name == "default":
        name = DEFAULT_MODEL
    from asrkit.models.hf import is_hf_folder
    from asrkit.models.kerashub import is_keras_hub_folder
    from asrkit.models.whisper.checkpoint import is_whisper_folder

    roots = model_roots(config)
    for folder in (*(root / name for root in roots), Path(name).expanduser()):
        if _has_card(folder) or is_whisper_folder(folder) or is_hf_folder(folder) or is_keras_hub_folder(folder):
            return folder
    listing = list_models(config=config)
    known = ", ".join(e.name for e in listing.entries) or f"none (nothing in {', '.join(map(str, roots))})"
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
    name = str(name_or_path) if name_or_path is not None else config.model.name
    from asrkit.models.hf import is_hf_folder, is_hf_name, load_hf_model
    from asrkit.models.kerashub import is_keras_hub_folder, is_keras_hub_name, load_keras_hub_model
    from asrkit.models.whisper.checkpoint import is_whisper_folder

    # Whisper checkpoints (CTranslate2 or Hugging Face folders) run on our own Keras network
    if is_whisper_folder(Path(name).expanduser()):
        from asrkit.models.whisper.model import WhisperModel

        return WhisperModel.load(
            Path(name).expanduser(), batch_size=config.model.batch_size, device=config.model.device
        )
    # hub models have no card.json: their own config says what they are
    if is_keras_hub_name(name) or is_keras_hub_folder(Path(name).expanduser()):
        return load_keras_hub_model(name, batch_size=config.model.batch_size, device=config.model.device)
    if is_hf_name(name) or is_hf_folder(Path(name).expanduser()):
        return load_hf_model(name, batch_size=config.model.batch_size, device=config.model.device)
    folder = resolve_model(name_or_path, config=config)
    backend = ModelCard.load(folder).config.get("backend")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise UnknownModelError(f"{folder / CARD_FILE} names backend {backend!r}; asrkit has {', '.join(BACKENDS)}")
    module, cls = BACKENDS[backend].split(":")
    model_class = getattr(importlib.import_module(module), cls)
    return model_class.load(folder, batch_size=config.model.batch_size, device=config.model.device)

"""Run-time settings, in one place: :class:`Config`, read from the ``ASR_*`` environment variables by
:meth:`Config.from_env` when it is called (never at import), and passed on from there.

Usage
-----
::

    config = Config.from_env()
    config.model.name, config.paths.user_models_dir
    # ('default', PosixPath('/home/me/.local/share/asrkit/models'))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asrkit.audio import DEFAULT_LIMITS, AudioLimits
from asrkit.errors import AsrkitError

DEVICES = ("auto", "cpu", "gpu")
# What "default" means: the shipped model with the lowest WER on fixtures_dev (strangers at the
# microphone), as recorded in the models' cards.
DEFAULT_MODEL = "whisper-tiny.en"


class ConfigError(AsrkitError, ValueError):
    """An environment variable holds a value asrkit cannot use."""


def default_user_dir() -> Path:
    """Where the user's own data (adaptation sessions, models made from them) goes unless ``ASR_USER_DIR``
    says otherwise."""
    return Path.home() / ".local" / "share" / "asrkit"


def default_cache_dir() -> Path:
    """Where evaluation keeps hypotheses between runs unless ``ASR_CACHE_DIR`` says otherwise."""
    return Path.home() / ".cache" / "asrkit" / "hypotheses"


@dataclass(frozen=True)
class ModelSettings:
    """Which model runs when none is named, and how."""

    # ASR_MODEL_NAME: registry name or model folder used when none is given ("default" = DEFAULT_MODEL)
    name: str = "default"
    # ASR_DEVICE: "cpu", "gpu" or "auto"; "gpu" without a usable GPU falls back to the CPU with a warning
    device: str = "auto"
    # ASR_BATCH_SIZE: utterances run through the model together in batch transcription and evaluation
    batch_size: int = 8

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigError("ASR_MODEL_NAME is empty: give a registry name or a model folder")
        if self.device not in DEVICES:
            raise ConfigError(f"ASR_DEVICE={self.device!r} is not one of {', '.join(DEVICES)}")
        if self.batch_size < 1:
            raise ConfigError(f"ASR_BATCH_SIZE={self.batch_size} must be at least 1")


@dataclass(frozen=True)
class AdaptSettings:
    """The Adapt tab's starting point (``asrkit.adapt.AdaptOptions`` checks the values and adds the rest)."""

    # ASR_ADAPT_BASE: registry name of the model to adapt; it must be a Keras Whisper model
    base_model: str = DEFAULT_MODEL
    # ASR_ADAPT_PROMPT_SET: "digits" or "sentences"
    prompt_set: str = "digits"
    # ASR_ADAPT_PROMPTS: prompts in a new session
    prompts: int = 20
    # ASR_ADAPT_STEPS: optimiser steps of fine-tuning, all taken (the held-out takes only measure): about 7
    # passes over 16 takes and their copies, ~40 s on two CPU cores; 30 to 100 did alike on an FSDD speaker
    steps: int = 40
    # ASR_ADAPT_TRAINABLE: what learns: "lora" (low-rank adapters on the decoder's dense layers, saved as a
    # 1 MB file) or "decoder" (all its blocks, 38 MB); see asrkit.models.whisper.finetune.TRAINABLE
    trainable: str = "lora"


@dataclass(frozen=True)
class Paths:
    """Folders asrkit reads models from and writes the user's data to (the shipped models are inside the
    package, see ``asrkit.models.SHIPPED_DIR``)."""

    # ASR_MODELS_DIR: a further folder of registered models, searched before the shipped ones; None: none
    models_dir: Path | None = None
    # ASR_USER_DIR: the user's adaptation sessions (adapt/<name>/); default_user_dir() unless set
    user_dir: Path = field(default_factory=default_user_dir)
    # ASR_USER_MODELS_DIR: models made on this machine (adapted, fine-tuned), searched after the shipped ones
    # so they never shadow one; None becomes user_dir / "models"
    user_models_dir: Path | None = None
    # ASR_CACHE_DIR: hypotheses kept between evaluations; default_cache_dir() unless set
    cache_dir: Path = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        if self.user_models_dir is None:
            object.__setattr__(self, "user_models_dir", self.user_dir / "models")


@dataclass(frozen=True)
class Config:
    """Settings shared by the library, the CLI, the notebooks and the app."""

    # the model used when none is named (ASR_MODEL_NAME, ASR_DEVICE, ASR_BATCH_SIZE)
    model: ModelSettings = field(default_factory=ModelSettings)
    # the largest audio accepted: ASR_MAX_BYTES (bytes, checked before reading) and ASR_MAX_LENGTH (seconds;
    # longer input is refused, not truncated)
    limits: AudioLimits = DEFAULT_LIMITS
    # the Adapt tab's defaults (ASR_ADAPT_*)
    adapt: AdaptSettings = field(default_factory=AdaptSettings)
    # folders of models, of the user's data and of caches (ASR_*_DIR)
    paths: Paths = field(default_factory=Paths)

    def __post_init__(self) -> None:
        if not self.limits.max_duration_s > 0:
            raise ConfigError(f"ASR_MAX_LENGTH={self.limits.max_duration_s} must be a positive number of seconds")
        if self.limits.max_bytes < 1:
            raise ConfigError(f"ASR_MAX_BYTES={self.limits.max_bytes} must be a positive number of bytes")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the ``ASR_*`` variables (:data:`VARIABLES`) now; unset ones keep their defaults.

        Examples
        --------
        >>> Config.from_env({"ASR_BATCH_SIZE": "16"}).model.batch_size
        16
        """
        groups: dict[str, dict[str, object]] = {group: {} for group in _GROUPS}
        for (group, name), value in env_values(
            [((group, name), var, kind) for var, (group, name, kind) in VARIABLES.items()], environ
        ).items():
            groups[group][name] = value
        if "device" in groups["model"]:
            groups["model"]["device"] = str(groups["model"]["device"]).lower()
        return cls(**{group: kind(**groups[group]) for group, kind in _GROUPS.items()})


# Config's parts, by field name
_GROUPS: dict[str, type] = {"model": ModelSettings, "limits": AudioLimits, "adapt": AdaptSettings, "paths": Paths}
# Every variable asrkit reads, to the Config part and field it sets and the type its text is read as.
VARIABLES: dict[str, tuple[str, str, type]] = {
    "ASR_MODEL_NAME": ("model", "name", str),
    "ASR_DEVICE": ("model", "device", str),
    "ASR_BATCH_SIZE": ("model", "batch_size", int),
    "ASR_MAX_LENGTH": ("limits", "max_duration_s", float),
    "ASR_MAX_BYTES": ("limits", "max_bytes", int),
    "ASR_ADAPT_BASE": ("adapt", "base_model", str),
    "ASR_ADAPT_PROMPT_SET": ("adapt", "prompt_set", str),
    "ASR_ADAPT_PROMPTS": ("adapt", "prompts", int),
    "ASR_ADAPT_STEPS": ("adapt", "steps", int),
    "ASR_ADAPT_TRAINABLE": ("adapt", "trainable", str),
    "ASR_MODELS_DIR": ("paths", "models_dir", Path),
    "ASR_USER_DIR": ("paths", "user_dir", Path),
    "ASR_USER_MODELS_DIR": ("paths", "user_models_dir", Path),
    "ASR_CACHE_DIR": ("paths", "cache_dir", Path),
}


def env_values(fields: Sequence[tuple[object, str, type]], environ: Mapping[str, str] | None = None) -> dict:
    """The fields whose variables are set to something, stripped and converted: ``fields`` holds
    (field, VARIABLE, type). A variable set to blanks gives "" (for the caller to refuse), one set to
    nothing is unset.

    Examples
    --------
    >>> env_values([("steps", "STEPS", int), ("name", "NAME", str)], {"STEPS": " 30 ", "NAME": ""})
    {'steps': 30}
    """
    env = os.environ if environ is None else environ
    values: dict = {}
    for key, var, kind in fields:
        raw = env.get(var)
        if raw:
            try:
                values[key] = kind(raw.strip())
            except ValueError:
                raise ConfigError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
    return values

"""Run-time settings read from the environment, in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from asrkit.audio import DEFAULT_LIMITS, AudioLimits
from asrkit.errors import AsrkitError

DEVICES = ("auto", "cpu", "gpu")


class ConfigError(AsrkitError, ValueError):
    """An environment variable holds a value asrkit cannot use."""


@dataclass(frozen=True)
class Config:
    """Settings shared by the CLI, the notebooks and the app."""

    # ASR_MODEL_NAME: registry name or model folder used when none is given ("default" = the shipped one)
    model_name: str = "default"
    # ASR_DEVICE: "cpu", "gpu" or "auto"; "gpu" without a usable GPU falls back to the CPU with a warning
    device: str = "auto"
    # ASR_BATCH_SIZE: utterances run through the model together in batch transcription and evaluation
    batch_size: int = 8
    # ASR_MAX_LENGTH: longest audio accepted, in seconds; longer input is refused, not truncated
    max_length_s: float = DEFAULT_LIMITS.max_duration_s
    # ASR_MAX_BYTES: largest audio file accepted, in bytes, checked before it is read
    max_bytes: int = DEFAULT_LIMITS.max_bytes

    def __post_init__(self) -> None:
        if not self.model_name.strip():
            raise ConfigError("ASR_MODEL_NAME is empty: give a registry name or a model folder")
        if self.device not in DEVICES:
            raise ConfigError(f"ASR_DEVICE={self.device!r} is not one of {', '.join(DEVICES)}")
        if self.batch_size < 1:
            raise ConfigError(f"ASR_BATCH_SIZE={self.batch_size} must be at least 1")
        if not self.max_length_s > 0:
            raise ConfigError(f"ASR_MAX_LENGTH={self.max_length_s} must be a positive number of seconds")
        if self.max_bytes < 1:
            raise ConfigError(f"ASR_MAX_BYTES={self.max_bytes} must be a positive number of bytes")

    @property
    def audio_limits(self) -> AudioLimits:
        return AudioLimits(max_bytes=self.max_bytes, max_duration_s=self.max_length_s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the ``ASR_*`` variables; unset ones keep their defaults.

        Examples
        --------
        >>> Config.from_env({"ASR_BATCH_SIZE": "16"}).batch_size
        16
        """
        values = env_values(
            (
                ("model_name", "ASR_MODEL_NAME", str),
                ("device", "ASR_DEVICE", str),
                ("batch_size", "ASR_BATCH_SIZE", int),
                ("max_length_s", "ASR_MAX_LENGTH", float),
                ("max_bytes", "ASR_MAX_BYTES", int),
            ),
            environ,
        )
        if "device" in values:
            values["device"] = str(values["device"]).lower()
        return cls(**values)


def env_values(fields: Sequence[tuple[str, str, type]], environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The fields whose variables are set to something, stripped and converted: ``fields`` holds
    (field, VARIABLE, type). A variable set to blanks gives "" (for the caller to refuse), one set to
    nothing is unset.

    Examples
    --------
    >>> env_values([("steps", "STEPS", int), ("name", "NAME", str)], {"STEPS": " 30 ", "NAME": ""})
    {'steps': 30}
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field, var, kind in fields:
        raw = env.get(var)
        if raw:
            try:
                values[field] = kind(raw.strip())
            except ValueError:
                raise ConfigError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
    return values

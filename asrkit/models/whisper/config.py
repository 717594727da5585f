"""The shape of a Whisper network, read from its checkpoint, and the special tokens it decodes with."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class WhisperConfig:
    """Sizes of a Whisper encoder-decoder; every released size (tiny to large-v3) is one of these.

    Examples
    --------
    >>> WhisperConfig(n_vocab=51864).n_text_state // WhisperConfig(n_vocab=51864).n_text_head
    64
    """

    # mel bands the encoder reads (80; 128 for large-v3)
    n_mels: int = 80
    # encoder positions: 30 s of 10 ms frames halved by the stride-2 convolution
    n_audio_ctx: int = 1500
    # encoder width
    n_audio_state: int = 384
    # encoder attention heads
    n_audio_head: int = 6
    # encoder blocks
    n_audio_layer: int = 4
    # tokens in the vocabulary (51864 English-only, 51865 or 51866 multilingual)
    n_vocab: int = 51865
    # decoder positions: the longest token sequence, prompt included
    n_text_ctx: int = 448
    # decoder width
    n_text_state: int = 384
    # decoder attention heads
    n_text_head: int = 6
    # decoder blocks
    n_text_layer: int = 4

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"WhisperConfig.{name} must be a positive integer, got {value!r}")
        for state, head, side in (
            (self.n_audio_state, self.n_audio_head, "audio"),
            (self.n_text_state, self.n_text_head, "text"),
        ):
            if state % head:
                raise ValueError(f"n_{side}_state ({state}) is not divisible by n_{side}_head ({head})")

    @property
    def multilingual(self) -> bool:
        """English-only checkpoints have 51864 tokens; every multilingual one has more."""
        return self.n_vocab >= 51865

    @property
    def n_frames(self) -> int:
        """Mel frames of one window (3000: twice the encoder positions)."""
        return 2 * self.n_audio_ctx

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WhisperConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown WhisperConfig fields: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(frozen=True)
class GenerationConfig:
    """What a checkpoint says about decoding it: tokens to suppress and the heads that align words."""

    # token ids masked at every decoding step
    suppress_ids: tuple[int, ...] = ()
    # token ids masked at the first sampled step only (a leading space, end of text)
    suppress_ids_begin: tuple[int, ...] = ()
    # (decoder layer, head) pairs whose cross-attention follows the audio; word times come from them
    alignment_heads: tuple[tuple[int, int], ...] = ()

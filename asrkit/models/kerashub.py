"""Keras-native pretrained speech models from KerasHub behind the asrkit model contract: Moonshine.

Named ``keras-hub:<preset>`` (e.g. ``keras-hub:moonshine_tiny_en``), found in KaggleHub's cache, or given
as a folder written by ``save_to_preset``. asrkit never downloads at run time: a preset missing from the
cache is an error that says how to fetch it elsewhere. Needs the ``keras-hub`` extra. KerasHub's Whisper
is a backbone without a transcription task; Whisper runs through the Hugging Face backend instead.

Moonshine is an encoder-decoder: it streams by re-decoding the utterance so far
(:class:`asrkit.models.seq2seq.RedecodingRecognizer`).

Usage
-----
::

    model = load_model("keras-hub:moonshine_tiny_en")
    model.transcribe(load_audio("clip.flac")).text
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL for the TensorFlow imported below)

import numpy as np

from asrkit.audio import SAMPLE_RATE
from asrkit.contracts import ModelCard, ModelUnavailableError
from asrkit.models.seq2seq import Seq2SeqModel

PREFIX = "keras-hub:"
BACKEND = "keras-hub"
# Moonshine's authors cap generation at this many tokens per second of audio: real speech stays under
# it, and a decoder that loops on a token stops there instead of at the sequence limit
MAX_TOKENS_PER_S = 6.5
# Moonshine was trained on clips of up to this long
MOONSHINE_WINDOW_S = 64.0


def is_keras_hub_name(name: str) -> bool:
    return name.startswith(PREFIX)


def is_keras_hub_folder(folder: Path) -> bool:
    """A folder written by ``save_to_preset``: its metadata.json names the KerasHub version."""
    try:
        return "keras_hub_version" in json.loads((folder / "metadata.json").read_text())
    except (OSError, ValueError):
        return False


def _cached_preset(preset: str, name: str) -> Path:
    """The folder of a built-in preset in KaggleHub's cache, never downloading it."""
    from kagglehub.cache import get_cached_path
    from kagglehub.handle import parse_model_handle
    from keras_hub.models import MoonshineAudioToText

    if preset not in MoonshineAudioToText.presets:
        raise ModelUnavailableError(
            f"{name}: not a KerasHub speech preset; asrkit knows {', '.join(sorted(MoonshineAudioToText.presets))}, "
            f"or give a folder written by save_to_preset"
        )
    handle = MoonshineAudioToText.presets[preset]["kaggle_handle"].removeprefix("kaggle://")
    folder = Path(get_cached_path(parse_model_handle(handle)))
    if not is_keras_hub_folder(folder):
        raise ModelUnavailableError(
            f"{name}: not in KaggleHub's cache ({os.environ.get('KAGGLEHUB_CACHE', '~/.cache/kagglehub')}) and "
            f"asrkit does not download at run time. On a machine with internet run "
            f"python -c \"import kagglehub; print(kagglehub.model_download('{handle}'))\" and copy the "
            f"cache here (or set KAGGLEHUB_CACHE), or pass the folder it printed as the model name."
        )
    return folder


def load_keras_hub_model(name_or_folder: str, *, batch_size: int = 8, device: str = "auto") -> MoonshineModel:
    """A Moonshine model from KaggleHub's cache (``keras-hub:<preset>``) or a preset folder."""
    from asrkit.models.keras_ctc import select_device

    select_device(device)
    if is_keras_hub_name(name_or_folder):
        name = name_or_folder
        folder = _cached_preset(name_or_folder[len(PREFIX) :], name)
    else:
        folder = Path(name_or_folder).expanduser()
        name = f"{PREFIX}{folder.name}"
    task = (
        json.loads((folder / "task.json").read_text()).get("class_name") if (folder / "task.json").is_file() else None
    )
    if task != "MoonshineAudioToText":
        raise ModelUnavailableError(f"{name}: KerasHub task {task!r}; asrkit runs MoonshineAudioToText")
    return MoonshineModel.load(folder, name, batch_size=batch_size)


class MoonshineModel(Seq2SeqModel):
    """KerasHub's ``MoonshineAudioToText`` (encoder-decoder; no word times, see :mod:`asrkit.models.seq2seq`)."""

    window_s = MOONSHINE_WINDOW_S

    def __init__(self, network, card: ModelCard, *, batch_size: int = 8) -> None:
        super().__init__(card, batch_size=batch_size)
        self.network = network

    @classmethod
    def load(cls, folder: Path, name: str, *, batch_size: int = 8) -> MoonshineModel:
        from keras_hub.models import MoonshineAudioToText

        # an explicit dtype: KerasHub 0.32 saves Moonshine's as a bare string that its own loader rejects
        network = MoonshineAudioToText.from_preset(str(folder), dtype="float32")
        # KerasHub samples top-k by default: a transcript must be the most likely text, the same every time
        network.compile(sampler="greedy")
        params = network.backbone.count_params() / 1e6
        card = ModelCard(
            name=name,
            description=f"Moonshine encoder-decoder (KerasHub), {params:.1f}M parameters",
            trained=True,
            training_data="see the preset's model card on Kaggle",
            config={"backend": BACKEND, "task": "MoonshineAudioToText"},
        )
        return cls(network, card, batch_size=batch_size)

    def text(self, audios: Sequence[np.ndarray]) -> list[str]:
        longest = max(len(a) for a in audios)
        # zeros are Moonshine's padding value: a clip shorter than the longest is padded with them
        batch = np.zeros((len(audios), max(longest, 1), 1), np.float32)
        for row, audio in zip(batch, audios):
            row[: len(audio), 0] = audio
        max_length = max(8, math.ceil(longest / SAMPLE_RATE * MAX_TOKENS_PER_S))
        texts = self.network.generate({"audio": batch}, max_length=max_length)
        return [" ".join(t.split()) for t in ([texts] if isinstance(texts, str) else texts)]

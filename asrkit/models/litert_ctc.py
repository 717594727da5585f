"""Our CTC models on LiteRT (TensorFlow Lite): the same network as a flatbuffer, run without TensorFlow.

A LiteRT model folder holds ``model.tflite`` and a ``card.json`` whose config names the ``litert-ctc``
backend. The flatbuffer has three signatures: ``logits`` (a whole utterance) and ``step`` and ``head``
(the pieces :class:`~asrkit.models.keras_ctc_stream.StreamingNetwork` runs a stream with), so offline
and streamed transcripts agree as they do for the Keras model. :func:`export` makes such a folder from
a Keras model; only exporting needs TensorFlow, and loading imports neither TensorFlow nor Keras.

Usage
-----
::

    export(load_model("asrkit-ctc-en"), "asrkit/models/shipped/asrkit-ctc-en-litert")
    load_model("asrkit-ctc-en-litert").transcribe(audio).text
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL for the TensorFlow imported below)

import numpy as np

from asrkit.contracts import CARD_FILE, CardError, ModelCard, ModelFileError, regular_file
from asrkit.lm import NGramLM
from asrkit.models.base import card_file, check_setting_types
from asrkit.models.ctc import CTCModel, CTCModelConfig, create_stream
from asrkit.streaming import ChunkedStream

if TYPE_CHECKING:
    from asrkit.models.keras_ctc import KerasCTCModel

LITERT_FILE = "model.tflite"
BACKEND = "litert-ctc"
# Interpreter threads per model and per stream: one each, so concurrent streams share the cores
# instead of contending inside every call.
THREADS = 1
# A flatbuffer cannot address more than 2 GiB; a larger model.tflite is not one, and is not read into memory.
MAX_FLATBUFFER_BYTES = 2**31


def read_ctc_folder(folder: Path) -> tuple[ModelCard, NGramLM | None]:
    """A CTC model folder's card, its config checked, and the language model it names (confined to the
    folder, see :func:`asrkit.models.base.card_file`), for every backend of :data:`asrkit.models.ctc.BACKENDS`.

    Raises
    ------
    CardError
        The card is unreadable or its config is not a CTC model's.
    ModelFileError
        The language model it names is outside the folder, missing or not a regular file.
    LMError
        The language model is not a readable ARPA file.
    """
    card = ModelCard.load(folder)
    source = str(folder / CARD_FILE)
    try:
        config = CTCModelConfig.from_dict(card.config)
    # unknown fields (ValueError), or a section that is not an object (TypeError from its ** unpacking)
    except (ValueError, TypeError) as err:
        raise CardError(f"{source}: its config is not a CTC model's: {err}") from None
    check_setting_types(config, source=source)
    if config.decoder.lm is None:
        return card, None
    return card, NGramLM.load(card_file(folder, config.decoder.lm, what="the language model"))


def _input_names(prefix: str, n: int) -> list[str]:
    """The names a list argument's items get in a SavedModel signature: prefix, prefix_1, ..."""
    return [prefix] + [f"{prefix}_{i}" for i in range(1, n)]


def export(model: KerasCTCModel, folder: str | Path, *, name: str | None = None) -> Path:
    """Write ``model`` as a LiteRT model folder (named ``<model>-litert`` unless ``name`` says)."""
    import keras
    import tensorflow as tf

    from asrkit.models.keras_ctc_stream import streaming_network

    folder = Path(folder)
    stepper = streaming_network(model)
    contexts, states = stepper.initial_state()
    n_features, units = model.config.features.num_features, model.config.rnn_units

    def spec(*shape):
        return keras.InputSpec(shape=shape, dtype="float32")

    def step(features, contexts, states):
        out, next_contexts, next_states = stepper.step(features, contexts, states)
        # signature outputs must be flat: one name per tensor
        return {
            "out": out,
            **{f"context{i}": c for i, c in enumerate(next_contexts)},
            **{f"state{i}": s for i, s in enumerate(next_states)},
        }

    archive = keras.export.ExportArchive()
    archive.track(model.network)
    archive.add_endpoint(
        "logits",
        lambda features: {"logits": model.network(features, training=False)},
        input_signature=[spec(1, None, n_features)],
    )
    archive.add_endpoint(
        "step",
        step,
        input_signature=[
            spec(1, None, n_features),
            [spec(*c.shape) for c in contexts],
            [spec(*s.shape) for s in states],
        ],
    )
    archive.add_endpoint("head", lambda x: {"logits": stepper.head(x)}, input_signature=[spec(1, None, units)])
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(
            saved, signature_keys=["logits", "step", "head"]
        ).convert()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LITERT_FILE).write_bytes(flatbuffer)
    if model.lm is not None:
        model.lm.save(folder / model.config.decoder.lm)
    card = dataclasses.replace(
        model.card,
        name=name or f"{model.name}-litert",
        description=f"{model.card.description}; exported to LiteRT from {model.name}",
        metrics={},  # measured anew: the runtime differs, even if the logits agree
        config=model.config.to_dict(backend=BACKEND),
    )
    card.save(folder)
    return folder


def _interpreter(flatbuffer: bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=flatbuffer, num_threads=THREADS)


class LiteRTCTCModel(CTCModel):
    """A character CTC model run by the LiteRT interpreter, behind the ASRModel contract."""

    def __init__(self, flatbuffer: bytes, card: ModelCard, *, lm: NGramLM | None = None, batch_size: int = 8) -> None:
        super().__init__(card, lm=lm, batch_size=batch_size, device="cpu")
        self.flatbuffer = flatbuffer
        self._logits = _interpreter(flatbuffer).get_signature_runner("logits")
        # an interpreter runs one call at a time; streams get interpreters of their own
        self._lock = threading.Lock()

    @classmethod
    def load(cls, folder: str | Path, *, batch_size: int = 8, device: str = "auto") -> LiteRTCTCModel:
        """Load a LiteRT model folder; LiteRT runs on the CPU whatever ``device`` asks."""
        folder = Path(folder)
        card, lm = read_ctc_folder(folder)
        path = regular_file(folder / LITERT_FILE, what="the LiteRT network", max_bytes=MAX_FLATBUFFER_BYTES)
        try:
            return cls(path.read_bytes(), card, lm=lm, batch_size=batch_size)
        # the interpreter's word for a corrupt flatbuffer, or one without the "logits" signature
        except ValueError as err:
            raise ModelFileError(f"{path} is not a LiteRT CTC network (truncated or corrupt?): {err}") from None

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / LITERT_FILE).write_bytes(self.flatbuffer)
        if self.lm is not None:
            self.lm.save(folder / self.config.decoder.lm)
        self.card.save(folder)
        return folder

    def logits(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The network's (n_out, vocab) logits for each utterance, one interpreter call each."""
        out = []
        with self._lock:
            for f in features:
                frames = f if len(f) else np.zeros((1, self.config.features.num_features), np.float32)
                logits = self._logits(features=np.asarray(frames, np.float32)[np.newaxis])["logits"][0]
                out.append(logits[: self.config.output_length(len(f))])
        return out

    def create_stream(self, **options) -> ChunkedStream:
        """A live stream on an interpreter of its own; ``options`` as in :func:`asrkit.models.ctc.create_stream`."""
        return create_stream(self, LiteRTStepNetwork(self), **options)


class LiteRTStepNetwork:
    """The ``step`` and ``head`` signatures as a :class:`~asrkit.models.ctc.StepNetwork`."""

    def __init__(self, model: LiteRTCTCModel) -> None:
        interpreter = _interpreter(model.flatbuffer)
        self._step = interpreter.get_signature_runner("step")
        self._head = interpreter.get_signature_runner("head")
        self.stride = model.config.subsampling
        self.lookahead = model.config.lookahead_frames
        inputs = self._step.get_input_details()
        self._contexts = _input_names("contexts", model.config.conv_layers)
        self._states = _input_names("states", model.config.rnn_layers)
        # the state shapes are fixed in the flatbuffer; the time axes of the others vary
        self._shapes = {name: tuple(inputs[name]["shape"]) for name in (*self._contexts, *self._states)}

    def initial_state(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return (
            [np.zeros(self._shapes[n], np.float32) for n in self._contexts],
            [np.zeros(self._shapes[n], np.float32) for n in self._states],
        )

    def step(self, features, contexts, states):
        out = self._step(
            features=np.asarray(features, np.float32),
            **dict(zip(self._contexts, contexts)),
            **dict(zip(self._states, states)),
        )
        return (
            out["out"],
            [out[f"context{i}"] for i in range(len(contexts))],
            [out[f"state{i}"] for i in range(len(states))],
        )

    def head(self, x):
        return self._head(x=np.asarray(x, np.float32))["logits"]

"""Our own TensorFlow/Keras character CTC models: network, save/load and inference.

A model folder holds ``model.keras`` (the network, loaded in Keras safe mode) and ``card.json``
(a :class:`~asrkit.contracts.ModelCard` whose ``config`` is a :class:`CTCModelConfig`).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)

import keras
import numpy as np

from asrkit.contracts import ModelCard, ModelFileError, regular_file
from asrkit.lm import NGramLM
from asrkit.models.ctc import CTCModel, CTCModelConfig
from asrkit.models.litert_ctc import read_ctc_folder
from asrkit.text import CharTokenizer

WEIGHTS_FILE = "model.keras"


@keras.saving.register_keras_serializable(package="asrkit")
class ValidFrames(keras.layers.Layer):
    """1.0 for output frames inside the utterance, 0.0 for batch padding, shape (batch, n_out, 1).

    Padding is recognised as all-zero feature frames (a real log-mel frame is never exactly zero), and
    output frame t covers input frame ``stride * t`` onwards.
    """

    def __init__(self, stride: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, features):
        valid = keras.ops.any(keras.ops.not_equal(features, 0.0), axis=-1)
        return keras.ops.expand_dims(keras.ops.cast(valid[:, :: self.stride], self.compute_dtype), -1)

    def get_config(self) -> dict:
        return {**super().get_config(), "stride": self.stride}


def build_network(config: CTCModelConfig, *, feature_mean: np.ndarray, feature_std: np.ndarray) -> keras.Model:
    """The CTC network: (batch, n_frames, n_features) features to (batch, n_out, vocab) logits.

    ``feature_mean`` and ``feature_std`` (shape (n_features,)) are fixed in a Normalization layer, so
    the saved model normalises exactly as it was trained and a stream needs no utterance statistics.
    """
    n_features = config.features.num_features
    inputs = keras.Input(shape=(None, n_features), name="features")
    x = keras.layers.Normalization(axis=-1, mean=feature_mean, variance=np.square(feature_std), name="normalize")(
        inputs
    )
    for i in range(config.conv_layers):
        stride = 2 if i < config.subsampling_layers else 1
        x = keras.layers.Conv1D(
            config.conv_channels, 3, strides=stride, padding="causal", activation="relu", name=f"conv{i}"
        )(x)
    for i in range(config.rnn_layers):
        x = keras.layers.GRU(config.rnn_units, return_sequences=True, name=f"gru{i}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout{i}")(x)
    if config.lookahead_frames:
        # padding frames must not leak into the last real frames' look-ahead, or a batch would
        # decode differently from the same utterances one by one
        x = keras.layers.Multiply(name="mask_padding")([x, ValidFrames(config.subsampling, name="valid")(inputs)])
        future = keras.layers.ZeroPadding1D((0, config.lookahead_frames), name="future")(x)
        # residual and zero-initialised: it starts as the identity, so gradients reach the GRUs
        # undamped while it learns how much of the future to mix in (a bare depthwise filter with
        # random weights kept training on the CTC plateau)
        ahead = keras.layers.DepthwiseConv1D(
            config.lookahead_frames + 1, depthwise_initializer="zeros", name="lookahead"
        )(future)
        x = keras.layers.Add(name="with_lookahead")([x, ahead])
    vocab_size = CharTokenizer(config.alphabet).vocab_size
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(inputs, logits, name="ctc")


# Backends that compile one program per input shape (JAX/XLA) see time padded to a multiple of this
# many frames, so a few programs serve every utterance length.
SHAPE_MULTIPLE = 256


def _compiled_inference(network: keras.Model, n_features: int):
    """``features (batch, n_frames, n_features) -> logits`` as a NumPy function, compiled once."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # one graph for every shape: TensorFlow would otherwise retrace per utterance length
        infer = tf.function(
            lambda x: network(x, training=False),
            input_signature=[tf.TensorSpec([None, None, n_features], tf.float32)],
        )
        return lambda batch: infer(tf.constant(batch)).numpy()

    def padded(batch: np.ndarray) -> np.ndarray:
        # causal layers: the extra frames change nothing before them, and callers keep only those
        longer = np.pad(batch, ((0, 0), (0, -batch.shape[1] % SHAPE_MULTIPLE), (0, 0)))
        return keras.ops.convert_to_numpy(network.predict_on_batch(longer))

    return padded


def select_device(requested: str) -> str:
    """Make TensorFlow use "cpu" or "gpu" ("auto": a GPU if there is one); return what is used."""
    if keras.backend.backend() != "tensorflow":
        # JAX and torch pick their device when they start; nothing to switch here
        return requested if requested != "auto" else "default"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if requested == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            # TensorFlow fixes its devices at first use; say so instead of pretending
            warnings.warn("ASR_DEVICE=cpu came after TensorFlow started on the GPU; it stays there", stacklevel=3)
            return "gpu"
    if requested in ("gpu", "auto") and gpus:
        return "gpu"
    if requested == "gpu":
        warnings.warn("ASR_DEVICE=gpu but TensorFlow finds no GPU here: running on the CPU", stacklevel=3)
    return "cpu"


class KerasCTCModel(CTCModel):
    """A Keras character CTC model behind the :class:`~asrkit.contracts.ASRModel` contract.

    Usage
    -----
    ::

        model = KerasCTCModel.load("runs/ctc/best")
        model.transcribe(load_audio("clip.flac")).text
    """

    def __init__(
        self,
        network: keras.Model,
        card: ModelCard,
        *,
        lm: NGramLM | None = None,
        batch_size: int = 8,
        device: str = "cpu",
    ) -> None:
        super().__init__(card, lm=lm, batch_size=batch_size, device=device)
        self.network = network
        self._infer = _compiled_inference(network, self.config.features.num_features)

    @classmethod
    def load(cls, folder: str | Path, *, batch_size: int = 8, device: str = "auto") -> KerasCTCModel:
        """Load a model folder; the network is deserialised in Keras safe mode (no code runs).

        Raises
        ------
        ModelFileError
            ``model.keras`` is missing, not a Keras archive (truncated), or refused by safe mode; or the
            card's language model is (see :func:`asrkit.models.litert_ctc.read_ctc_folder`, which also
            says what a bad card raises).
        """
        folder = Path(folder)
        card, lm = read_ctc_folder(folder)
        path = regular_file(folder / WEIGHTS_FILE, what="the Keras network")
        # Keras calls every archive it cannot open "File not found"; say what is wrong instead
        if not zipfile.is_zipfile(path):
            raise ModelFileError(f"{path} is not a .keras archive: it is truncated or corrupt")
        used = select_device(device)
        try:
            network = keras.saving.load_model(path, compile=False, safe_mode=True)
        # what Keras raises for an archive it refuses (safe mode: code in the file) or cannot rebuild
        except (ValueError, TypeError, KeyError, zipfile.BadZipFile) as err:
            raise ModelFileError(f"{path} cannot be loaded: {err}") from None
        return cls(network, card, lm=lm, batch_size=batch_size, device=used)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        network = self.network
        if getattr(network, "optimizer", None) is not None:
            # a network being trained: the model folder holds the network, not the optimiser's state
            network = keras.Model.from_config(self.network.get_config())
            network.set_weights(self.network.get_weights())
        network.save(folder / WEIGHTS_FILE)
        if self.lm is not None:
            self.lm.save(folder / self.config.decoder.lm)
        self.card.save(folder)
        return folder

    def logits(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the network over feature matrices padded together; each result is (n_out, vocab)."""
        lengths = [len(f) for f in features]
        batch = np.zeros(
            (len(features), max(max(lengths, default=0), 1), self.config.features.num_features), np.float32
        )
        for row, f in zip(batch, features):
            row[: len(f)] = f
        # causal layers: right padding never changes the frames before it
        out = self._infer(batch)
        return [o[: self.config.output_length(n)] for o, n in zip(out, lengths)]

    def create_stream(self, **options):
        """A live stream, chunk by chunk with carried state; ``options`` as in
        :func:`asrkit.models.keras_ctc_stream.create_stream`."""
        from asrkit.models.keras_ctc_stream import create_stream

        return create_stream(self, **options)

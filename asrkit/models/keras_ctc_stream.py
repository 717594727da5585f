"""Chunk-by-chunk inference of a Keras CTC model, equal to running it over the whole utterance.

The network (:func:`asrkit.models.keras_ctc.build_network`) is causal up to its look-ahead: causal
convolutions, unidirectional GRUs, then a depthwise convolution over ``lookahead_frames`` future
output frames. So it can run on consecutive pieces of an utterance if each piece carries what the
previous one left behind:

* each convolution: its last ``kernel_size - 1`` input frames, the left context that its causal
  padding fills with zeros at the start of the utterance;
* each GRU: its state (a GRU's output at a frame is its state there);
* the look-ahead: GRU outputs whose future has not arrived yet, at most ``lookahead_frames`` of them,
  which ``finish()`` completes with the zeros the offline network pads with.

Feature frames go in whole multiples of the total convolution stride, so each piece starts at the
offline run's frame phase. The same layer objects and weights run in both, so the logits agree.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)

import keras
import numpy as np

from asrkit.models import ctc
from asrkit.streaming import ChunkedStream

if TYPE_CHECKING:
    from asrkit.models.keras_ctc import KerasCTCModel

# One traced streaming network per loaded model, shared by all its streams.
_NETWORKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class StreamingNetwork:
    """A CTC network's layers rearranged to run piece by piece with carried state.

    Parameters
    ----------
    model : KerasCTCModel
        Its ``network`` must come from :func:`~asrkit.models.keras_ctc.build_network`: the layers are
        found by the names given there.
    """

    def __init__(self, model: KerasCTCModel) -> None:
        config = model.config
        network = model.network
        self.config = config
        self.lookahead = config.lookahead_frames
        self._normalize = network.get_layer("normalize")
        self._convs = [network.get_layer(f"conv{i}") for i in range(config.conv_layers)]
        self._grus = [network.get_layer(f"gru{i}") for i in range(config.rnn_layers)]
        self._ahead = network.get_layer("lookahead") if self.lookahead else None
        self._with_ahead = network.get_layer("with_lookahead") if self.lookahead else None
        self._logits = network.get_layer("logits")
        self.contexts = [(conv.kernel_size[0] - 1) * conv.dilation_rate[0] for conv in self._convs]
        self.strides = [conv.strides[0] for conv in self._convs]
        for width, stride, conv in zip(self.contexts, self.strides, self._convs):
            if width % stride:
                raise ValueError(f"{conv.name}: left context {width} is not a whole number of strides {stride}")
        self.stride = int(np.prod(self.strides))
        n_features = config.features.num_features
        widths = [n_features] + [conv.filters for conv in self._convs[:-1]]
        self._context_shapes = [(1, c, w) for c, w in zip(self.contexts, widths)]
        self._state_shapes = [(1, gru.units) for gru in self._grus]
        self.step = self._step
        self.head = self._head
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            # one graph each for every chunk length, as KerasCTCModel does for whole utterances
            def spec(*shape):
                return tf.TensorSpec(shape, tf.float32)

            self.step = tf.function(
                self._step,
                input_signature=[
                    spec(1, None, n_features),
                    [spec(*shape) for shape in self._context_shapes],
                    [spec(*shape) for shape in self._state_shapes],
                ],
            )
            self.head = tf.function(self._head, input_signature=[spec(1, None, config.rnn_units)])

    def initial_state(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Convolution contexts and GRU states at the start of an utterance: zeros, as offline."""
        return (
            [np.zeros(shape, np.float32) for shape in self._context_shapes],
            [np.zeros(shape, np.float32) for shape in self._state_shapes],
        )

    def _step(self, features, contexts, states):
        """(1, n, n_features) features, n a multiple of ``stride`` except at the end -> GRU outputs
        (1, ceil(n / stride), rnn_units), the next contexts and the next states."""
        x = self._normalize(features)
        next_contexts = []
        for conv, context, width, stride in zip(self._convs, contexts, self.contexts, self.strides):
            x = keras.ops.concatenate([context, x], axis=1)
            next_contexts.append(x[:, -width:])
            # the layer pads causally again; the outputs that padding reaches belong to the context
            x = conv(x)[:, width // stride :]
        next_states = []
        for gru, state in zip(self._grus, states):
            x = gru(x, initial_state=state)
            next_states.append(x[:, -1])
        return x, next_contexts, next_states

    def _head(self, x):
        """(1, m, rnn_units) GRU outputs, m > lookahead -> logits (1, m - lookahead, vocab) for the
        first m - lookahead of them, each with its look-ahead frames."""
        if self.lookahead:
            x = self._with_ahead([x[:, : -self.lookahead], self._ahead(x)])
        return self._logits(x)


def streaming_network(model: KerasCTCModel) -> StreamingNetwork:
    """The model's streaming network, built and traced once however many streams it serves."""
    if model not in _NETWORKS:
        _NETWORKS[model] = StreamingNetwork(model)
    return _NETWORKS[model]


def create_stream(model: KerasCTCModel, **options) -> ChunkedStream:
    """A live stream over ``model``; ``options`` as in :func:`asrkit.models.ctc.create_stream`."""
    return ctc.create_stream(model, streaming_network(model), **options)

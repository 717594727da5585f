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

import keras
import numpy as np

from asrkit.audio import DEFAULT_LIMITS, AudioLimits
from asrkit.decoding import PrefixBeamSearch, words_from_chars
from asrkit.features import StreamingFeatureExtractor
from asrkit.models.base import Span
from asrkit.streaming import ChunkedStream, CommitRule, EndpointRule
from asrkit.text import BLANK_ID

if TYPE_CHECKING:
    from asrkit.models.keras_ctc import KerasCTCModel

# Output frames per network run (20 ms each at one subsampling layer): fewer answer sooner, more
# spend less of each run on TensorFlow's per-call overhead.
STEP_FRAMES = 4

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


class CTCRecognizer:
    """A :class:`~asrkit.streaming.Recognizer` for :class:`KerasCTCModel`: features, network and
    decoding all incremental, so each second of audio costs the same however long the utterance.

    Greedy decoding keeps only the open character run and word; beam search (a model with a language
    model) advances its beams frame by frame. Either way the final words equal ``model.transcribe``'s.
    """

    def __init__(self, model: KerasCTCModel, *, step_frames: int = STEP_FRAMES) -> None:
        if step_frames < 1:
            raise ValueError(f"step_frames must be at least 1, got {step_frames}")
        self.model = model
        self.network = streaming_network(model)
        self.frame_s = model.config.frame_duration_s
        # feature frames per run: whole strides, and enough for the first run to fill the look-ahead
        self.step_features = self.network.stride * max(step_frames, self.network.lookahead + 1)
        self.extractor = StreamingFeatureExtractor(model.config.features)
        self.reset()

    def reset(self) -> None:
        self.extractor.reset()
        self._contexts, self._states = self.network.initial_state()
        self._features = np.zeros((0, self.model.config.features.num_features), np.float32)
        self._pending = np.zeros((0, self.model.config.rnn_units), np.float32)
        self._frames = 0
        if self.model.lm is not None:
            self._search = PrefixBeamSearch(
                tokenizer=self.model.tokenizer, frame_duration_s=self.frame_s, lm=self.model.lm,
                config=self.model.config.decoder,
            )
        # greedy decoding: the open run of one token, the open word's characters, the finished words
        self._run_token = BLANK_ID
        self._run_start = 0
        self._word: list[Span] = []
        self._words: list[Span] = []

    def accept_waveform(self, samples: np.ndarray) -> bool:
        frames = self.extractor.accept_waveform(samples)
        if len(frames):
            self._features = np.concatenate([self._features, frames])
        if len(self._features) < self.step_features:
            return False
        n = len(self._features) - len(self._features) % self.network.stride
        self._run(self._features[:n])
        self._features = self._features[n:]
        return True

    def _run(self, features: np.ndarray, *, last: bool = False) -> None:
        if len(features):
            out, self._contexts, self._states = self.network.step(features[np.newaxis], self._contexts, self._states)
            self._pending = np.concatenate([self._pending, keras.ops.convert_to_numpy(out)[0]])
        if last:
            padding = np.zeros((self.network.lookahead, self._pending.shape[1]), np.float32)
            self._pending = np.concatenate([self._pending, padding])
        if len(self._pending) > self.network.lookahead:
            self._decode(keras.ops.convert_to_numpy(self.network.head(self._pending[np.newaxis]))[0])
            self._pending = self._pending[len(self._pending) - self.network.lookahead :]

    def _decode(self, logits: np.ndarray) -> None:
        """Advance decoding by (m, vocab) logits of the next m output frames."""
        if self.model.lm is not None:
            self._search.advance(logits)
            self._frames += len(logits)
            return
        best = np.argmax(logits, axis=-1)
        for offset in np.flatnonzero(np.diff(best, prepend=self._run_token)):
            self._close_run(self._frames + int(offset))
            self._run_token, self._run_start = int(best[offset]), self._frames + int(offset)
        self._frames += len(logits)

    def _close_run(self, end: int) -> None:
        if self._run_token == BLANK_ID:
            return
        char = Span(self.model.tokenizer.decode([self._run_token]), self._run_start * self.frame_s, end * self.frame_s)
        if char.text != " ":
            self._word.append(char)
        elif self._word:
            self._words.append(_word(self._word))
            self._word = []

    def hypothesis(self) -> tuple[Span, ...]:
        if self.model.lm is not None:
            return words_from_chars(self._search.best()[1])
        word = list(self._word)
        if self._run_token != BLANK_ID:
            char = self.model.tokenizer.decode([self._run_token])
            if char != " ":
                word.append(Span(char, self._run_start * self.frame_s, self._frames * self.frame_s))
        return (*self._words, _word(word)) if word else tuple(self._words)

    def finish(self) -> tuple[Span, ...]:
        self.extractor.finish()
        self._run(self._features, last=True)
        self._features = self._features[:0]
        self._pending = self._pending[:0]
        if self.model.lm is not None:
            return words_from_chars(self._search.best(final=True)[1])
        return self.hypothesis()


def _word(chars: list[Span]) -> Span:
    return Span("".join(c.text for c in chars), chars[0].start, chars[-1].end)


def create_stream(
    model: KerasCTCModel,
    *,
    step_frames: int = STEP_FRAMES,
    endpoint: EndpointRule = EndpointRule(),
    commit: CommitRule = CommitRule(),
    limits: AudioLimits = DEFAULT_LIMITS,
) -> ChunkedStream:
    """A live stream over ``model`` (see :mod:`asrkit.streaming`)."""
    return ChunkedStream(CTCRecognizer(model, step_frames=step_frames), endpoint=endpoint, commit=commit, limits=limits)

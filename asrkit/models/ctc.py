"""Character CTC models, whatever runs their network: the config a model card holds, the shared
transcription and decoding, and chunk-by-chunk recognition for streams.

Nothing here imports a deep-learning framework: the Keras backend (:mod:`asrkit.models.keras_ctc`) and
the LiteRT one (:mod:`asrkit.models.litert_ctc`) supply the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from asrkit.audio import DEFAULT_LIMITS, AudioLimits
from asrkit.contracts import ModelCard, Span, Transcript
from asrkit.decoding import DecoderConfig, PrefixBeamSearch, beam_search, greedy_decode, words_from_chars
from asrkit.features import FeatureConfig, StreamingFeatureExtractor, compute_features
from asrkit.lm import NGramLM
from asrkit.models.base import NoPrompt
from asrkit.streaming import ChunkedStream, CommitRule, EndpointRule
from asrkit.text import BLANK_ID, CharTokenizer

# The backends that run a CTCModelConfig network: card.json's config["backend"] names one.
BACKENDS = ("keras-ctc", "litert-ctc")
# Output frames per network run in a stream (20 ms each at one subsampling layer): fewer answer
# sooner, more spend less of each run on the runtime's per-call overhead.
STEP_FRAMES = 4


@dataclass(frozen=True)
class CTCModelConfig:
    """Everything needed to rebuild the network and read its output."""

    # input features (kind, sizes, frame rate)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    # output characters; index 0 of the output is the CTC blank, then these in order
    alphabet: str = CharTokenizer().alphabet
    # causal convolutions in front
    conv_layers: int = 2
    # how many of them (the first) have stride 2, each halving the frame rate; character CTC needs
    # well over one frame per character, and read English runs at ~15 characters a second
    subsampling_layers: int = 1
    # channels of each convolution
    conv_channels: int = 256
    # unidirectional GRU layers after subsampling (causal, so they can run chunk by chunk)
    rnn_layers: int = 3
    # units per GRU layer
    rnn_units: int = 224
    # future output frames (20 ms each at one subsampling layer) a depthwise "lookahead" convolution after
    # the GRUs sees (DeepSpeech 2's row convolution): 0 for none; each adds one output frame of latency
    lookahead_frames: int = 6
    # dropout after each GRU layer while training
    dropout: float = 0.1
    # greedy decoding, or beam search with a word language model
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    @property
    def subsampling(self) -> int:
        return 2**self.subsampling_layers

    @property
    def frame_duration_s(self) -> float:
        """Seconds of audio per output frame."""
        return self.features.hop_length * self.subsampling / self.features.sample_rate

    def output_length(self, n_frames: int) -> int:
        """Output frames for ``n_frames`` input frames (each causal stride-2 conv: ceil(n / 2))."""
        for _ in range(self.subsampling_layers):
            n_frames = -(-n_frames // 2)
        return n_frames

    def to_dict(self, *, backend: str = BACKENDS[0]) -> dict:
        """The config as a model card holds it, naming the ``backend`` that runs the network."""
        return {"backend": backend, **asdict(self), "features": self.features.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> CTCModelConfig:
        data = dict(data)
        backend = data.pop("backend", BACKENDS[0])
        if backend not in BACKENDS:
            raise ValueError(f"config is for backend {backend!r}, not one of {', '.join(BACKENDS)}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
        features = FeatureConfig.from_dict(data.pop("features", {}))
        decoder = DecoderConfig(**data.pop("decoder", {}))
        return cls(features=features, decoder=decoder, **data)


class CTCModel(NoPrompt):
    """What every character CTC model shares, whatever runs its network: features, decoding and the
    :class:`~asrkit.contracts.ASRModel` contract. Subclasses provide :meth:`logits`."""

    def __init__(self, card: ModelCard, *, lm: NGramLM | None = None, batch_size: int = 8, device: str = "cpu") -> None:
        self.card = card
        self.config = CTCModelConfig.from_dict(card.config)
        self.tokenizer = CharTokenizer(self.config.alphabet)
        self.sample_rate = self.config.features.sample_rate
        self.batch_size = batch_size
        self.device = device
        self.lm = lm

    @property
    def name(self) -> str:
        return self.card.name

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Features of one utterance, shape (n_frames, n_features)."""
        audio = np.asarray(audio)
        if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
            raise ValueError(
                f"audio must be mono float samples of shape (n_samples,), got {audio.dtype} "
                f"{audio.shape}; asrkit.audio.load_audio gives that from any file or array"
            )
        return compute_features(audio.astype(np.float32, copy=False), config=self.config.features)

    def logits(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The network's (n_out, vocab) logits for each (n_frames, n_features) feature matrix."""
        raise NotImplementedError

    def decode(self, logits: np.ndarray) -> tuple[str, tuple]:
        """Text and character spans from (n_out, vocab) logits, as the model card's decoder says."""
        frame = self.config.frame_duration_s
        if self.lm is None:
            return greedy_decode(logits, tokenizer=self.tokenizer, frame_duration_s=frame)
        return beam_search(
            logits, tokenizer=self.tokenizer, frame_duration_s=frame, lm=self.lm, config=self.config.decoder
        )

    def transcribe(self, audio: np.ndarray) -> Transcript:
        return self.transcribe_batch([audio])[0]

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        feats = [self.features(a) for a in audios]
        # similar lengths together, so little of each batch is padding
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
        results: list[Transcript | None] = [None] * len(feats)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, logits in zip(chunk, self.logits([feats[i] for i in chunk])):
                text, chars = self.decode(logits)
                results[i] = Transcript(
                    text=text,
                    duration_s=len(audios[i]) / self.sample_rate,
                    words=words_from_chars(chars),
                    chars=chars,
                    model=self.name,
                )
        return results  # type: ignore[return-value]


class StepNetwork(Protocol):
    """A CTC network run piece by piece with carried state (see :mod:`asrkit.models.keras_ctc_stream`)."""

    # feature frames per output frame, and output frames of look-ahead
    stride: int
    lookahead: int

    def initial_state(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Convolution contexts and recurrent states at the start of an utterance."""
        ...

    def step(self, features, contexts, states):
        """(1, n, n_features) features -> (1, ceil(n / stride), units) recurrent outputs, the next
        contexts and the next states."""
        ...

    def head(self, x):
        """(1, m, units) recurrent outputs, m > lookahead -> (1, m - lookahead, vocab) logits."""
        ...


class CTCRecognizer:
    """A :class:`~asrkit.streaming.Recognizer` for a :class:`CTCModel` whose network runs step by
    step: features, network and decoding all incremental, so each second of audio costs the same
    however long the utterance.

    Greedy decoding keeps only the open character run and word; beam search (a model with a language
    model) advances its beams frame by frame. Either way the final words equal ``model.transcribe``'s.
    """

    def __init__(self, model: CTCModel, network: StepNetwork, *, step_frames: int = STEP_FRAMES) -> None:
        if step_frames < 1:
            raise ValueError(f"step_frames must be at least 1, got {step_frames}")
        self.model = model
        self.network = network
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
                tokenizer=self.model.tokenizer,
                frame_duration_s=self.frame_s,
                lm=self.model.lm,
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
            self._pending = np.concatenate([self._pending, np.asarray(out)[0]])
        if last:
            padding = np.zeros((self.network.lookahead, self._pending.shape[1]), np.float32)
            self._pending = np.concatenate([self._pending, padding])
        if len(self._pending) > self.network.lookahead:
            self._decode(np.asarray(self.network.head(self._pending[np.newaxis]))[0])
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
    model: CTCModel,
    network: StepNetwork,
    *,
    step_frames: int = STEP_FRAMES,
    endpoint: EndpointRule = EndpointRule(),
    commit: CommitRule = CommitRule(),
    limits: AudioLimits = DEFAULT_LIMITS,
) -> ChunkedStream:
    """A live stream over ``model`` whose network ``network`` runs step by step (see :mod:`asrkit.streaming`)."""
    return ChunkedStream(
        CTCRecognizer(model, network, step_frames=step_frames), endpoint=endpoint, commit=commit, limits=limits
    )

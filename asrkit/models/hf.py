"""Pretrained Hugging Face TensorFlow models behind the asrkit model contract: wav2vec 2.0 (CTC) and Whisper.

Named ``hf:<repo id>`` (e.g. ``hf:facebook/wav2vec2-base-960h``), found in the Hugging Face cache, or
given as a local folder holding a saved model and its processor. asrkit never downloads at run time:
a model missing from the cache is an error that says how to fetch it elsewhere. Needs the ``hf`` extra
(``transformers<5`` with ``tf-keras``; transformers 5 dropped TensorFlow).

Streaming: wav2vec 2.0 runs chunk by chunk with strides (each chunk sees some audio either side and
keeps only the logits of its middle); Whisper re-decodes the utterance so far
(:class:`asrkit.models.seq2seq.RedecodingRecognizer`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL for the TensorFlow imported below)

import numpy as np

from asrkit.audio import DEFAULT_LIMITS, SAMPLE_RATE, AudioLimits
from asrkit.contracts import ModelCard, ModelUnavailableError, Span, Transcript
from asrkit.models.base import NoPrompt
from asrkit.models.seq2seq import Seq2SeqModel
from asrkit.streaming import ChunkedStream, CommitRule, EndpointRule

PREFIX = "hf:"
BACKEND = "hf"
# wav2vec 2.0 streaming: new audio per chunk, and the context each chunk sees on either side
CHUNK_S = 1.0
STRIDE_S = 0.5
# Whisper hears at most this much at once; longer utterances are split at endpoints (max_utterance_s)
WHISPER_WINDOW_S = 30.0


def is_hf_name(name: str) -> bool:
    return name.startswith(PREFIX)


def is_hf_folder(folder: Path) -> bool:
    """A folder saved with ``save_pretrained``: a config.json naming a model type, and no card.json."""
    return (folder / "config.json").is_file() and not (folder / "card.json").is_file()


def _resolve(name_or_folder: str) -> tuple[str, str]:
    """(what to pass to from_pretrained, the model's name)."""
    if is_hf_name(name_or_folder):
        return name_or_folder[len(PREFIX) :], name_or_folder
    folder = Path(name_or_folder).expanduser()
    return str(folder), f"{PREFIX}{folder.name}"


def _pretrained(loader, source: str, name: str, **kwargs):
    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError as err:
        raise ModelUnavailableError(
            f"{name}: not in the Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and "
            f"asrkit does not download at run time. On a machine with internet run "
            f"'huggingface-cli download {source}' and copy the cache here (or set HF_HOME), or pass the folder "
            f"of a model saved with save_pretrained as the model name. ({err})"
        ) from err


def load_hf_model(name_or_folder: str, *, batch_size: int = 8, device: str = "auto"):
    """A wav2vec 2.0 or Whisper model from the cache or a folder, by its config's model type."""
    from transformers import AutoConfig

    from asrkit.models.keras_ctc import select_device

    select_device(device)  # transformers' TensorFlow models run where TensorFlow is told to
    source, name = _resolve(str(name_or_folder))
    config = _pretrained(AutoConfig, source, name)
    if config.model_type == "wav2vec2":
        return Wav2Vec2Model.load(source, name, batch_size=batch_size)
    if config.model_type == "whisper":
        return WhisperModel.load(source, name, batch_size=batch_size)
    raise ModelUnavailableError(f"{name}: model type {config.model_type!r}; asrkit runs wav2vec2 and whisper")


def _card(name: str, config, description: str) -> ModelCard:
    return ModelCard(
        name=name,
        description=description,
        trained=True,
        training_data="see the model's own card on the Hugging Face hub",
        config={"backend": BACKEND, "model_type": config.model_type},
    )


class Wav2Vec2Model(NoPrompt):
    """``TFWav2Vec2ForCTC`` with its processor: greedy CTC decoding with word times."""

    def __init__(self, network, processor, card: ModelCard, *, batch_size: int = 8) -> None:
        self.network, self.processor, self.card = network, processor, card
        self.sample_rate = SAMPLE_RATE
        self.batch_size = batch_size
        # input samples per output frame (320 for the usual convolutional front end)
        self.frame_samples = int(np.prod(network.config.conv_stride))

    @classmethod
    def load(cls, source: str, name: str, *, batch_size: int = 8) -> Wav2Vec2Model:
        from transformers import TFWav2Vec2ForCTC, Wav2Vec2Processor

        processor = _pretrained(Wav2Vec2Processor, source, name)
        network = _pretrained(TFWav2Vec2ForCTC, source, name)
        params = network.count_params() / 1e6
        return cls(
            network,
            processor,
            _card(name, network.config, f"wav2vec 2.0 CTC, {params:.1f}M parameters"),
            batch_size=batch_size,
        )

    @property
    def name(self) -> str:
        return self.card.name

    def transcribe(self, audio: np.ndarray) -> Transcript:
        return self.transcribe_batch([audio])[0]

    def logits(self, audio: np.ndarray) -> np.ndarray:
        """(n_frames, vocab) logits of one utterance (at least one frame's worth of audio)."""
        audio = np.pad(audio, (0, max(0, self.frame_samples * 2 - len(audio))))
        inputs = self.processor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np")
        return np.asarray(self.network(inputs.input_values, training=False).logits)[0]

    def words(self, logits: np.ndarray, *, offset_s: float = 0.0) -> tuple[Span, ...]:
        """Greedy decoding of (n_frames, vocab) logits into words with times."""
        ids = np.argmax(logits, axis=-1)
        out = self.processor.tokenizer.decode(ids, output_word_offsets=True)
        frame = self.frame_samples / SAMPLE_RATE
        return tuple(
            Span(w["word"].lower(), offset_s + w["start_offset"] * frame, offset_s + w["end_offset"] * frame)
            for w in out.word_offsets
        )

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        results = []
        for audio in audios:
            words = self.words(self.logits(np.asarray(audio, np.float32)))
            results.append(
                Transcript(
                    text=" ".join(w.text for w in words),
                    duration_s=len(audio) / SAMPLE_RATE,
                    words=words,
                    model=self.name,
                )
            )
        return results

    def create_stream(
        self,
        *,
        endpoint: EndpointRule = EndpointRule(),
        commit: CommitRule = CommitRule(),
        limits: AudioLimits = DEFAULT_LIMITS,
    ) -> ChunkedStream:
        return ChunkedStream(StridedRecognizer(self), endpoint=endpoint, commit=commit, limits=limits)


class StridedRecognizer:
    """wav2vec 2.0 chunk by chunk: each run sees ``STRIDE_S`` of audio before and after its
    ``CHUNK_S`` of new audio and keeps the logits of that middle part only."""

    def __init__(self, model: Wav2Vec2Model) -> None:
        self.model = model
        self.chunk = round(CHUNK_S * SAMPLE_RATE / model.frame_samples) * model.frame_samples
        self.stride = round(STRIDE_S * SAMPLE_RATE / model.frame_samples) * model.frame_samples
        self.reset()

    def reset(self) -> None:
        # audio from `start` onwards is kept; `done` samples of it have their logits
        self._audio = np.zeros(0, np.float32)
        self._start = 0
        self._done = 0
        self._logits: list[np.ndarray] = []

    def _run(self, end: int, *, last: bool) -> None:
        """Logits for audio [done, end), seeing the stride either side where it exists."""
        left = max(self._done - self.stride, self._start)
        right = len(self._audio) + self._start if last else end + self.stride
        window = self._audio[left - self._start : right - self._start]
        logits = self.model.logits(window)
        frame = self.model.frame_samples
        first = (self._done - left) // frame
        count = -(-(end - self._done) // frame) if last else (end - self._done) // frame
        self._logits.append(logits[first : first + count])
        self._done = end
        # only the left stride of the next chunk is needed again
        keep = max(self._done - self.stride, 0)
        self._audio = self._audio[keep - self._start :]
        self._start = keep

    def accept_waveform(self, samples: np.ndarray) -> bool:
        self._audio = np.concatenate([self._audio, samples])
        ran = False
        while self._start + len(self._audio) >= self._done + self.chunk + self.stride:
            self._run(self._done + self.chunk, last=False)
            ran = True
        return ran

    def hypothesis(self) -> tuple[Span, ...]:
        return self.model.words(np.concatenate(self._logits)) if self._logits else ()

    def finish(self) -> tuple[Span, ...]:
        end = self._start + len(self._audio)
        if end > self._done:
            self._run(end, last=True)
        return self.hypothesis()


class WhisperModel(Seq2SeqModel):
    """``TFWhisperForConditionalGeneration`` with its processor."""

    window_s = WHISPER_WINDOW_S

    def __init__(self, network, processor, card: ModelCard, *, batch_size: int = 8) -> None:
        super().__init__(card, batch_size=batch_size)
        self.network, self.processor = network, processor

    @classmethod
    def load(cls, source: str, name: str, *, batch_size: int = 8) -> WhisperModel:
        from transformers import TFWhisperForConditionalGeneration, WhisperProcessor

        processor = _pretrained(WhisperProcessor, source, name)
        network = _pretrained(TFWhisperForConditionalGeneration, source, name)
        # built in its own name scope before generate() first runs: built inside generate(), its
        # layers would get fresh weights instead of the loaded ones
        network.build_in_name_scope()
        params = network.count_params() / 1e6
        return cls(
            network,
            processor,
            _card(name, network.config, f"Whisper encoder-decoder, {params:.1f}M parameters"),
            batch_size=batch_size,
        )

    def text(self, audios: Sequence[np.ndarray]) -> list[str]:
        inputs = self.processor(
            [np.asarray(a, np.float32) for a in audios], sampling_rate=SAMPLE_RATE, return_tensors="np"
        )
        ids = self.network.generate(inputs.input_features)
        # single spaces, as the words a stream joins back together
        return [" ".join(t.split()) for t in self.processor.batch_decode(np.asarray(ids), skip_special_tokens=True)]

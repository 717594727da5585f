"""Live Whisper on a CPU: the whisper_streaming policy, with each pass made as cheap as it can be.

A *pass* decodes the *buffer*, the utterance's audio from its last trim on, greedily with timestamps
and word alignment; the decoder's prompt is the model's prompt of expected words, if any (see
``WhisperModel.with_prompt``), then the utterance's committed words before the buffer.
The stream (:class:`~asrkit.streaming.ChunkedStream`) commits the words two consecutive passes agree
on (LocalAgreement-2) and tells the recogniser, which then drops whole committed segments from the
buffer's front once the buffer is longer than ``trim_s``, so that passes decode mostly audio whose
words are not settled yet. Word times come from the alignment, shifted by the buffer's offset.

Three things keep a pass cheap on one CPU thread:

* The encoder hears a window just long enough for the buffer and ``min_padding_s`` of silence after
  it, out of a few fixed lengths (each compiled once). Whisper was trained on 30-s windows: with a
  window under 10 s, or less than about 8 s of silence after the speech, tiny.en repeats itself
  instead of ending (``benchmarks/bench_streaming.py --windows`` measures WER per length).
  A pass that loops all the same (more tokens than the audio can hold, or a transcript compressing
  better than ``compression_ratio_threshold``) is decoded again in the whole 30-s window.
* The previous pass's tokens are checked as a draft in one decoder call
  (:func:`~asrkit.models.whisper.decoding.draft_greedy`): only the tokens that changed are decoded a
  step at a time, and the transcript is still the greedy one.
* Passes come at least ``step_s`` of new audio apart, and at least ``catch_up`` times the last
  pass's cost apart, so a stream that cannot keep up decodes less often instead of falling further
  behind; :attr:`WhisperStreamRecognizer.status` says when it does.
"""

from __future__ import annotations

import difflib
import math
import re
import time
from dataclasses import dataclass, replace

import numpy as np

from asrkit.audio import SAMPLE_RATE
from asrkit.contracts import Span
from asrkit.models.seq2seq import CATCH_UP, REDECODE_STEP_S
from asrkit.models.whisper.alignment import add_word_timestamps, find_alignment
from asrkit.models.whisper.decoding import compression_ratio, draft_greedy, log_softmax
from asrkit.models.whisper.frontend import CHUNK_LENGTH_S, FRAMES_PER_SECOND, HOP_LENGTH, log_mel_spectrogram
from asrkit.models.whisper.transcribe import INPUT_STRIDE, Transcriber

# seconds of audio a trim keeps before the committed word or segment end it trims at: the alignment may
# put that end a little late, and a buffer starting inside the next word would lose it; the committed
# words this keeps are matched by their text and not shown twice
TRIM_MARGIN_S = 0.3


@dataclass(frozen=True)
class StreamingOptions:
    """How a live Whisper stream decodes; the defaults are measured on tiny.en (see the module's docstring).

    Examples
    --------
    >>> StreamingOptions().window_for(3.0)
    15.0
    """

    # seconds of new audio between passes, at least, and at least catch_up times the last pass's cost
    # (the cadence every re-decoding stream keeps, see asrkit.models.seq2seq)
    step_s: float = REDECODE_STEP_S
    catch_up: float = CATCH_UP
    # encoder window lengths, seconds, shortest first; the last must be Whisper's 30 s
    window_lengths_s: tuple[float, ...] = (10.0, 15.0, 20.0, 30.0)
    # seconds of silence a window must hold after the buffer (less, and tiny.en loops)
    min_padding_s: float = 8.0
    # a buffer longer than this, seconds, is trimmed at the end of its last committed segment
    trim_s: float = 6.0
    # ... and longer than this, at the end of its last committed word, segment or not
    max_buffer_s: float = 12.0
    # the decoder's prompt, tokens at most: the model's prompt of expected words (whole), then the end
    # of the committed text before the buffer
    prompt_tokens: int = 120
    # a pass emitting more tokens than this per second of buffer (plus 10) is looping (as is one
    # compressing better than the model's TranscribeOptions.compression_ratio_threshold, whose
    # no-speech, log-probability and silence thresholds passes also apply)
    max_tokens_per_s: float = 8.0
    # the partial stops before the first word the decoder gave a lower mean probability than this:
    # such words are the ones the next pass most often changes, and shown, they flicker
    partial_min_probability: float = 0.5

    def __post_init__(self) -> None:
        lengths = self.window_lengths_s
        if not lengths or list(lengths) != sorted(lengths) or lengths[-1] != CHUNK_LENGTH_S or lengths[0] <= 0:
            raise ValueError(f"window_lengths_s must rise to {CHUNK_LENGTH_S} s, got {lengths}")
        if self.step_s <= 0 or self.catch_up < 0:
            raise ValueError(f"step_s must be positive and catch_up at least 0, got {self.step_s}, {self.catch_up}")
        if not 0 < self.trim_s <= self.max_buffer_s <= CHUNK_LENGTH_S:
            raise ValueError(
                f"need 0 < trim_s <= max_buffer_s <= {CHUNK_LENGTH_S}, got {self.trim_s} and {self.max_buffer_s}"
            )

    def window_for(self, buffer_s: float) -> float:
        """The shortest window holding ``buffer_s`` seconds and the padding after it (else 30 s)."""
        for length in self.window_lengths_s:
            if buffer_s + self.min_padding_s <= length:
                return length
        return self.window_lengths_s[-1]


@dataclass(frozen=True)
class StreamStatus:
    """How a live Whisper stream is keeping up."""

    # passes decoded in this utterance; of them, decoded again in the 30-s window for looping, and
    # decoded again without the committed text in the prompt for leaving out committed words
    passes: int
    fallbacks: int
    unprompted: int
    # seconds the last pass took, and the encoder window it used
    last_pass_s: float
    window_s: float
    # seconds of new audio the next pass waits for: step_s, or more when passes are slow
    interval_s: float
    # seconds of audio in the buffer, and before it (trimmed, committed)
    buffer_s: float
    trimmed_s: float
    # tokens decoded in all passes, and of them drafted by the pass before
    tokens: int
    draft_kept: int
    # False while passes cost more than step_s / catch_up, so that the stream decodes less often
    keeping_up: bool


@dataclass(frozen=True)
class _Pass:
    """One decoding of the buffer."""

    # its words, utterance times
    words: tuple[Span, ...]
    # the decoder's mean probability of each word's tokens
    probabilities: tuple[float, ...]
    # where its segments end, utterance times
    segment_ends: tuple[float, ...]
    # its tokens (for the next pass's draft)
    tokens: tuple[int, ...]


def _bare(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


class WhisperStreamRecognizer:
    """A :class:`~asrkit.streaming.Recognizer` for a :class:`~asrkit.models.whisper.model.WhisperModel`.

    Parameters
    ----------
    model : WhisperModel
        Its transcriber (network, tokenizer, token rules) and lock are used.
    options : StreamingOptions
    """

    def __init__(self, model, options: StreamingOptions = StreamingOptions()) -> None:
        self.model = model
        self.options = options
        transcriber: Transcriber = model.transcriber
        self.transcriber = transcriber
        self.tokenizer = transcriber.tokenizer
        self.decoding = replace(
            model.options, beam_size=1, temperatures=(0.0,), without_timestamps=False, word_timestamps=True
        )
        self._base_rules = transcriber.rules(self.decoding)
        self._last_pass_s = 0.0
        self.reset()

    def reset(self) -> None:
        # the buffer's audio as it came, joined when a pass reads it (joining each tiny chunk as it
        # came would copy the whole buffer every time), and its length in samples
        self._chunks: list[np.ndarray] = []
        self._length = 0
        # utterance seconds where the buffer starts
        self._offset_s = 0.0
        self._decoded_at = 0
        self._committed: list[Span] = []
        # the last pass's words after the committed ones, with their probabilities
        self._fresh: list[tuple[Span, float]] = []
        self._pass: _Pass | None = None
        self._passes = self._fallbacks = self._unprompted = self._draft_kept = self._tokens = 0
        self._window_s = 0.0

    @property
    def interval_s(self) -> float:
        return max(self.options.step_s, self.options.catch_up * self._last_pass_s)

    @property
    def status(self) -> StreamStatus:
        return StreamStatus(
            passes=self._passes,
            fallbacks=self._fallbacks,
            unprompted=self._unprompted,
            last_pass_s=self._last_pass_s,
            window_s=self._window_s,
            interval_s=self.interval_s,
            buffer_s=self._length / SAMPLE_RATE,
            trimmed_s=self._offset_s,
            tokens=self._tokens,
            draft_kept=self._draft_kept,
            keeping_up=self.interval_s <= self.options.step_s,
        )

    def accept_waveform(self, samples: np.ndarray) -> bool:
        self._chunks.append(samples)
        self._length += len(samples)
        if self._length - self._decoded_at < round(self.interval_s * SAMPLE_RATE):
            return False
        self._decode()
        return True

    def hypothesis(self) -> tuple[Span, ...]:
        return (*self._committed, *(w for w, _ in self._fresh))

    def shown(self, words: list[Span]) -> list[Span]:
        """The partial up to the first unsure word (see ``StreamingOptions.partial_min_probability``)."""
        probability = {id(w): p for w, p in self._fresh}
        shown = []
        for word in words:
            if probability.get(id(word), 1.0) < self.options.partial_min_probability:
                break
            shown.append(word)
        return shown

    def finish(self) -> tuple[Span, ...]:
        if self._length != self._decoded_at or self._pass is None:
            self._decode()
        return self.hypothesis()

    def warm_up(self) -> None:
        """Compile the encoder for each window length and the alignment pass, on quiet noise."""
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
        content = len(noise) // HOP_LENGTH
        for window_s in self.options.window_lengths_s:
            cross, *_ = self._decode_window(noise, window_s, content, 3, [])
        begin = self.tokenizer.timestamp_begin
        self._timed((begin, *self.tokenizer.encode(" Hello."), begin + 50), cross, content)
        self.reset()

    def on_commit(self, words: tuple[Span, ...]) -> None:
        """The stream committed ``words`` (the next ones of the utterance): trim the buffer if it is long."""
        self._committed.extend(words)
        # the stream commits the leading words of the last pass's: they are no longer fresh
        committed = {id(w) for w in words}
        self._fresh = [(w, p) for w, p in self._fresh if id(w) not in committed]
        buffer_s = self._length / SAMPLE_RATE
        if buffer_s <= self.options.trim_s or not self._committed:
            return
        done = self._committed[-1].end
        cut = max((e for e in (self._pass.segment_ends if self._pass else ()) if e <= done + 1e-6), default=None)
        if cut is None and buffer_s > self.options.max_buffer_s:
            cut = done
        if cut is not None:
            cut -= TRIM_MARGIN_S
        if cut is None or cut <= self._offset_s:
            return
        drop = min(round((cut - self._offset_s) * SAMPLE_RATE), self._length)
        self._chunks = [self._audio()[drop:]]
        self._length -= drop
        self._decoded_at = max(self._decoded_at - drop, 0)
        self._offset_s += drop / SAMPLE_RATE
        # the buffer's timestamps moved: the last pass's tokens no longer draft the next one
        self._pass = replace(self._pass, tokens=()) if self._pass else None

    def _audio(self) -> np.ndarray:
        """The buffer's samples, shape (n,)."""
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)]
        return self._chunks[0]

    def _said_tokens(self) -> list[int]:
        """The committed text before the buffer (Transcriber.prompt keeps its end, after the expected words)."""
        before = [w.text for w in self._committed if w.end <= self._offset_s + 1e-6]
        if not before or not self.options.prompt_tokens:
            return []
        return self.tokenizer.encode(" " + " ".join(before))[-self.options.prompt_tokens :]

    def _decode(self) -> None:
        began = time.perf_counter()
        self._decoded_at = self._length
        with self.model.lock:
            found = self._run_pass(said=True)
            if found.words and self._held() and self._resume_index(found) is None and self._said_tokens():
                # the pass left out the committed words its buffer holds: the committed text in the prompt
                # misled the decoder into skipping what it took as said already (tiny.en does); decode it
                # without (the expected words stay)
                self._unprompted += 1
                found = self._run_pass(said=False)
        self._pass = found
        self._merge(found)
        self._passes += 1
        self._last_pass_s = time.perf_counter() - began

    def _run_pass(self, *, said: bool) -> _Pass:
        o, d = self.options, self.decoding
        audio = self._audio()
        if not len(audio) or (d.silence_peak is not None and np.abs(audio).max() < d.silence_peak):
            return _Pass((), (), (), ())
        buffer_s = len(audio) / SAMPLE_RATE
        content = len(audio) // HOP_LENGTH
        budget = math.ceil(o.max_tokens_per_s * buffer_s) + 10
        draft = list(self._pass.tokens) if self._pass else []
        for window_s in dict.fromkeys((o.window_for(buffer_s), o.window_lengths_s[-1])):
            cross, tokens, avg_logprob, no_speech = self._decode_window(
                audio, window_s, content, budget, draft, said=said
            )
            text = self.tokenizer.decode([t for t in tokens if t < self.tokenizer.eot])
            threshold = d.compression_ratio_threshold
            looping = len(tokens) >= budget or (threshold is not None and compression_ratio(text.strip()) > threshold)
            if not looping:
                break
            self._fallbacks += window_s < o.window_lengths_s[-1]
            draft = []
        self._window_s = window_s
        if self._silent(no_speech, avg_logprob):
            return _Pass((), (), (), ())
        return self._timed(tokens, cross, content)

    def _guessed(self, avg_logprob: float) -> bool:
        threshold = self.decoding.log_prob_threshold
        return threshold is not None and avg_logprob < threshold

    def _silent(self, no_speech: float, avg_logprob: float) -> bool:
        """Whisper's guard against hallucinated text, with the model's thresholds: a pass the model
        thinks silent whose transcript is a guess shows no words."""
        threshold = self.decoding.no_speech_threshold
        return self._guessed(avg_logprob) and threshold is not None and no_speech > threshold

    def _decode_window(
        self, audio: np.ndarray, window_s: float, content: int, budget: int, draft: list[int], *, said: bool = True
    ):
        """(cross keys/values, tokens, mean log probability, no-speech probability) of one window; its
        prompt holds the committed text before the buffer if ``said``."""
        tr, tok = self.transcriber, self.tokenizer
        n_frames = round(window_s * FRAMES_PER_SECOND)
        # silence appended before the log-mel, as openai-whisper pads: its log-mel is the floor 80 dB
        # below the loudest frame, which the model knows as silence
        padded = np.pad(audio, (0, max(n_frames * HOP_LENGTH - len(audio), 0)))
        mel = log_mel_spectrogram(padded, n_mels=tr.inference.config.n_mels)[:, :n_frames]
        cross = tr.inference.cross_keys_values(tr.inference.encode(mel[None]))
        prompt = tr.prompt(self._said_tokens() if said else [], self.decoding, budget=self.options.prompt_tokens)
        rules = replace(self._base_rules, end_timestamp_index=math.ceil(content / INPUT_STRIDE))
        max_new = min(budget, tr.max_length - len(prompt))
        hypothesis, kept = draft_greedy(tr.inference, cross, prompt, draft, rules=rules, max_new_tokens=max_new)
        self._draft_kept += kept
        self._tokens += len(hypothesis.tokens)
        no_speech = 0.0
        if self._guessed(hypothesis.avg_logprob):
            # only a guessed transcript can be silence; the probability is read after the start of transcript
            logits, _ = tr.inference.prefill(np.array([prompt[: prompt.index(tok.sot) + 1]], np.int32), cross)
            no_speech = float(np.exp(log_softmax(logits[0, -1].astype(np.float64))[tok.no_speech]))
        return cross, hypothesis.tokens, hypothesis.avg_logprob, no_speech

    def _timed(self, tokens: tuple[int, ...], cross, content: int) -> _Pass:
        tr, eot = self.transcriber, self.tokenizer.eot
        pieces, _ = tr.split_segments(tokens, seek=0, segment_size=content)
        pieces = [p for p in pieces if self.tokenizer.decode(p[2]).strip()]
        text = [t for piece in pieces for t in piece[2] if t < eot]
        if not text:
            return _Pass((), (), (), tuple(tokens))
        (alignment,) = find_alignment(
            tr.inference,
            cross,
            text_tokens=[text],
            num_frames=[content],
            tokenizer=self.tokenizer,
            alignment_heads=tr.alignment_heads,
        )
        (segments,), _ = add_word_timestamps([alignment], [pieces], time_offsets=[0.0], eot=eot)
        end_s = content / FRAMES_PER_SECOND
        shift = self._offset_s
        words: list[Span] = []
        probabilities: list[float] = []
        for w in (w for s in segments for w in s.words if w.word.strip()):
            start, end = shift + min(w.start, end_s), shift + min(max(w.end, w.start), end_s)
            if words and not w.word[0].isspace():
                # a piece without a leading space continues the word before ("cold" "-hearted")
                words[-1] = Span(words[-1].text + w.word, words[-1].start, end)
                probabilities[-1] = min(probabilities[-1], w.probability)
            else:
                words.append(Span(w.word.strip(), start, end))
                probabilities.append(w.probability)
        ends = tuple(shift + min(s.end, end_s) for s in segments if s.words)
        return _Pass(tuple(words), tuple(probabilities), ends, tuple(tokens))

    def _merge(self, found: _Pass) -> None:
        """Keep the pass's words that come after the committed ones.

        The buffer still holds some committed words, which the pass transcribes again, perhaps spelled
        or timed a little differently: matched by text, the pass's words after the last committed
        one are new; when the pass does not repeat that word, those that begin after it ended are.
        """
        fresh = list(zip(found.words, found.probabilities))
        if self._held():
            resume = self._resume_index(found)
            if resume is not None:
                fresh = fresh[resume:]
            else:
                done = self._committed[-1].end
                fresh = [(w, p) for w, p in fresh if w.start > done - 0.1]
        self._fresh = fresh

    def _held(self) -> list[str]:
        """The committed words the buffer still holds, bare."""
        return [_bare(w.text) for w in self._committed if w.end > self._offset_s + 1e-6]

    def _resume_index(self, found: _Pass) -> int | None:
        """Where the pass's words go on after the committed ones in the buffer, matched by text; None
        if the pass does not repeat the last of them."""
        held = self._held()
        matcher = difflib.SequenceMatcher(a=held, b=[_bare(w.text) for w in found.words], autojunk=False)
        ends = [b + size for a, b, size in matcher.get_matching_blocks() if size and a + size == len(held)]
        return ends[0] if ends else None

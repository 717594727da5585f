"""Transcribing audio of any length with Whisper: 30-s windows, each decoded with temperature
fallback, seeking on to the last timestamp, the text so far as the next window's prompt.

The policy is faster-whisper's (itself openai/whisper's), so that the same weights give the same
transcript: a window whose transcript repeats itself (gzip compression ratio above 2.4) or is
improbable (average log probability below -1) is decoded again at a higher temperature; a window the
model thinks silent (no-speech probability above 0.6) and improbable is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from asrkit.models.whisper.alignment import add_word_timestamps, find_alignment
from asrkit.models.whisper.config import GenerationConfig
from asrkit.models.whisper.decoding import Hypothesis, TokenRules, beam_search, compression_ratio, greedy, log_softmax
from asrkit.models.whisper.frontend import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, log_mel_spectrogram, pad_or_trim
from asrkit.models.whisper.tokenizer import TIMESTAMP_STEP_S

# mel frames per encoder position (and per timestamp step)
INPUT_STRIDE = 2
# faster-whisper pads the audio with this many zero samples before the log-mel
MEL_PADDING = 160


# Most hypotheses a window's search keeps (beam_size) or samples (best_of): well above the published
# settings (5), and small enough that no setting asks for a search the size of the machine's memory.
MAX_CANDIDATES = 64


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode; the defaults are faster-whisper's.

    Examples
    --------
    >>> TranscribeOptions(beam_size=1).temperatures[0]
    0.0
    """

    # hypotheses kept by beam search; 1 decodes greedily
    beam_size: int = 5
    # beam search stops once round(beam_size * patience) hypotheses have ended
    patience: float = 1.0
    # hypotheses are ranked by log probability / length ** length_penalty
    length_penalty: float = 1.0
    # tried in turn until a window's transcript passes the thresholds below
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    # transcripts sampled at a temperature above 0, the best kept
    best_of: int = 5
    # a transcript compressing better than this is a repetition loop: try the next temperature
    compression_ratio_threshold: float | None = 2.4
    # a transcript whose mean token log probability is below this is a guess: try the next temperature
    log_prob_threshold: float | None = -1.0
    # a window with a higher no-speech probability and a guessed transcript is silence
    no_speech_threshold: float | None = 0.6
    # the text so far prompts the next window (consistent spelling and style across windows)
    condition_on_previous_text: bool = True
    # a window decoded above this temperature does not prompt the next one
    prompt_reset_on_temperature: float = 0.5
    # text that prompts every window, before the text so far: names and words to expect, or the style
    # to write in. faster-whisper puts it before the first window's text only, where the text so far
    # soon pushes it out of the prompt; kept at the head of every window's prompt (as faster-whisper's
    # hotwords), expected names stay there however long the audio. Up to 30 s, as faster-whisper.
    initial_prompt: str | None = None
    # decode text only, without timestamp tokens (one segment per window)
    without_timestamps: bool = False
    # the first timestamp of a window may be at most this many seconds in
    max_initial_timestamp: float = 1.0
    # never start a window's transcript with a blank or end of text
    suppress_blank: bool = True
    # token ids never emitted; -1 stands for the non-speech symbols
    suppress_tokens: tuple[int, ...] = (-1,)
    # tokens a window may add, its prompt not counted; None for as many as fit in the decoder
    max_new_tokens: int | None = None
    # seeds the sampling at temperatures above 0, so a transcript is reproducible
    seed: int = 0
    # word times from the cross-attention alignment (else words are spread over their segment)
    word_timestamps: bool = True
    # a window whose audio never rises above this amplitude is silence and is not decoded: Whisper
    # hears words in digital silence ("You" with beam 5); 1e-3 is -60 dBFS, below any microphone's noise
    silence_peak: float | None = 1e-3

    def __post_init__(self) -> None:
        if not (1 <= self.beam_size <= MAX_CANDIDATES and 1 <= self.best_of <= MAX_CANDIDATES):
            raise ValueError(
                f"beam_size ({self.beam_size}) and best_of ({self.best_of}) must be from 1 to {MAX_CANDIDATES}"
            )
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1 (or None), got {self.max_new_tokens}")
        if self.silence_peak is not None and self.silence_peak < 0:
            raise ValueError(f"silence_peak must be at least 0 (or None), got {self.silence_peak}")
        if self.patience <= 0:
            raise ValueError(f"patience must be positive, got {self.patience}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError(f"temperatures must be a non-empty sequence of values >= 0, got {self.temperatures}")


@dataclass(frozen=True)
class Segment:
    """A stretch of transcript with its time in the audio."""

    # seconds from the start of the audio
    start: float
    end: float
    # the text as the model wrote it (leading space, punctuation, capitals)
    text: str
    # its tokens, timestamps included
    tokens: tuple[int, ...]
    # mean log probability per token of the window's transcript
    avg_logprob: float
    # gzip compression ratio of the window's transcript
    compression_ratio: float
    # the model's probability that the window holds no speech
    no_speech_prob: float
    # the temperature the window was decoded at
    temperature: float
    # its words with times from the cross-attention alignment; empty without word timestamps
    words: tuple = ()


@dataclass(frozen=True)
class WindowResult:
    """The decoding of one window that fallback settled on."""

    hypothesis: Hypothesis
    temperature: float
    compression_ratio: float
    no_speech_prob: float


class Transcriber:
    """Whisper's transcription policy over a :class:`~asrkit.models.whisper.inference.WhisperInference`."""

    def __init__(
        self, inference, tokenizer, generation: GenerationConfig, *, options: TranscribeOptions = TranscribeOptions()
    ) -> None:
        self.inference, self.tokenizer, self.options = inference, tokenizer, options
        self.generation = generation
        c = inference.config
        # a checkpoint that names no alignment heads aligns with every head of the decoder's upper
        # half, as openai/whisper does
        self.alignment_heads = generation.alignment_heads or tuple(
            (layer, head) for layer in range(c.n_text_layer // 2, c.n_text_layer) for head in range(c.n_text_head)
        )
        self.max_length = c.n_text_ctx

    def suppressed_tokens(self, options: TranscribeOptions) -> tuple[int, ...]:
        """The ids masked at every step: the requested ones, -1 standing for the checkpoint's list (or,
        without one, the non-speech symbols), and the special tokens that only belong in a prompt."""
        tok = self.tokenizer
        ids = {t for t in options.suppress_tokens if t >= 0}
        if -1 in options.suppress_tokens:
            ids.update(self.generation.suppress_ids or tok.non_speech_tokens)
        ids.update((tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.no_speech))
        sot_lm = tok.tokenizer.token_to_id("<|startoflm|>")
        if sot_lm is not None:
            ids.add(sot_lm)
        return tuple(sorted(ids))

    def rules(self, options: TranscribeOptions) -> TokenRules:
        tok = self.tokenizer
        begin = self.generation.suppress_ids_begin or (*tok.encode(" "), tok.eot)
        return TokenRules(
            eot=tok.eot,
            suppress=self.suppressed_tokens(options),
            suppress_begin=tuple(begin) if options.suppress_blank else (),
            timestamp_begin=None if options.without_timestamps else tok.timestamp_begin,
            no_timestamps=tok.no_timestamps,
            max_initial_timestamp_index=round(options.max_initial_timestamp / TIMESTAMP_STEP_S),
        )

    def prompt(self, previous: Sequence[int], options: TranscribeOptions, *, budget: int | None = None) -> list[int]:
        """The decoder's prompt: ``options.initial_prompt`` and the end of the text so far, ``budget``
        tokens together at most (and at most half the decoder's positions, the default), then the
        start-of-transcript sequence."""
        tok = self.tokenizer
        most = self.max_length // 2 - 1
        budget = most if budget is None else min(budget, most)
        context = tok.encode(" " + options.initial_prompt.strip())[:budget] if options.initial_prompt else []
        room = budget - len(context)
        if previous and room > 0:
            context += previous[-room:]
        prompt = [tok.sot_prev, *context] if context else []
        prompt += tok.sot_sequence
        if options.without_timestamps:
            prompt.append(tok.no_timestamps)
        return prompt

    def decode_windows(
        self, mels: np.ndarray, prompts: list[list[int]], options: TranscribeOptions
    ) -> tuple[list[WindowResult], list]:
        """Decode windows (B, n_mels, 3000) with equal-length prompts, each with temperature fallback;
        also returns the windows' cross-attention keys and values (for word alignment)."""
        features = self.inference.encode(mels)
        cross_all = self.inference.cross_keys_values(features)
        rules = self.rules(options)
        sot_index = prompts[0].index(self.tokenizer.sot)
        max_new = self.max_length - len(prompts[0])
        if options.max_new_tokens is not None:
            max_new = min(max_new, options.max_new_tokens)
        results: list[WindowResult | None] = [None] * len(prompts)
        tried: list[list[WindowResult]] = [[] for _ in prompts]
        pending = list(range(len(prompts)))
        no_speech = None
        rng = np.random.default_rng(options.seed)
        for temperature in options.temperatures:
            if not pending:
                break
            rows = np.array(pending)
            n_samples = options.best_of if temperature > 0 else 1
            repeat = np.repeat(rows, n_samples)
            cross = self.inference.gather(cross_all, repeat)
            logits, cache = self.inference.prefill(np.array([prompts[i] for i in repeat]), cross)
            if no_speech is None:
                probs = np.exp(log_softmax(logits[:, sot_index]))
                no_speech = probs[:, self.tokenizer.no_speech]
            first = logits[:, -1]
            if temperature == 0 and options.beam_size > 1:
                best = beam_search(
                    self.inference,
                    cross,
                    cache,
                    first,
                    rules=rules,
                    max_new_tokens=max_new,
                    beam_size=options.beam_size,
                    patience=options.patience,
                    length_penalty=options.length_penalty,
                )
            else:
                found = greedy(
                    self.inference,
                    cross,
                    cache,
                    first,
                    rules=rules,
                    max_new_tokens=max_new,
                    length_penalty=options.length_penalty,
                    temperature=temperature,
                    rng=rng,
                )
                # the best of each row's samples (one sample at temperature 0)
                best = [
                    max(found[j * n_samples : (j + 1) * n_samples], key=lambda h: h.score) for j in range(len(rows))
                ]
            still = []
            for i, hypothesis in zip(pending, best):
                ratio = compression_ratio(self.tokenizer.decode(hypothesis.tokens).strip())
                result = WindowResult(hypothesis, temperature, ratio, float(no_speech[i]))
                tried[i].append(result)
                if self._acceptable(result, options):
                    results[i] = result
                else:
                    still.append(i)
            pending = still
        for i in pending:
            # every temperature failed: the most probable transcript that is not a loop
            threshold = options.compression_ratio_threshold
            fine = [r for r in tried[i] if threshold is None or r.compression_ratio <= threshold]
            best_result = max(fine or tried[i], key=lambda r: r.hypothesis.avg_logprob)
            results[i] = replace(best_result, temperature=tried[i][-1].temperature)
        return results, cross_all

    @staticmethod
    def _acceptable(result: WindowResult, options: TranscribeOptions) -> bool:
        avg = result.hypothesis.avg_logprob
        loop = (
            options.compression_ratio_threshold is not None
            and result.compression_ratio > options.compression_ratio_threshold
        )
        guess = options.log_prob_threshold is not None and avg < options.log_prob_threshold
        silent = (
            options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold and guess
        )
        return silent or not (loop or guess)

    def split_segments(
        self, tokens: Sequence[int], *, seek: int, segment_size: int
    ) -> tuple[list[tuple[float, float, list[int]]], int, bool]:
        """(start s, end s, tokens) of each timestamped segment of a window's transcript, where the
        next window starts (in mel frames), and whether the transcript ended on a lone timestamp
        (no speech after it in this window)."""
        begin = self.tokenizer.timestamp_begin
        offset = seek / FRAMES_PER_SECOND
        tokens = list(tokens)
        single_ending = len(tokens) >= 2 and tokens[-2] < begin <= tokens[-1]
        cuts = [i for i in range(1, len(tokens)) if tokens[i] >= begin and tokens[i - 1] >= begin]
        if not cuts:
            stamps = [t for t in tokens if t >= begin]
            duration = segment_size / FRAMES_PER_SECOND
            if stamps and stamps[-1] != begin:
                duration = (stamps[-1] - begin) * TIMESTAMP_STEP_S
            return [(offset, offset + duration, tokens)], seek + segment_size
        if single_ending:
            cuts.append(len(tokens))
        segments, last = [], 0
        for cut in cuts:
            piece = tokens[last:cut]
            segments.append(
                (offset + (piece[0] - begin) * TIMESTAMP_STEP_S, offset + (piece[-1] - begin) * TIMESTAMP_STEP_S, piece)
            )
            last = cut
        if single_ending:
            # a lone timestamp at the end: no speech after it in this window
            return segments, seek + segment_size
        # the last segment was cut off: the next window starts at its start
        return segments, seek + (tokens[last - 1] - begin) * INPUT_STRIDE

    def transcribe_batch(
        self, audios: Sequence[np.ndarray], *, options: TranscribeOptions | None = None
    ) -> list[list[Segment]]:
        """Segments of each clip; windows of different clips are decoded together when their prompts
        have the same length (every first window, and every window of clips up to 30 s)."""
        options = options or self.options
        mels = [log_mel_spectrogram(a, n_mels=self.inference.config.n_mels, padding=MEL_PADDING) for a in audios]
        content = [m.shape[-1] - 1 for m in mels]
        seeks = [0] * len(audios)
        # each clip's text so far (Transcriber.prompt puts the initial prompt before it)
        history: list[list[int]] = [[] for _ in audios]
        reset_at = [0] * len(audios)
        # end of the last word heard in each clip, for the word-time clean-ups
        last_speech = [0.0] * len(audios)
        segments: list[list[Segment]] = [[] for _ in audios]
        while True:
            active = [i for i in range(len(audios)) if seeks[i] < content[i]]
            if not active:
                return segments
            groups: dict[int, list[int]] = {}
            prompts = {}
            for i in active:
                prompts[i] = self.prompt(history[i][reset_at[i] :], options)
                groups.setdefault(len(prompts[i]), []).append(i)
            for members in groups.values():
                sizes = [min(N_FRAMES, content[i] - seeks[i]) for i in members]
                if options.silence_peak is not None:
                    heard = []
                    for i, size in zip(members, sizes):
                        window = audios[i][seeks[i] * HOP_LENGTH : (seeks[i] + size) * HOP_LENGTH]
                        if window.size and np.abs(window).max() >= options.silence_peak:
                            heard.append(i)
                        else:
                            seeks[i] += size
                    members = heard
                    if not members:
                        continue
                    sizes = [min(N_FRAMES, content[i] - seeks[i]) for i in members]
                windows = np.stack([pad_or_trim(mels[i][:, seeks[i] : seeks[i] + n]) for i, n in zip(members, sizes)])
                results, cross = self.decode_windows(windows, [prompts[i] for i in members], options)
                windows_out = []
                for row, (i, size, result) in enumerate(zip(members, sizes, results)):
                    if self._silent(result, options):
                        seeks[i] += size
                        continue
                    pieces, next_seek = self.split_segments(result.hypothesis.tokens, seek=seeks[i], segment_size=size)
                    windows_out.append((row, i, size, result, pieces, next_seek))
                words = self._align(windows_out, cross, seeks, last_speech) if options.word_timestamps else {}
                for _row, i, _size, result, pieces, next_seek in windows_out:
                    # word times annotate the segments; they never move the seek, so a transcript is
                    # the same with and without them (and faster-whisper's default)
                    aligned = words.get(i)
                    seeks[i] = next_seek
                    for k, (start, end, tokens) in enumerate(pieces):
                        text = self.tokenizer.decode(tokens)
                        if start == end or not text.strip():
                            continue
                        timed = ()
                        if aligned is not None:
                            start, end, timed = aligned[k].start, aligned[k].end, aligned[k].words
                        history[i].extend(tokens)
                        segments[i].append(
                            Segment(
                                start,
                                end,
                                text,
                                tuple(tokens),
                                result.hypothesis.avg_logprob,
                                result.compression_ratio,
                                result.no_speech_prob,
                                result.temperature,
                                timed,
                            )
                        )
                    if (
                        not options.condition_on_previous_text
                        or result.temperature > options.prompt_reset_on_temperature
                    ):
                        reset_at[i] = len(history[i])

    def _silent(self, result: WindowResult, options: TranscribeOptions) -> bool:
        """A window the model thinks silent, unless its transcript is probable all the same and has words.

        The words condition is asrkit's: on faint noise Whisper writes strings of full stops probable
        enough to pass the log-probability rule alone, with a no-speech probability near 1."""
        if options.no_speech_threshold is None or result.no_speech_prob <= options.no_speech_threshold:
            return False
        confident = (
            options.log_prob_threshold is not None and result.hypothesis.avg_logprob > options.log_prob_threshold
        )
        return not confident or not any(c.isalnum() for c in self.tokenizer.decode(result.hypothesis.tokens))

    def _align(self, windows, cross, seeks, last_speech) -> dict[int, list]:
        """Per clip, its window's segments with word times (AlignedSegment), for windows with text."""
        eot = self.tokenizer.eot
        texts = [[t for piece in w[4] for t in piece[2] if t < eot] for w in windows]
        todo = [(w, text) for w, text in zip(windows, texts) if text]
        if not todo:
            return {}
        rows = np.array([w[0] for w, _ in todo])
        alignments = find_alignment(
            self.inference,
            self.inference.gather(cross, rows),
            text_tokens=[text for _, text in todo],
            num_frames=[w[2] for w, _ in todo],
            tokenizer=self.tokenizer,
            alignment_heads=self.alignment_heads,
        )
        aligned = {}
        for (w, _), alignment in zip(todo, alignments):
            i = w[1]
            (segments,), last_speech[i] = add_word_timestamps(
                [alignment],
                [w[4]],
                time_offsets=[seeks[i] / FRAMES_PER_SECOND],
                eot=eot,
                last_speech_timestamp=last_speech[i],
            )
            aligned[i] = segments
        return aligned

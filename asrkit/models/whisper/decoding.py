"""Searching Whisper's decoder for a transcript of one 30-s window: greedy, beam search and sampling,
with the token rules every Whisper runtime applies.

The search follows CTranslate2 (faster-whisper's engine) so that the same weights give the same
tokens: a beam keeps ``beam_size`` live hypotheses chosen from the ``2 * beam_size`` best
continuations, a hypothesis that ends is set aside and its place taken by the next live candidate,
and the search stops once ``round(beam_size * patience)`` hypotheses have ended; they are ranked by
their log probability divided by ``length ** length_penalty``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

NEG_INF = -np.inf


@dataclass(frozen=True)
class TokenRules:
    """Which tokens the decoder may emit when: the same for every search in one transcription."""

    # end of text
    eot: int
    # masked at every step (non-speech symbols and special tokens)
    suppress: tuple[int, ...] = ()
    # masked at the first step only (a lone space, end of text): no empty or blank transcript
    suppress_begin: tuple[int, ...] = ()
    # first timestamp token ("<|0.00|>"); None decodes without timestamps
    timestamp_begin: int | None = None
    # the "no timestamps" token, never emitted when decoding with timestamps
    no_timestamps: int | None = None
    # the first timestamp may be at most this many 20-ms steps in; None for no limit
    max_initial_timestamp_index: int | None = None
    # where the audio ends in a window shorter than the encoder was trained on, in 20-ms steps: no
    # timestamp after it, and a timestamp reaching it ends the transcript (past the audio's end a
    # short window's decoder repeats itself instead of ending); None for a whole 30-s window
    end_timestamp_index: int | None = None

    def apply(self, logits: np.ndarray, sampled: list[list[int]], step: int) -> None:
        """Mask forbidden tokens of ``logits`` (N, V) in place, row n having sampled ``sampled[n]``."""
        if self.suppress:
            logits[:, list(self.suppress)] = NEG_INF
        if step == 0 and self.suppress_begin:
            logits[:, list(self.suppress_begin)] = NEG_INF
        if self.timestamp_begin is not None:
            self._timestamp_rules(logits, sampled, step)

    def _timestamp_rules(self, logits: np.ndarray, sampled: list[list[int]], step: int) -> None:
        begin = self.timestamp_begin
        if self.no_timestamps is not None:
            logits[:, self.no_timestamps] = NEG_INF
        # timestamps come in pairs (a segment's end, the next one's start) except at the very end
        last = np.array([len(s) >= 1 and s[-1] >= begin for s in sampled])
        penultimate = np.array([len(s) < 2 or s[-2] >= begin for s in sampled])
        logits[last & penultimate, begin:] = NEG_INF
        logits[last & ~penultimate, : self.eot] = NEG_INF
        # time never goes back, and a segment lasts at least one step
        latest = np.array([max((t for t in s if t >= begin), default=-1) for s in sampled])
        floor = np.where(latest < 0, 0, latest + np.where(last & ~penultimate, 0, 1))
        columns = np.arange(logits.shape[1])
        logits[(columns >= begin) & (columns < floor[:, None])] = NEG_INF
        if step == 0:
            logits[:, :begin] = NEG_INF
            if self.max_initial_timestamp_index is not None:
                logits[:, begin + self.max_initial_timestamp_index + 1 :] = NEG_INF
        if self.end_timestamp_index is not None:
            end = begin + self.end_timestamp_index
            logits[:, end + 1 :] = NEG_INF
            reached = np.array([len(s) >= 1 and s[-1] >= end for s in sampled])
            logits[reached, : self.eot] = NEG_INF
            logits[reached, self.eot + 1 :] = NEG_INF
        # a timestamp whose total probability beats every single text token is taken (compared
        # before normalising: both sides would subtract the same log-sum)
        text_best = logits[:, :begin].max(axis=1)
        stamps = logits[:, begin:]
        top = stamps.max(axis=1, keepdims=True)
        with np.errstate(invalid="ignore"):
            stamp_total = np.where(
                np.isfinite(top[:, 0]), top[:, 0] + np.log(np.exp(stamps - top).sum(axis=1)), NEG_INF
            )
        logits[stamp_total > text_best, :begin] = NEG_INF


@dataclass(frozen=True)
class Hypothesis:
    """One finished search of one window."""

    # the sampled tokens, without the prompt and without end of text
    tokens: tuple[int, ...]
    # sum of the tokens' log probabilities, end of text included
    sum_logprob: float
    # sum_logprob / len(tokens) ** length_penalty: what ranks hypotheses
    score: float

    @property
    def avg_logprob(self) -> float:
        """Mean log probability per token, end of text counted (faster-whisper's measure)."""
        return self.sum_logprob / (len(self.tokens) + 1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log probabilities along the last axis; rows of -inf stay finite where any entry is finite."""
    top = np.max(logits, axis=-1, keepdims=True)
    shifted = logits - top
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def compression_ratio(text: str) -> float:
    """How well ``text`` compresses: above ~2.4 it is repeating itself (a decoding loop)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _score(total: float, length: int, length_penalty: float) -> float:
    return total / (max(length, 1) ** length_penalty)


class _Decoder:
    """What a search needs from the network: one step on a batch of rows, and picking rows."""

    def __init__(self, inference, cross_kv, cache) -> None:
        self.inference, self.cross_kv, self.cache = inference, cross_kv, cache

    def select(self, rows: np.ndarray, cross_rows: np.ndarray | None) -> None:
        """Keep the cache rows ``rows`` and the audio keys and values rows ``cross_rows`` (None keeps
        them as they are: beams of one input share their audio, so reordering beams needs no copy of
        its keys and values, 23 MB a step for tiny.en at beam 5)."""
        self.cache = self.inference.gather(self.cache, rows)
        if cross_rows is not None:
            self.cross_kv = self.inference.gather(self.cross_kv, cross_rows)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        logits, self.cache = self.inference.step(tokens[:, None], self.cross_kv, self.cache)
        return np.array(logits, np.float32)


def greedy(
    inference,
    cross_kv,
    cache,
    first_logits: np.ndarray,
    *,
    rules: TokenRules,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    temperature: float = 0.0,
    rng: np.random.Generator | None = None,
    prefix: tuple[list[int], float] = ([], 0.0),
) -> list[Hypothesis]:
    """Greedy search (or sampling at ``temperature`` > 0) of every row of a batch.

    Parameters
    ----------
    inference : WhisperInference
    cross_kv, cache : the batch's cross keys/values and the cache its prompts left
    first_logits : array, shape (B, V)
        Logits after the last prompt token.
    prefix : (tokens, summed log probability)
        Tokens every row has already chosen after its prompt (the cache holds them, ``first_logits``
        follow them); they count in ``max_new_tokens`` and in the hypotheses.
    """
    decoder = _Decoder(inference, cross_kv, cache)
    n = first_logits.shape[0]
    sampled: list[list[int]] = [list(prefix[0]) for _ in range(n)]
    totals = np.full(n, prefix[1], np.float64)
    done = np.zeros(n, bool)
    alive = np.arange(n)
    logits = np.array(first_logits, np.float32)
    for step in range(len(prefix[0]), max_new_tokens):
        rows = [sampled[i] for i in alive]
        rules.apply(logits, rows, step)
        logprobs = log_softmax(logits)
        if temperature > 0:
            # Gumbel-max: the argmax of the tempered logits plus Gumbel noise is a sample of their softmax
            choice = np.argmax(logits / temperature + rng.gumbel(size=logits.shape).astype(np.float32), axis=-1)
        else:
            choice = np.argmax(logprobs, axis=-1)
        totals[alive] += logprobs[np.arange(len(alive)), choice]
        still = []
        for j, i in enumerate(alive):
            token = int(choice[j])
            if token == rules.eot:
                done[i] = True
            else:
                sampled[i].append(token)
                still.append(j)
        if not still or step == max_new_tokens - 1:
            break
        if len(still) < len(alive):
            decoder.select(np.array(still), np.array(still))
            alive, choice = alive[still], choice[still]
        logits = decoder.step(choice.astype(np.int32))
    return [Hypothesis(tuple(s), float(t), _score(float(t), len(s), length_penalty)) for s, t in zip(sampled, totals)]


def draft_greedy(
    inference,
    cross_kv,
    prompt: list[int],
    draft: list[int],
    *,
    rules: TokenRules,
    max_new_tokens: int,
    length_penalty: float = 1.0,
) -> tuple[Hypothesis, int]:
    """Greedy search of one window that first checks a guess of its transcript in a single decoder call.

    Speculative decoding with an earlier transcript as the draft: the prompt and the draft go through
    the decoder at once, the draft's tokens are kept for as long as each is the greedy choice after
    the ones before it, and the search goes on one step at a time from the first that is not. The
    result is the greedy transcript (up to float rounding between a whole-sequence call and single
    steps); a draft that is mostly right saves most of the steps. A live stream re-decoding a growing
    buffer drafts with its previous pass.

    Parameters
    ----------
    inference : WhisperInference
    cross_kv : the window's cross keys/values, batch of one
    prompt : the decoder prompt, ending with the start-of-transcript sequence
    draft : tokens expected after the prompt, without end of text

    Returns
    -------
    The hypothesis, and how many of the draft's tokens it kept.
    """
    draft = list(draft[: max(max_new_tokens - 1, 0)])
    logits, cache = inference.prefill(np.array([prompt + draft], np.int32), cross_kv)
    n = len(prompt)
    kept: list[int] = []
    total = 0.0
    for step, token in enumerate(draft):
        row = np.array(logits[:, n - 1 + step], np.float32)
        rules.apply(row, [kept], step)
        logprobs = log_softmax(row)[0]
        if int(np.argmax(logprobs)) != token:
            break
        kept.append(token)
        total += float(logprobs[token])
    if len(kept) < len(draft):
        # the cache is causal: its first positions are those of the prompt and the kept tokens
        cache = inference.truncate(cache, n + len(kept))
    first = logits[:, n - 1 + len(kept)]
    (hypothesis,) = greedy(
        inference,
        cross_kv,
        cache,
        first,
        rules=rules,
        max_new_tokens=max_new_tokens,
        length_penalty=length_penalty,
        prefix=(kept, total),
    )
    return hypothesis, len(kept)


def beam_search(
    inference,
    cross_kv,
    cache,
    first_logits: np.ndarray,
    *,
    rules: TokenRules,
    max_new_tokens: int,
    beam_size: int = 5,
    patience: float = 1.0,
    length_penalty: float = 1.0,
) -> list[Hypothesis]:
    """Beam search of every row of a batch, CTranslate2's way (see the module's docstring).

    The first step expands each row's single prompt; later steps run ``beam_size`` rows per input.
    """
    decoder = _Decoder(inference, cross_kv, cache)
    n_inputs, vocab = first_logits.shape
    candidates = 2 * beam_size
    max_finished = round(beam_size * patience)
    finished: list[list[Hypothesis]] = [[] for _ in range(n_inputs)]
    results: list[Hypothesis | None] = [None] * n_inputs
    inputs = np.arange(n_inputs)  # the inputs still searching, in row-block order
    sequences: list[list[int]] = [[] for _ in range(n_inputs)]  # one per row
    scores = np.zeros(n_inputs, np.float64)  # one per row
    width = 1  # rows per input: 1 until the first step has expanded the prompt
    logits = np.array(first_logits, np.float32)
    for step in range(max_new_tokens):
        last_step = step == max_new_tokens - 1
        rules.apply(logits, sequences, step)
        totals = log_softmax(logits).astype(np.float64) + scores[:, None]
        flat = totals.reshape(len(inputs), width * vocab)
        top = np.argpartition(-flat, candidates - 1, axis=1)[:, :candidates]
        order = np.argsort(-np.take_along_axis(flat, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        next_rows, next_sequences, next_scores, still = [], [], [], []
        for block, index in enumerate(inputs):
            picks = top[block]
            row_of = block * width + picks // vocab
            token_of = picks % vocab
            spare = beam_size
            chosen = []
            for k in range(beam_size):
                pick = k
                token = int(token_of[k])
                if token == rules.eot or last_step:
                    kept = sequences[row_of[k]] + ([] if token == rules.eot else [token])
                    total = float(flat[block, picks[k]])
                    finished[index].append(Hypothesis(tuple(kept), total, _score(total, len(kept), length_penalty)))
                    # the next live candidate takes the ended hypothesis's place
                    for j in range(spare, candidates):
                        if int(token_of[j]) != rules.eot:
                            pick, spare = j, j + 1
                            break
                chosen.append(pick)
            if last_step or len(finished[index]) >= max_finished:
                results[index] = max(finished[index], key=lambda h: h.score)
                continue
            still.append(index)
            for pick in chosen:
                next_rows.append(row_of[pick])
                next_sequences.append(sequences[row_of[pick]] + [int(token_of[pick])])
                next_scores.append(flat[block, picks[pick]])
        if not still:
            break
        rows = np.array(next_rows)
        unchanged = width == beam_size and len(still) == len(inputs)
        blocks = np.searchsorted(inputs, still)
        decoder.select(rows, None if unchanged else np.repeat(blocks * width, beam_size))
        inputs, width = np.array(still), beam_size
        sequences, scores = next_sequences, np.array(next_scores, np.float64)
        logits = decoder.step(np.array([s[-1] for s in sequences], np.int32))
    return results

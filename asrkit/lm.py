"""Word n-gram language models: built from text with interpolated Kneser-Ney, stored as ARPA.

Build one only from text that may be trained on: never from a sentence of the sets a model is measured on
(leave them out with :func:`asrkit.data.synth.allowed_sentences`).
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

from asrkit.errors import AsrkitError
from asrkit.text import normalize_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
# Kneser-Ney's absolute discount; 0.75 is the usual choice when counts of counts are not estimated.
DISCOUNT = 0.75
LN10 = math.log(10)
# Reading an ARPA file stops at a line longer than this many characters: a real line is a probability,
# at most MAX_ARPA_ORDER words and a backoff weight, while a device or binary file (/dev/zero) may hold
# one endless "line".
MAX_ARPA_LINE_CHARS = 4096
# Highest n-gram order read; toolkits build up to 5- or 6-grams.
MAX_ARPA_ORDER = 10
# N-grams read at most: each costs about 370 bytes in memory (measured loading asrkit-ctc-en's LM, 310,757
# n-grams), so this bounds a model at about 1.9 GB.
MAX_ARPA_NGRAMS = 5_000_000


class LMError(AsrkitError, ValueError):
    """A language model file that is unreadable, not ARPA, or past the limits above."""


class NGramLM:
    """A backoff word n-gram model: ``logprob(context, word)`` in natural log.

    Examples
    --------
    >>> lm = NGramLM.build(["the cat sat", "the cat ran", "a dog sat"], order=2)
    >>> lm.logprob(("the",), "cat") > lm.logprob(("the",), "dog")
    True
    """

    def __init__(self, order: int, probs: dict[tuple[str, ...], tuple[float, float]]) -> None:
        # n-gram -> (log10 probability, log10 backoff weight), as in an ARPA file
        self.order = order
        self.probs = probs

    def logprob(self, context: tuple[str, ...], word: str) -> float:
        """ln P(word | context); unknown words are scored as <unk>."""
        if (word,) not in self.probs:
            word = UNK
        context = context[-(self.order - 1) :] if self.order > 1 else ()
        backoff = 0.0
        while True:
            entry = self.probs.get((*context, word))
            if entry is not None:
                return (entry[0] + backoff) * LN10
            parent = self.probs.get(context)
            backoff += parent[1] if parent else 0.0
            context = context[1:]

    @cached_property
    def vocabulary(self) -> frozenset[str]:
        """The words the model has unigrams for, without <s>, </s> and <unk>."""
        return frozenset(g[0] for g in self.probs if len(g) == 1) - {BOS, EOS, UNK}

    @cached_property
    def word_prefixes(self) -> frozenset[str]:
        """Every non-empty beginning of a vocabulary word, the words included."""
        return frozenset(w[:i] for w in self.vocabulary for i in range(1, len(w) + 1))

    def sentence_logprob(self, words: Iterable[str]) -> float:
        context: tuple[str, ...] = (BOS,)
        total = 0.0
        for word in [*words, EOS]:
            total += self.logprob(context, word)
            context = (*context, word)[-(self.order - 1) :] if self.order > 1 else ()
        return total

    @classmethod
    def build(cls, sentences: Iterable[str], *, order: int = 3) -> NGramLM:
        """Estimate an interpolated Kneser-Ney model from sentences (normalised here)."""
        counts: list[Counter] = [Counter() for _ in range(order + 1)]  # counts[n][ngram]
        for sentence in sentences:
            words = [BOS, *normalize_text(sentence).split(), EOS]
            if len(words) == 2:
                continue
            for n in range(1, order + 1):
                for i in range(len(words) - n + 1):
                    counts[n][tuple(words[i : i + n])] += 1
        # lower orders count distinct left extensions (continuation counts), except n-grams that
        # start a sentence, which have no left context to be continued from
        for n in range(order - 1, 0, -1):
            continuation = Counter(ngram[1:] for ngram in counts[n + 1])
            counts[n] = Counter({g: continuation[g] if g[0] != BOS else c for g, c in counts[n].items()})
        probs: dict[tuple[str, ...], tuple[float, float]] = {}
        vocab = [g[0] for g in counts[1] if g[0] != BOS]
        unigram_total = sum(c for g, c in counts[1].items() if g[0] != BOS)
        # unigrams interpolate with a uniform distribution that also covers <unk>
        gamma = DISCOUNT * len(vocab) / unigram_total
        uniform = 1.0 / (len(vocab) + 1)
        lower: dict[tuple[str, ...], float] = {}
        for word in vocab:
            lower[(word,)] = max(counts[1][(word,)] - DISCOUNT, 0) / unigram_total + gamma * uniform
        lower[(UNK,)] = gamma * uniform
        for n in range(2, order + 1):
            context_total: Counter = Counter()
            context_types: Counter = Counter()
            for ngram, c in counts[n].items():
                context_total[ngram[:-1]] += c
                context_types[ngram[:-1]] += 1
            current = {}
            for ngram, c in counts[n].items():
                h = ngram[:-1]
                gamma_h = DISCOUNT * context_types[h] / context_total[h]
                current[ngram] = (c - DISCOUNT) / context_total[h] + gamma_h * cls._lower(lower, ngram[1:])
            for h in context_total:
                probs[h] = (probs.get(h, (-99.0, 0.0))[0], math.log10(DISCOUNT * context_types[h] / context_total[h]))
            for ngram, p in lower.items():
                probs[ngram] = (math.log10(p), probs.get(ngram, (0.0, 0.0))[1])
            lower = current
        for ngram, p in lower.items():
            probs[ngram] = (math.log10(p), probs.get(ngram, (0.0, 0.0))[1])
        probs[(BOS,)] = (-99.0, probs.get((BOS,), (0.0, 0.0))[1])
        return cls(order, probs)

    @staticmethod
    def _lower(lower: dict[tuple[str, ...], float], ngram: tuple[str, ...]) -> float:
        """P(last word | shorter context) from the model one order down, backing off as needed."""
        while ngram not in lower and len(ngram) > 1:
            ngram = ngram[1:]
        return lower.get(ngram, lower.get((UNK,), 1e-9))

    def save(self, path: str | Path) -> None:
        """Write an ARPA file (gzip-compressed when the name ends in .gz)."""
        by_order: defaultdict[int, list] = defaultdict(list)
        for ngram, entry in self.probs.items():
            by_order[len(ngram)].append((ngram, entry))
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8") as f:
            f.write("\\data\\\n")
            f.writelines(f"ngram {n}={len(by_order[n])}\n" for n in range(1, self.order + 1))
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                for ngram, (p, bow) in sorted(by_order[n]):
                    tail = f"\t{bow:.5f}" if n < self.order and bow != 0.0 else ""
                    f.write(f"{p:.5f}\t{' '.join(ngram)}{tail}\n")
            f.write("\n\\end\\\n")

    @classmethod
    def load(cls, path: str | Path) -> NGramLM:
        """Read an ARPA file (ours or any toolkit's), gzip-compressed or not.

        Raises
        ------
        LMError
            The file cannot be read or decompressed, is not UTF-8 ARPA text, or passes
            :data:`MAX_ARPA_LINE_CHARS`, :data:`MAX_ARPA_ORDER` or :data:`MAX_ARPA_NGRAMS`; the message names it.
        """
        opener = gzip.open if str(path).endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                order, probs = cls._read_arpa(f, path)
        except OSError as err:  # missing, unreadable, or not gzip data (gzip.BadGzipFile)
            raise LMError(f"{path}: cannot read the language model ({err})") from None
        except EOFError:
            raise LMError(f"{path}: the compressed language model is truncated") from None
        except UnicodeDecodeError as err:
            raise LMError(f"{path}: not UTF-8 text (at byte {err.start} of a line); is it an ARPA file?") from None
        if not probs:
            raise LMError(f"{path}: no n-grams found; is it an ARPA file?")
        return cls(order, probs)

    @staticmethod
    def _read_arpa(f, path: str | Path) -> tuple[int, dict[tuple[str, ...], tuple[float, float]]]:
        """The order and n-grams of an open ARPA text file."""
        probs: dict[tuple[str, ...], tuple[float, float]] = {}
        order = 0
        while raw := f.readline(MAX_ARPA_LINE_CHARS + 1):
            if len(raw) > MAX_ARPA_LINE_CHARS:
                raise LMError(f"{path}: a line is longer than {MAX_ARPA_LINE_CHARS} characters; is it an ARPA file?")
            line = raw.strip()
            if not line or line.startswith("\\") or line.startswith("ngram "):
                if line.endswith("-grams:"):
                    head = line[1:].split("-")[0]
                    if not head.isdigit() or not 1 <= int(head) <= MAX_ARPA_ORDER:
                        raise LMError(
                            f"{path}: malformed ARPA section {line[:80]!r} (orders 1 to {MAX_ARPA_ORDER} are read)"
                        )
                    order = int(head)
                continue
            if order == 0:
                continue
            parts = line.split()
            try:
                # a probability, then the n-gram's order words, then perhaps a backoff weight
                p = float(parts[0]) if len(parts) > order else math.nan
                bow = float(parts[order + 1]) if len(parts) > order + 1 else 0.0
            except ValueError:
                p = math.nan
            if math.isnan(p) or len(parts) > order + 2:
                raise LMError(f"{path}: malformed ARPA line {line[:80]!r}")
            if len(probs) >= MAX_ARPA_NGRAMS:
                raise LMError(f"{path}: more than {MAX_ARPA_NGRAMS:,} n-grams; asrkit reads at most that many")
            probs[tuple(parts[1 : order + 1])] = (p, bow)
        return order, probs

"""Prompts to read aloud: digit strings, or sentences from :class:`AdaptData`'s text, drawn with a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from asrkit.data.synth import allowed_sentences, read_sentences, spoken_form
from asrkit.text import normalize_text

# Prompt sets: digit strings (quick to read, and what FSDD's speakers recorded) or sentences.
PROMPT_SETS = ("digits", "sentences")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# digits per prompt, drawn uniformly from this range
DIGITS_PER_PROMPT = (3, 5)
# Sentence sources written to be read aloud (LJSpeech's are long and archaic).
SENTENCE_SOURCES = ("harvard", "arctic")
# Longer sentences are left out: a prompt should be read in one breath.
MAX_PROMPT_WORDS = 12


@dataclass(frozen=True)
class AdaptData:
    """Optional data that adaptation draws on; without any of it, prompts are digits and copies lack noise."""

    # a folder of sentence sources (see asrkit.data.synth.read_sentences): Harvard sentences and CMU ARCTIC prompts
    text_dir: Path | None = None
    # a file of sentences (one a line) never offered as prompts, e.g. every sentence of your test sets
    exclude_file: Path | None = None
    # noise clips and rir_simulated/ room responses for the augmented copies
    noise_dir: Path | None = None


def make_prompts(*, kind: str, count: int, seed: int = 0, data: AdaptData = AdaptData()) -> list[str]:
    """``count`` prompts to read aloud, the same for the same arguments.

    Parameters
    ----------
    kind : str
        "digits" (strings of 3 to 5 digit words such as "three seven one four") or "sentences" (Harvard
        sentences and CMU ARCTIC prompts of at most :data:`MAX_PROMPT_WORDS` words, from ``data.text_dir``).
    data : AdaptData, optional
        Its ``text_dir`` gives the sentences, and every sentence of its ``exclude_file`` is left out of any
        prompt set. Digits need neither.

    Usage
    -----
    ::

        make_prompts(kind="digits", count=2, seed=0)
        # ['six zero four eight', 'six four seven five']
    """
    if kind not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {kind!r}; choose from {', '.join(PROMPT_SETS)}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    excluded = _excluded_texts(data.exclude_file)
    rng = random.Random(seed)
    if kind == "digits":
        prompts: list[str] = []
        for _ in range(100 * count):  # bounded: exclusion could in principle refuse every draw
            if len(prompts) == count:
                break
            candidate = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(*DIGITS_PER_PROMPT)))
            prompts = allowed_sentences([*prompts, candidate], excluded)
        return prompts
    text_dir = data.text_dir
    if text_dir is None or not text_dir.is_dir():
        raise FileNotFoundError(
            f"sentence prompts need a folder of sentence sources, and {text_dir} is absent; use digits"
        )
    sentences = [
        spoken_form(s)
        for s in allowed_sentences(read_sentences(text_dir, sources=SENTENCE_SOURCES), excluded)
        if len(normalize_text(s).split()) <= MAX_PROMPT_WORDS
    ]
    rng.shuffle(sentences)
    return sentences[:count]


def _excluded_texts(path: Path | None) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path is not None and path.is_file() else []

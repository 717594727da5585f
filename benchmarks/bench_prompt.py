"""Does a prompt of expected names help Whisper write them, and does it hurt the rest?

    .venv/bin/python benchmarks/bench_prompt.py --data ../shared/data [--model default]
        [--sets kathleen_dev fixtures_dev]

A *name word* is a capitalised word of a written transcript that does not start a sentence ("I" and
its contractions and titles aside), or one that does and is a name word elsewhere in the set ("Gregson
shoved back his chair"); transcripts in one case throughout (LibriSpeech's capitals, lower-case command
phrases) say nothing about names and are left out. The utterances of a set that hold names are split,
in manifest order, into groups whose names fit one prompt (``MAX_PROMPT_TOKENS``: about 20 names, like
a meeting's list of participants and terms); every utterance of a group is transcribed without a
prompt and with its group's prompt, "Phil, Fort, Churchill, ...". The set's utterances without names
are transcribed likewise, each with one of the set's prompts in turn: a prompt must not hurt speech
that holds none of its words.

Prints, per set, WER and the share of name words recognised (exactly, after asrkit.text's
normalisation) without and with the prompt, and how many utterances the prompt changed (after
normalisation); then the utterances whose name words it fixed or broke. The model decodes as its card
says (tiny.en: beam 5, faster-whisper's fallback). Measuring only: nothing here trains on these sets.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass
from pathlib import Path

from asrkit.audio import load_audio
from asrkit.manifest import Utterance, read_manifest
from asrkit.metrics import score_corpus
from asrkit.models import PromptError, load_model
from asrkit.models.whisper.model import MAX_PROMPT_TOKENS
from asrkit.text import normalize_text

SETS = ("kathleen_dev", "fixtures_dev")
# titles: a full stop after one ends no sentence ("Mr. Thorpe"), and it is no name
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st"}
_TOKEN = re.compile(r"[A-Za-z][\w'-]*|[.!?]")
_PRONOUN_I = re.compile(r"I('\w+)?")


def capitalised(transcript: str) -> list[tuple[str, bool]]:
    """The capitalised words of ``transcript`` as written ("I" and titles aside), each with whether it
    starts a sentence.

    Examples
    --------
    >>> capitalised("Lord, but I'm glad to see you again, Phil. Mr. Thorpe's here.")
    [('Lord', True), ('Phil', False), ("Thorpe's", False)]
    """
    found, start, previous = [], True, ""
    for token in _TOKEN.findall(transcript):
        if token in ".!?":
            if not (token == "." and previous.lower() in ABBREVIATIONS):
                start = True
        else:
            if token[0].isupper() and not _PRONOUN_I.fullmatch(token) and token.lower() not in ABBREVIATIONS:
                found.append((token, start))
            start = False
        previous = token
    return found


def bare(word: str) -> str:
    """A name as a prompt lists it: without a possessive 's."""
    return re.sub(r"'s$", "", word)


def informative(transcript: str) -> bool:
    """Whether capitals can mark names in it: both cases occur."""
    return transcript != transcript.upper() and transcript != transcript.lower()


def vocabulary(utterances: list[Utterance]) -> set[str]:
    """The set's names, lower case: its capitalised words that do not start a sentence."""
    return {
        bare(w).lower()
        for u in utterances
        if informative(u.transcript)
        for w, first in capitalised(u.transcript)
        if not first
    }


def name_words(transcript: str, names: set[str]) -> list[str]:
    """The name words of ``transcript``: capitalised and not starting a sentence, or among ``names``.

    Examples
    --------
    >>> name_words("Pierre's eyes met Tom's. He nodded.", {"pierre"})
    ["Pierre's", "Tom's"]
    """
    return [w for w, first in capitalised(transcript) if not first or bare(w).lower() in names]


@dataclass(frozen=True)
class Group:
    """Utterances transcribed with one prompt."""

    # the prompt: the group's names, each once
    prompt: str
    # utterances holding names, and utterances without names given this prompt too
    with_names: list[Utterance]
    without_names: list[Utterance]


def prompt_of(utterances: list[Utterance], names: set[str]) -> str:
    return ", ".join(dict.fromkeys(bare(w) for u in utterances for w in name_words(u.transcript, names)))


def fits(model, prompt: str) -> bool:
    """Whether the model takes ``prompt`` (its length limit)."""
    try:
        model.with_prompt(prompt)
    except PromptError:
        return False
    return True


def groups_of(model, utterances: list[Utterance], names: set[str]) -> list[Group]:
    """The set's utterances with names, in groups whose prompt the model takes, then those without
    names dealt to the groups in turn."""
    known = [u for u in utterances if informative(u.transcript)]
    named = [u for u in known if name_words(u.transcript, names)]
    plain = [u for u in known if not name_words(u.transcript, names)]
    parts: list[list[Utterance]] = []
    for utt in named:
        if parts and fits(model, prompt_of([*parts[-1], utt], names)):
            parts[-1].append(utt)
        else:
            parts.append([utt])
    groups = [Group(prompt_of(p, names), p, []) for p in parts]
    for i, utt in enumerate(plain if groups else []):
        groups[i % len(groups)].without_names.append(utt)
    return groups


@dataclass(frozen=True)
class Measured:
    """One kind of utterance of one set, transcribed without and with the prompt."""

    references: list[str]
    plain: list[str]
    prompted: list[str]
    # per utterance, its name words after normalisation
    names: list[set[str]]
    utterances: list[Utterance]


def names_right(measured: Measured, hypotheses: list[str]) -> list[tuple[int, int]]:
    """Per utterance, (name words recognised, name words in the reference), each occurrence counted."""
    counts = []
    for s, names in zip(score_corpus(measured.references, hypotheses).utterances, measured.names):
        steps = [step for step in s.alignment if step.reference in names]
        counts.append((sum(step.op == "equal" for step in steps), len(steps)))
    return counts


def transcribe(model, utterances: list[Utterance]) -> list[str]:
    return [t.text for t in model.transcribe_batch([load_audio(u.audio_path) for u in utterances])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="the shared data folder")
    parser.add_argument("--model", default="default", help="a model that takes a prompt (default: %(default)s)")
    parser.add_argument("--sets", nargs="+", default=SETS, help="manifests under splits/ (default: %(default)s)")
    args = parser.parse_args()

    model = load_model(args.model)
    rows, changes = [], []
    began = time.perf_counter()
    for set_name in args.sets:
        utterances = read_manifest(args.data / "splits" / f"{set_name}.tsv")
        names = vocabulary(utterances)
        groups = groups_of(model, utterances, names)
        left_out = sum(not informative(u.transcript) for u in utterances)
        print(
            f"{set_name}: {len(utterances)} utterances, {left_out} in one case throughout left out; "
            f"{len(groups)} prompts of {', '.join(str(len(g.prompt.split(', '))) for g in groups)} names"
        )
        kinds = {"with names": Measured([], [], [], [], []), "without names": Measured([], [], [], [], [])}
        for group in groups:
            prompted = model.with_prompt(group.prompt)
            for kind, members in (("with names", group.with_names), ("without names", group.without_names)):
                if not members:
                    continue
                m = kinds[kind]
                m.references.extend(u.transcript for u in members)
                m.names.extend(
                    {n for w in name_words(u.transcript, names) for n in normalize_text(w).split()} for u in members
                )
                m.plain.extend(transcribe(model, members))
                m.prompted.extend(transcribe(prompted, members))
                m.utterances.extend(members)
        for kind, m in kinds.items():
            if not m.references:
                continue
            wer_plain, wer_prompted = (score_corpus(m.references, h).wer for h in (m.plain, m.prompted))
            right_plain, right_prompted = names_right(m, m.plain), names_right(m, m.prompted)
            changed = sum(normalize_text(a) != normalize_text(b) for a, b in zip(m.plain, m.prompted))
            rows.append(
                (
                    set_name,
                    kind,
                    len(m.references),
                    sum(t for _, t in right_plain),
                    wer_plain,
                    wer_prompted,
                    sum(r for r, _ in right_plain),
                    sum(r for r, _ in right_prompted),
                    changed,
                )
            )
            changes += [
                (set_name, u, a, b, ra, rb)
                for u, a, b, (ra, _), (rb, _) in zip(m.utterances, m.plain, m.prompted, right_plain, right_prompted)
                if ra != rb
            ]
    elapsed = time.perf_counter() - began

    print(f"\nmodel {model.name}; prompts of at most {MAX_PROMPT_TOKENS} tokens; {elapsed:.0f} s in all\n")
    header = (
        f"{'set':<14}{'utterances':<15}{'utts':>5}{'names':>6}   {'WER no prompt':>13}{'prompt':>8}"
        f"   {'names right no prompt':>21}{'prompt':>8}   {'changed':>7}"
    )
    print(header)
    print("-" * len(header))
    for set_name, kind, n, total, wer_a, wer_b, right_a, right_b, changed in rows:
        share = lambda r: f"{100 * r / total:.1f}%" if total else "-"
        print(
            f"{set_name:<14}{kind:<15}{n:>5}{total:>6}   {100 * wer_a:>12.2f}%{100 * wer_b:>7.2f}%"
            f"   {share(right_a):>21}{share(right_b):>8}   {changed:>7}"
        )
    print("\nchanged: utterances whose words the prompt changed (after normalisation)")
    print(f"\nutterances whose name words the prompt fixed or broke ({len(changes)}):")
    for set_name, u, a, b, ra, rb in changes:
        print(
            f"  {set_name} {u.audio_path.name}: {rb - ra:+d} name word{'s' if abs(rb - ra) > 1 else ''}\n"
            f"    reference: {u.transcript}\n    no prompt: {a}\n    prompt:    {b}"
        )


if __name__ == "__main__":
    main()

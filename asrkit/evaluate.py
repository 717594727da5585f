"""Batch evaluation: run a model over a manifest, cache its hypotheses and score them."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from asrkit.audio import DEFAULT_LIMITS, AudioError, AudioLimits, load_audio
from asrkit.config import Config
from asrkit.contracts import CARD_FILE, GENERAL_KEY, ASRModel, ModelCard, Span, Transcript
from asrkit.manifest import MAX_NAMED, ManifestError, ManifestWarning, Utterance
from asrkit.metrics import NORMALIZER_NAME, CorpusScore, Interval, UtteranceScore, bootstrap_interval, score_corpus
from asrkit.text import normalize_text


class NothingToScoreError(ManifestError):
    """No utterance to score: none were given, or none has a reference with words in it."""


@dataclass(frozen=True)
class EvalRow:
    """One utterance's result."""

    utterance: Utterance
    hypothesis: str
    score: UtteranceScore
    # decoded duration in seconds (0.0 when the audio could not be read)
    duration_s: float
    # why the audio could not be read; such an utterance is scored with an empty hypothesis
    error: str | None = None
    # model seconds for this utterance: its batch's time shared out by duration
    compute_s: float = 0.0
    # word times from the model, where it gives them
    words: tuple[Span, ...] = ()

    @property
    def rtf(self) -> float:
        return self.compute_s / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True)
class Outcome:
    """What running the model on one utterance gave, before scoring."""

    # the model's transcript; None when the audio could not be read
    transcript: Transcript | None
    # model seconds: the batch's time shared out by duration
    compute_s: float = 0.0
    # why the audio could not be read
    error: str | None = None


@dataclass(frozen=True)
class EvalReport:
    """A model's results on a list of utterances."""

    model: str
    rows: tuple[EvalRow, ...]
    corpus: CorpusScore
    # seconds spent in the model (audio decoding excluded), as first measured for cached rows
    compute_s: float
    normalizer: str = NORMALIZER_NAME
    # rows whose hypothesis came from the cache rather than from running the model now
    cached: int = 0

    @property
    def audio_s(self) -> float:
        return sum(r.duration_s for r in self.rows)

    @property
    def rtf(self) -> float:
        """Real-time factor: model seconds per second of audio."""
        return self.compute_s / self.audio_s if self.audio_s else 0.0

    @property
    def failed(self) -> tuple[EvalRow, ...]:
        return tuple(r for r in self.rows if r.error is not None)

    @cached_property
    def wer_interval(self) -> Interval:
        """95% bootstrap confidence interval of the corpus WER (utterances resampled)."""
        return bootstrap_interval([s.words for s in self.corpus.utterances])

    @cached_property
    def cer_interval(self) -> Interval:
        return bootstrap_interval([s.chars for s in self.corpus.utterances])


class HypothesisCache:
    """A model's transcripts of audio files, kept in one JSON-lines file per model version.

    An entry is found again only for the same file (path, size and modification time) and the same
    model: the file name holds a digest of the model folder's files, so retraining starts afresh.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted run

    @classmethod
    def for_model(cls, model_dir: str | Path, *, cache_dir: str | Path | None = None) -> HypothesisCache:
        """The cache of the model in ``model_dir``: its name plus a digest of its files, in ``cache_dir``
        (default ``Config.from_env().paths.cache_dir``, ``ASR_CACHE_DIR``)."""
        folder = Path(cache_dir) if cache_dir is not None else Config.from_env().paths.cache_dir
        return cls(folder / f"{model_identity(model_dir)}.jsonl")

    @staticmethod
    def key(audio_path: Path) -> str:
        stat = audio_path.stat()
        return f"{audio_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def get(self, audio_path: Path) -> tuple[Transcript, float] | None:
        """The cached transcript and the model seconds it took, or None."""
        try:
            entry = self._entries.get(self.key(audio_path))
        except OSError:
            return None
        if entry is None:
            return None
        words = tuple(Span(t, s, e) for t, s, e in entry["words"])
        return Transcript(text=entry["text"], duration_s=entry["duration_s"], words=words, model=entry["model"]), entry[
            "compute_s"
        ]

    def put(self, audio_path: Path, transcript: Transcript, compute_s: float) -> None:
        entry = {
            "key": self.key(audio_path),
            "text": transcript.text,
            "duration_s": transcript.duration_s,
            "words": [[w.text, w.start, w.end] for w in transcript.words],
            "model": transcript.model,
            "compute_s": compute_s,
        }
        self._entries[entry["key"]] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # appended one line at a time, so an interrupted run keeps what it finished
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def model_identity(model_dir: str | Path) -> str:
    """The folder's name and a digest of its files (sizes and times, the card without its metrics):
    it changes when the model is retrained, not when results are recorded in its card."""
    model_dir = Path(model_dir)
    digest = hashlib.sha1()
    for f in sorted(model_dir.rglob("*")):
        if f.is_file():
            stat = f.stat()
            content = _card_without_metrics(f) if f.name == CARD_FILE else f"{stat.st_size}:{stat.st_mtime_ns}"
            digest.update(f"{f.relative_to(model_dir)}={content};".encode())
    return f"{model_dir.name}-{digest.hexdigest()[:16]}"


def _card_without_metrics(card_file: Path) -> str:
    try:
        card = json.loads(card_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "unreadable"
    card.pop("metrics", None)
    return json.dumps(card, sort_keys=True)


def scorable(utterances: Sequence[Utterance]) -> list[int]:
    """Positions of the utterances that can be scored: those whose reference has words once normalised.

    WER counts errors per reference word, so an empty reference (``""``, or only punctuation) has no
    rate to give (jiwer 4 would give each hallucinated word 100%, and jiwer 3 refused): such utterances
    are left out with a :class:`~asrkit.manifest.ManifestWarning` that names them. Raises
    :class:`NothingToScoreError` when none is left.
    """
    has_words = [bool(normalize_text(u.transcript)) for u in utterances]
    kept = [i for i, keep in enumerate(has_words) if keep]
    if not kept:
        raise NothingToScoreError(
            "nothing to score: no utterances given"
            if not utterances
            else f"nothing to score: all {len(utterances)} utterance(s) have an empty reference"
        )
    if len(kept) < len(utterances):
        empty = [str(u.audio_path) for u, keep in zip(utterances, has_words) if not keep]
        more = f" (and {len(empty) - MAX_NAMED} more)" if len(empty) > MAX_NAMED else ""
        warnings.warn(
            f"{len(empty)} utterance(s) with an empty reference are left out of the WER: "
            f"{', '.join(empty[:MAX_NAMED])}{more}",
            ManifestWarning,
            stacklevel=3,
        )
    return kept


def card_metrics(report: EvalReport, *, command: str, general: bool = False) -> dict[str, Any]:
    """What a model card's ``metrics`` keeps of one evaluated set: WER with its 95% interval, CER,
    utterances, RTF, whether the set is general speech (:data:`~asrkit.contracts.GENERAL_KEY`), and the
    command that measures it again."""
    interval = report.wer_interval
    return {
        "wer": round(report.corpus.wer, 4),
        "wer_95": [round(interval.low, 4), round(interval.high, 4)],
        "cer": round(report.corpus.cer, 4),
        "utterances": len(report.rows),
        "rtf": round(report.rtf, 4),
        **({GENERAL_KEY: True} if general else {}),
        "command": command,
    }


def record_in_card(report: EvalReport, folder: str | Path, *, set_name: str, command: str) -> Path:
    """Store ``report``'s figures in the card of the model in ``folder`` under ``set_name``; a set the card
    already marks as general speech stays marked (the model's headline WER depends on it). The card's path."""
    card = ModelCard.load(folder)
    earlier = card.metrics.get(set_name)
    general = isinstance(earlier, dict) and earlier.get(GENERAL_KEY) is True
    card.metrics[set_name] = card_metrics(report, command=command, general=general)
    return card.save(folder)


def cached_outcomes(utterances: Sequence[Utterance], cache: HypothesisCache | None) -> list[Outcome | None]:
    """Each utterance's outcome as the cache holds it, or None where it must be transcribed."""
    hits = [cache.get(u.audio_path) if cache is not None else None for u in utterances]
    return [None if hit is None else Outcome(*hit) for hit in hits]


def evaluate(
    model: ASRModel,
    utterances: Sequence[Utterance],
    *,
    batch_size: int = 8,
    limits: AudioLimits = DEFAULT_LIMITS,
    cache: HypothesisCache | None = None,
    progress: bool = True,
) -> EvalReport:
    """Transcribe every utterance in batches and score the hypotheses.

    An utterance whose audio cannot be read is kept, scored as all deletions, and its error recorded,
    so a broken file can never make a WER look better. With a ``cache``, utterances transcribed before
    by the same model are not run again. Utterances with an empty reference are left out, see
    :func:`scorable`.
    """
    utterances = [utterances[i] for i in scorable(utterances)]
    n = len(utterances)
    outcomes = cached_outcomes(utterances, cache)
    todo = [i for i, o in enumerate(outcomes) if o is None]
    cached = n - len(todo)
    bar = tqdm(total=n, initial=cached, unit="utt", desc=f"eval {model.name}", disable=not progress)
    batches = transcribe_batches(model, [utterances[i] for i in todo], batch_size=batch_size, limits=limits)
    for start, batch in zip(range(0, len(todo), batch_size), batches):
        for i, outcome in zip(todo[start : start + batch_size], batch):
            outcomes[i] = outcome
            if cache is not None and outcome.transcript is not None:
                cache.put(utterances[i].audio_path, outcome.transcript, outcome.compute_s)
        bar.update(len(batch))
    bar.close()
    return build_report(model.name, utterances, outcomes, cached=cached)


def transcribe_batches(
    model: ASRModel, utterances: Sequence[Utterance], *, batch_size: int = 8, limits: AudioLimits = DEFAULT_LIMITS
) -> Iterator[list[Outcome]]:
    """Run the model over the utterances ``batch_size`` at a time: one list of outcomes per batch, in
    order. An unreadable file gives an outcome with its error instead of stopping the run."""
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        outcomes: list[Outcome | None] = [None] * len(chunk)
        readable, audios = [], []
        for j, utt in enumerate(chunk):
            try:
                audios.append(load_audio(utt.audio_path, limits=limits))
                readable.append(j)
            except AudioError as err:
                outcomes[j] = Outcome(None, error=str(err))
        began = time.perf_counter()
        results = model.transcribe_batch(audios) if audios else []
        spent = time.perf_counter() - began
        total_s = sum(t.duration_s for t in results) or 1.0
        for j, transcript in zip(readable, results):
            outcomes[j] = Outcome(transcript, compute_s=spent * transcript.duration_s / total_s)
        yield outcomes


def build_report(
    model_name: str, utterances: Sequence[Utterance], outcomes: Sequence[Outcome], *, cached: int = 0
) -> EvalReport:
    """Score the outcomes against the utterances' references: the one place a report is made, so every
    engine (in process, or shards on a cluster) gives the same rows and totals for the same hypotheses.
    Utterances with an empty reference are left out, see :func:`scorable`."""
    if len(outcomes) != len(utterances):
        raise ValueError(f"{len(outcomes)} outcomes for {len(utterances)} utterances")
    kept = scorable(utterances)
    utterances, outcomes = [utterances[i] for i in kept], [outcomes[i] for i in kept]
    hypotheses = [o.transcript.text if o.transcript is not None else "" for o in outcomes]
    corpus = score_corpus([u.transcript for u in utterances], hypotheses)
    rows = tuple(
        EvalRow(
            utterance=u,
            hypothesis=h,
            score=s,
            duration_s=o.transcript.duration_s if o.transcript is not None else 0.0,
            error=o.error,
            compute_s=o.compute_s,
            words=o.transcript.words if o.transcript is not None else (),
        )
        for u, h, s, o in zip(utterances, hypotheses, corpus.utterances, outcomes)
    )
    return EvalReport(
        model=model_name, rows=rows, corpus=corpus, compute_s=sum(o.compute_s for o in outcomes), cached=cached
    )


def format_report(report: EvalReport, *, width: int = 60) -> str:
    """A plain-text table of every utterance, then the corpus totals."""

    def clip(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    id_width = max((len(row.utterance.id) for row in report.rows), default=9)
    lines = [f"{'utterance':<{id_width}} {'dur_s':>6} {'WER%':>6} {'CER%':>6}  reference | hypothesis"]
    for row in report.rows:
        hyp = f"[unreadable: {row.error}]" if row.error else row.score.hypothesis
        lines.append(
            f"{row.utterance.id:<{id_width}} {row.duration_s:>6.2f} {100 * row.score.wer:>6.1f} "
            f"{100 * row.score.cer:>6.1f}  {clip(row.score.reference)} | {clip(hyp)}"
        )
    w, c = report.corpus.words, report.corpus.chars
    wi = report.wer_interval
    lines += [
        "",
        f"model {report.model}: {len(report.rows)} utterances, {report.audio_s:.1f} s of audio, "
        f"RTF {report.rtf:.3f}, text normalised by {report.normalizer}"
        + (f"; {report.cached} hypotheses from the cache" if report.cached else ""),
        f"corpus WER {100 * report.corpus.wer:.2f}% [{100 * wi.low:.2f}, {100 * wi.high:.2f}] "
        f"(S={w.substitutions} D={w.deletions} I={w.insertions} of {w.reference_length} words), "
        f"CER {100 * report.corpus.cer:.2f}% ({c.errors} of {c.reference_length} characters)",
        f"[low, high]: {100 * wi.confidence:.0f}% bootstrap interval over utterances",
    ]
    if report.failed:
        lines.append(f"{len(report.failed)} utterance(s) could not be read and count as all deletions")
    return "\n".join(lines)

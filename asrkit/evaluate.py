"""Batch evaluation: run a model over a manifest and score it against the references."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from asrkit.audio import DEFAULT_LIMITS, AudioError, AudioLimits, load_audio
from asrkit.manifest import Utterance
from asrkit.metrics import NORMALIZER_NAME, CorpusScore, UtteranceScore, score_corpus
from asrkit.models.base import ASRModel


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


@dataclass(frozen=True)
class EvalReport:
    """A model's results on a list of utterances."""

    model: str
    rows: tuple[EvalRow, ...]
    corpus: CorpusScore
    # seconds spent in the model (audio decoding excluded)
    compute_s: float
    normalizer: str = NORMALIZER_NAME

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


def evaluate(
    model: ASRModel,
    utterances: Sequence[Utterance],
    *,
    batch_size: int = 8,
    limits: AudioLimits = DEFAULT_LIMITS,
    progress: bool = True,
) -> EvalReport:
    """Transcribe every utterance in batches and score the hypotheses.

    An utterance whose audio cannot be read is kept, scored as all deletions, and its error recorded,
    so a broken file can never make a WER look better.
    """
    hypotheses = [""] * len(utterances)
    durations = [0.0] * len(utterances)
    errors: list[str | None] = [None] * len(utterances)
    compute_s = 0.0
    bar = tqdm(total=len(utterances), unit="utt", desc=f"eval {model.name}", disable=not progress)
    for start in range(0, len(utterances), batch_size):
        batch, audios = [], []
        for i in range(start, min(start + batch_size, len(utterances))):
            try:
                audios.append(load_audio(utterances[i].audio_path, limits=limits))
                batch.append(i)
            except AudioError as err:
                errors[i] = str(err)
        began = time.perf_counter()
        transcripts = model.transcribe_batch(audios) if audios else []
        compute_s += time.perf_counter() - began
        for i, transcript in zip(batch, transcripts):
            hypotheses[i] = transcript.text
            durations[i] = transcript.duration_s
        bar.update(min(batch_size, len(utterances) - start))
    bar.close()
    corpus = score_corpus([u.transcript for u in utterances], hypotheses)
    rows = tuple(
        EvalRow(u, h, s, d, e)
        for u, h, s, d, e in zip(utterances, hypotheses, corpus.utterances, durations, errors)
    )
    return EvalReport(model=model.name, rows=rows, corpus=corpus, compute_s=compute_s)


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
    lines += [
        "",
        f"model {report.model}: {len(report.rows)} utterances, {report.audio_s:.1f} s of audio, "
        f"RTF {report.rtf:.3f}, text normalised by {report.normalizer}",
        f"corpus WER {100 * report.corpus.wer:.2f}% (S={w.substitutions} D={w.deletions} "
        f"I={w.insertions} of {w.reference_length} words), CER {100 * report.corpus.cer:.2f}% "
        f"({c.errors} of {c.reference_length} characters)",
    ]
    if report.failed:
        lines.append(f"{len(report.failed)} utterance(s) could not be read and count as all deletions")
    return "\n".join(lines)

"""Live-transcription metrics from a session's emission log, and a file streamed as if live.

For each word of the final transcript, two latencies, measured from the word's end in the audio to
the moment a live listener would see it (the emission's ``audio_s + lag_s``):

* **shown**: the first emission that shows the word as it ends up (same text, overlapping in time),
  partial or committed;
* **committed**: the emission that commits it.

Flicker is the stream's ``revisions`` (shown partial words later changed or taken back) per final
word; RTF is the time spent in the model per second of audio.
"""

from __future__ import annotations

import bisect
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from asrkit.audio import SAMPLE_RATE
from asrkit.contracts import Span
from asrkit.stream_worker import StreamWorker
from asrkit.streaming import Emission, Session, Stream, StreamResult

# Queued audio a real-time simulation lets the model fall behind by, seconds.
REALTIME_BACKLOG_S = 10.0


@dataclass(frozen=True)
class StreamMetrics:
    """How a session went."""

    # seconds of audio streamed
    audio_s: float
    # seconds spent inside the stream (features, model, decoding, commit), on the feeding thread
    compute_s: float
    # words in the final transcript
    n_words: int
    # per final word, seconds from its end to when it was first shown as it ends up
    shown_latency_s: tuple[float, ...]
    # per final word, seconds from its end to when it was committed
    commit_latency_s: tuple[float, ...]
    # shown partial words later changed or taken back
    revisions: int

    @property
    def rtf(self) -> float:
        """Real-time factor: compute seconds per audio second (below 1 keeps up)."""
        return self.compute_s / self.audio_s if self.audio_s else 0.0

    @property
    def flicker(self) -> float:
        """Revisions per final word."""
        return self.revisions / max(self.n_words, 1)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), NaN for no values.

    Examples
    --------
    >>> percentile([0.1, 0.2, 0.3, 0.4], 50)
    0.25
    """
    return float(np.percentile(values, q)) if len(values) else float("nan")


def word_latencies(emissions: Sequence[Emission], words: Sequence[Span]) -> tuple[list[float], list[float]]:
    """Shown and committed latency of each final word, in the order of ``words``.

    Parameters
    ----------
    emissions : sequence of Emission
        A session's log, in order.
    words : sequence of Span
        The session's final words (session times), in time order.
    """
    starts = [w.start for w in words]
    shown: dict[int, float] = {}
    committed: dict[int, float] = {}
    for emission in emissions:
        seen_at = emission.audio_s + emission.lag_s
        for span in emission.words:
            # final words overlapping this span in time, with the same text
            i = bisect.bisect_left(starts, span.end)
            while i > 0 and words[i - 1].end > span.start - 1e-9:
                i -= 1
                if words[i].text != span.text:
                    continue
                shown.setdefault(i, seen_at)
                if emission.committed and words[i] == span:
                    committed.setdefault(i, seen_at)
    return (
        [shown[i] - words[i].end for i in sorted(shown)],
        [committed[i] - words[i].end for i in sorted(committed)],
    )


def measure(session: Session, *, revisions: int) -> StreamMetrics:
    """Metrics of a finished, recording session; ``revisions`` from its stream."""
    if session.emissions is None:
        raise ValueError("the session did not record emissions: create it with Session(stream, record=True)")
    shown, committed = word_latencies(session.emissions, session.words)
    return StreamMetrics(
        audio_s=session.audio_s,
        compute_s=session.compute_s,
        n_words=len(session.words),
        shown_latency_s=tuple(shown),
        commit_latency_s=tuple(committed),
        revisions=revisions,
    )


def stream_audio(
    stream: Stream,
    audio: np.ndarray,
    *,
    chunk_s: float,
    realtime: bool = False,
    on_result: Callable[[StreamResult], None] | None = None,
) -> Session:
    """Stream 16 kHz audio, shape (n,), in chunks of ``chunk_s`` seconds; return the finished session.

    ``realtime`` paces the chunks at the speed of speech through a :class:`StreamWorker`, as a
    microphone would deliver them (emission lag then includes queueing; a model slower than real time
    loses the oldest queued audio beyond ``REALTIME_BACKLOG_S``, counted in ``session.skipped_s``);
    otherwise they are fed as fast as the model takes them, on this thread. ``on_result`` sees every
    new result.
    """
    session = Session(stream, record=True)
    size = max(1, round(chunk_s * SAMPLE_RATE))
    if realtime:
        backlog = max(REALTIME_BACKLOG_S, 2 * chunk_s)
        with StreamWorker(session, max_backlog_s=backlog, when_full="drop_oldest", on_result=on_result) as worker:
            start = time.perf_counter()
            for i, begin in enumerate(range(0, len(audio), size)):
                time.sleep(max(0.0, start + i * chunk_s - time.perf_counter()))
                worker.push(SAMPLE_RATE, audio[begin : begin + size])
        return session
    shown = session.result()
    for begin in range(0, len(audio), size):
        session.accept_waveform(SAMPLE_RATE, audio[begin : begin + size])
        if on_result is not None and (current := session.result()) != shown:
            on_result(current)
            shown = current
    session.finish()
    if on_result is not None:
        on_result(session.result())
    return session


def summary(metrics: StreamMetrics) -> str:
    """One paragraph of the figures, for people."""
    lines = [
        f"audio {metrics.audio_s:.2f} s, compute {metrics.compute_s:.2f} s, RTF {metrics.rtf:.3f}",
        f"words {metrics.n_words}, revisions {metrics.revisions} (flicker {metrics.flicker:.2f} per word)",
    ]
    for name, values in (("shown", metrics.shown_latency_s), ("committed", metrics.commit_latency_s)):
        if values:
            lines.append(
                f"{name} latency: median {statistics.median(values):.2f} s, p90 {percentile(values, 90):.2f} s"
            )
    return "\n".join(lines)

"""A background thread between an audio source and a :class:`~asrkit.streaming.Session`.

The source (a browser microphone callback, a socket reader) calls :meth:`StreamWorker.push`, which
checks the chunk and queues it without waiting for the model; the worker thread feeds the session.
The queue is bounded in seconds of audio. When the model falls behind, ``backlog_s`` says by how
much, and a push that would overfill the queue is refused with :class:`BacklogFullError` (the
caller decides: wait, tell the user, drop) or, under ``when_full="drop_oldest"``, makes room by
dropping the oldest queued audio, counted in ``dropped_s``. Nothing grows without bound and nothing
is lost silently.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from asrkit.audio import DEFAULT_LIMITS, AudioError, AudioLimits, SampleRateError, to_mono
from asrkit.errors import AsrkitError
from asrkit.streaming import Session, StreamResult

# What push() does when the queue is full.
WHEN_FULL = ("refuse", "drop_oldest")
# Errors a worker remembers, the latest.
MAX_ERRORS = 20


class BacklogFullError(AsrkitError, RuntimeError):
    """The worker is too far behind the audio source to queue another chunk."""


class StreamWorker:
    """Feeds a session from a bounded queue on its own thread.

    Parameters
    ----------
    session : Session
        What the audio goes to; only the worker thread touches it once started.
    max_backlog_s : float
        Seconds of queued audio at most.
    when_full : {"refuse", "drop_oldest"}
        ``push`` of a chunk that does not fit: raise :class:`BacklogFullError`, or drop the oldest
        queued chunks to make room (the session then ends the utterance at the gap).
    on_result : callable, optional
        Called on the worker thread with each new :class:`StreamResult` of the session; it must not
        block for long, and must hand work to a UI thread itself if the UI needs that.
    limits : AudioLimits
        Checks applied to each pushed chunk.

    Usage
    -----
    ::

        worker = StreamWorker(Session(model.create_stream()), max_backlog_s=5.0)
        worker.start()
        worker.push(48000, chunk)  # from the microphone callback; returns at once
        worker.result().text, worker.backlog_s
        final = worker.close()
    """

    def __init__(
        self,
        session: Session,
        *,
        max_backlog_s: float = 5.0,
        when_full: str = "refuse",
        on_result: Callable[[StreamResult], None] | None = None,
        limits: AudioLimits = DEFAULT_LIMITS,
    ) -> None:
        if when_full not in WHEN_FULL:
            raise ValueError(f"when_full must be one of {WHEN_FULL}, got {when_full!r}")
        if not max_backlog_s > 0:
            raise ValueError(f"max_backlog_s must be positive, got {max_backlog_s}")
        self.session = session
        self.max_backlog_s = max_backlog_s
        self.when_full = when_full
        self.on_result = on_result
        self.limits = limits
        # audio dropped to make room, seconds, and chunks refused
        self.dropped_s = 0.0
        self.refused = 0
        # what the session raised on the worker thread, latest last (at most MAX_ERRORS): AudioErrors
        # push did not catch, and model errors; the chunk is lost, the session goes on
        self.errors: deque[Exception] = deque(maxlen=MAX_ERRORS)
        # (arrival time, sample rate, mono samples, seconds dropped just before this chunk)
        self._queue: deque[tuple[float, int, np.ndarray, float]] = deque()
        # queued samples, at the stream's one rate: an integer count cannot drift as floats would
        self._backlog = 0
        self._gap_s = 0.0
        self._rate: int | None = None
        self._closing = False
        self._latest = StreamResult("", "")
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="asrkit-stream-worker", daemon=True)

    def start(self) -> StreamWorker:
        self._thread.start()
        return self

    def __enter__(self) -> StreamWorker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def backlog_s(self) -> float:
        """Seconds of audio queued or being processed."""
        with self._ready:
            return self._backlog / self._rate if self._rate else 0.0

    def push(self, sample_rate: int, samples: np.ndarray) -> None:
        """Queue a chunk, shape (n,) or (n, channels), int or float; returns without waiting for the model.

        Raises
        ------
        AudioError
            The chunk is malformed (checked here, on the caller's thread); nothing was queued.
        BacklogFullError
            ``when_full="refuse"`` and the chunk would take the backlog over ``max_backlog_s``.
        """
        arrival = time.perf_counter()
        mono = to_mono(samples, sample_rate=sample_rate, limits=self.limits)
        with self._ready:
            if self._closing:
                raise RuntimeError("this worker is closed")
            if self._rate is not None and sample_rate != self._rate:
                raise SampleRateError(f"<array>: chunk at {sample_rate} Hz in a stream that started at {self._rate} Hz")
            limit = self.max_backlog_s * sample_rate
            if self._backlog + len(mono) > limit:
                if self.when_full == "refuse" or len(mono) > limit or not self._queue:
                    self.refused += 1
                    raise BacklogFullError(
                        f"the model is {self._backlog / sample_rate:.2f} s of audio behind (limit "
                        f"{self.max_backlog_s:g} s): chunk of {len(mono) / sample_rate:.3f} s refused; "
                        "slow the source or raise max_backlog_s"
                    )
                while self._queue and self._backlog + len(mono) > limit:
                    _, rate, dropped, gap = self._queue.popleft()
                    self._backlog -= len(dropped)
                    self._gap_s += gap + len(dropped) / rate
                    self.dropped_s += len(dropped) / rate
                if self._backlog + len(mono) > limit:
                    # what is left is the chunk the model is working on: it cannot be dropped
                    self.refused += 1
                    raise BacklogFullError(
                        f"the model is still on {self._backlog / sample_rate:.2f} s of audio (limit "
                        f"{self.max_backlog_s:g} s): chunk of {len(mono) / sample_rate:.3f} s refused"
                    )
            self._rate = int(sample_rate)
            self._queue.append((arrival, int(sample_rate), mono, self._gap_s))
            self._gap_s = 0.0
            self._backlog += len(mono)
            self._ready.notify()

    def result(self) -> StreamResult:
        """The session's latest result; never waits for inference."""
        return self._latest

    def close(self, timeout: float | None = None) -> StreamResult:
        """Take no more audio, let the queue drain, finish the session; its final result."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the worker still had {self.backlog_s:.2f} s of audio to process")
        else:
            self._finish()
        return self._latest

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closing:
                    self._ready.wait()
                if not self._queue:
                    break
                arrival, rate, mono, gap = self._queue.popleft()
            if gap:
                self.session.skip(gap)
            try:
                self.session.accept_waveform(rate, mono, arrival=arrival)
                self._publish()
            except AudioError as err:
                # a refused chunk leaves the stream as it was
                self.errors.append(err)
            except Exception as err:  # noqa: BLE001 - a model error must not kill the worker thread
                self.errors.append(err)
                self._recover(len(mono) / rate)
            with self._ready:
                self._backlog -= len(mono)
        self._finish()

    def _recover(self, lost_s: float) -> None:
        """After an error in the session on a chunk of ``lost_s`` seconds: end the utterance it was in
        (its state may be half-updated) and count the chunk as skipped; if ending fails too, start the
        next utterance afresh."""
        try:
            self.session.skip(lost_s)
        except Exception as err:  # noqa: BLE001
            self.errors.append(err)
            self.session.stream.reset()
        self._publish()

    def _finish(self) -> None:
        with self._ready:
            gap, self._gap_s = self._gap_s, 0.0
        try:
            if gap:
                self.session.skip(gap)
            self.session.finish()
        except Exception as err:  # noqa: BLE001 - the words so far still stand
            self.errors.append(err)
            self.session.stream.reset()
        self._publish()

    def _publish(self) -> None:
        self._latest = self.session.result()
        if self.on_result is not None:
            self.on_result(self._latest)

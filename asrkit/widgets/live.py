"""Live transcription in the page: microphone in; transcript, scrolling spectrogram and status out.

Three threads share the work, and none of them is the widget's message handler:

* the kernel's message thread receives each chunk from the :class:`~.microphone.Microphone` and
  only pushes it into a :class:`~asrkit.stream_worker.StreamWorker`'s bounded queue (it never waits
  for the model);
* the worker thread runs the model on the :class:`~asrkit.streaming.Session`;
* a refresh thread redraws the views at most ``refresh_hz`` times a second (spectrogram frames,
  committed and partial text, RTF, latency, backlog), so a fast model cannot flood the page.

Committed words are shown dark and the partial, which may still change, pale and italic; "copy" puts the
whole transcript on the clipboard, "clear" starts it afresh, and the links save it as text or SRT. Words to
expect (names, terms) typed in "Expected words" prompt the model, when it takes a prompt; typed
mid-recording, they apply as a new model would: the session so far is finished and a new one starts.
"""

from __future__ import annotations

import html
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as w

from asrkit.audio import DEFAULT_LIMITS, AudioError, AudioLimits
from asrkit.contracts import ASRModel, Span, Transcript
from asrkit.stream_worker import BacklogFullError, StreamWorker
from asrkit.streaming import Session, StreamResult
from asrkit.widgets.copy import CopyButton
from asrkit.widgets.file_mode import DOWNLOADS, download_links
from asrkit.widgets.microphone import CHUNK_MS, Chunk, Microphone
from asrkit.widgets.prompt import PromptField
from asrkit.widgets.spectrogram import WINDOW_S, LiveSpectrogram, frequency_axis_html, time_axis_html

# Committed text shown at most, characters: the view keeps the end of a long session (the whole
# text stays in ``LiveTranscriber.text()``).
SHOWN_CHARS = 2000
# Seconds of queued audio under which a stream counts as keeping up (a few chunks in flight).
KEEPING_UP_BACKLOG_S = 1.0
# Chunks waiting for the spectrogram at most (the refresh thread takes them several times a second).
PENDING_CHUNKS = 100
# What the transcript can be saved as: the file tab's text and SRT downloads.
LIVE_DOWNLOADS = tuple(d for d in DOWNLOADS if d[1] in ("text", "srt"))
# The spectrogram is stretched to at least this height on a narrow page, so that its bands and labels stay apart.
MIN_PICTURE_PX = 120
# Least space between two words under the spectrogram, as a fraction of its width.
WORD_GAP = 0.004
# Width of the frequency labels' column beside the spectrogram; the word strip and time axis under the
# picture are indented by it, so that their times line up with the picture's.
AXIS_WIDTH = "3.8em"
STYLE = f"""<style>
.asrkit-transcript{{box-sizing:border-box;font-size:17px;line-height:1.5;min-height:4.5em;max-height:18em;
  overflow-y:auto;padding:8px 10px;border:1px solid #ddd;border-radius:4px;background:#fff;white-space:pre-wrap;
  overflow-wrap:anywhere}}
.asrkit-committed{{color:#111}} .asrkit-partial{{color:#888;font-style:italic}}
.asrkit-status{{font-size:13px;color:#444}}
.asrkit-problem{{font-size:13px;color:#a12a1c}}
.asrkit-spectrogram{{image-rendering:pixelated;min-width:0;min-height:{MIN_PICTURE_PX}px}}
.asrkit-under-picture{{margin-left:{AXIS_WIDTH};width:calc(100% - {AXIS_WIDTH});max-width:1000px}}
.asrkit-under-picture.widget-html,.asrkit-axis-frequency-box.widget-html{{height:auto}}
.asrkit-words,.asrkit-axis-time{{position:relative;height:1.5em;line-height:1.5em;width:100%;overflow:hidden;
  font-size:13px}}
.asrkit-axis-time{{height:1.4em;line-height:1.4em;font-size:11px;color:#666;border-top:1px solid #bbb}}
.asrkit-words span,.asrkit-axis-time span{{position:absolute;top:0;white-space:nowrap}}
.asrkit-words span{{overflow:hidden;text-overflow:ellipsis}}
.asrkit-axis-frequency-box.widget-html{{align-self:stretch;margin:0}}
.asrkit-axis-frequency-box .widget-html-content{{height:100%;line-height:normal}}
.asrkit-axis-frequency{{position:relative;height:100%;width:{AXIS_WIDTH};font-size:11px;color:#666}}
.asrkit-axis-frequency span{{position:absolute;right:4px;transform:translateY(50%);white-space:nowrap}}
.asrkit-axis-frequency span[style^="top"]{{transform:none}}
.asrkit-status-more{{display:inline-block;width:1.2em;height:1.2em;line-height:1.2em;border-radius:50%;
  text-align:center;font-size:11px;background:#ddd;color:#333;cursor:help}}
</style>"""


@dataclass(frozen=True)
class LiveOptions:
    """How the live view streams and redraws."""

    # milliseconds of audio per chunk the browser sends
    chunk_ms: int = CHUNK_MS
    # seconds of audio the model may fall behind by; beyond it the oldest queued audio is dropped (and counted)
    max_backlog_s: float = 5.0
    # redraws of transcript, spectrogram and status per second at most
    refresh_hz: float = 4.0
    # seconds of scrolling spectrogram
    spectrogram_s: float = WINDOW_S

    def __post_init__(self) -> None:
        if not self.refresh_hz > 0:
            raise ValueError(f"refresh_hz must be positive, got {self.refresh_hz}")


class LiveRun:
    """One session on one model: its worker, and the latency of what it has processed.

    Latency is measured from a chunk's arrival in the kernel to the moment the worker has run the
    model on it (queueing plus inference): what a user waits, on top of the browser-to-kernel trip.
    """

    def __init__(self, model: ASRModel, *, max_backlog_s: float, limits: AudioLimits, begins_at_s: float = 0.0) -> None:
        self.model_name = model.name
        # seconds of audio the view had received before this session's first chunk: session times
        # plus this are times on the spectrogram's clock
        self.begins_at_s = begins_at_s
        self.session = Session(model.create_stream(limits=limits))
        self.worker = StreamWorker(
            self.session, max_backlog_s=max_backlog_s, when_full="drop_oldest", on_result=self._processed, limits=limits
        )
        # (session seconds at the end of a pushed chunk, its arrival time), oldest first
        self._arrivals: deque[tuple[float, float]] = deque()
        self._pushed_s = 0.0
        # seconds from arrival to processed, of the latest chunk the model has finished
        self.latency_s = math.nan
        self.max_backlog_s = 0.0
        self.worker.start()

    def push(self, chunk: Chunk) -> None:
        """Queue a chunk (see :meth:`StreamWorker.push`, whose errors it raises)."""
        arrival = time.perf_counter()
        self.worker.push(chunk.sample_rate, chunk.samples)
        self._pushed_s += len(chunk.samples) / chunk.sample_rate
        self._arrivals.append((self._pushed_s, arrival))
        self.max_backlog_s = max(self.max_backlog_s, self.worker.backlog_s)

    def _processed(self, _result: StreamResult) -> None:
        done_s, latest = self.session.audio_s + 1e-6, None
        while self._arrivals and self._arrivals[0][0] <= done_s:
            latest = self._arrivals.popleft()[1]
        if latest is not None:
            self.latency_s = time.perf_counter() - latest

    @property
    def rtf(self) -> float:
        return self.session.compute_s / self.session.audio_s if self.session.audio_s else math.nan

    @property
    def _pace(self):
        """The recogniser's ``status`` where it reports one (Whisper's StreamStatus), else None."""
        return getattr(getattr(self.session.stream, "recognizer", None), "status", None)

    @property
    def decode_interval_s(self) -> float | None:
        """Seconds of audio between the model's decoding passes, for models that re-decode (Whisper)."""
        status = self._pace
        return None if status is None else status.interval_s

    @property
    def keeping_up(self) -> bool:
        """No audio lost, little queued, and no slowing of the model's cadence to catch up."""
        status = self._pace
        throttled = status is not None and not status.keeping_up
        return self.worker.dropped_s == 0 and self.worker.backlog_s < KEEPING_UP_BACKLOG_S and not throttled


class LiveTranscriber(w.VBox):
    """Microphone, live transcript, scrolling spectrogram and status line.

    Parameters
    ----------
    model : ASRModel
        What recognises the speech; :meth:`use_model` swaps it, even mid-session.
    options : LiveOptions
    limits : AudioLimits
        Checks on each chunk and the longest utterance.
    expected_words : bool
        Offer the "Expected words" field (the read-aloud tab does not: its score is of the model's own hearing).
    """

    def __init__(
        self,
        model: ASRModel,
        *,
        options: LiveOptions = LiveOptions(),
        limits: AudioLimits = DEFAULT_LIMITS,
        expected_words: bool = True,
    ) -> None:
        self.model = model
        self.options = options
        self.limits = limits
        self.prompt = PromptField()
        self.prompt.text.layout.max_width = "100%"
        self.prompt.on_change(lambda: self.use_model(self.model))
        self.microphone = Microphone(chunk_ms=options.chunk_ms)
        # no width: a box stretches its children to its own, and 100% plus their margins would overflow a phone
        self.transcript = w.HTML(layout=w.Layout(max_width="1000px"))
        self.transcript.add_class("asrkit-live-transcript")
        self.copy = CopyButton()
        self.clear_button = w.Button(
            description="clear", tooltip="start the transcript afresh", layout=w.Layout(width="auto")
        )
        self.clear_button.add_class("asrkit-clear")
        self.clear_button.on_click(lambda _: self.clear())
        self.downloads = w.HTML()
        self.downloads.add_class("asrkit-live-downloads")
        self.spectrogram = w.Image(format="png", layout=w.Layout(width="100%", max_width="1000px", flex="1 1 0%"))
        self.spectrogram.add_class("asrkit-spectrogram")
        frequencies = w.HTML(frequency_axis_html(), layout=w.Layout(flex="0 0 auto"))
        frequencies.add_class("asrkit-axis-frequency-box")
        # the words under the spectrogram, each at its time in the audio
        self.words = w.HTML()
        self.words.add_class("asrkit-under-picture")
        seconds = w.HTML(time_axis_html(options.spectrogram_s))
        seconds.add_class("asrkit-under-picture")
        self.status = w.HTML()
        self.status.add_class("asrkit-live-status")
        self.run: LiveRun | None = None
        # finished sessions' text (one per model used in this recording), in order
        self._earlier: list[str] = []
        # their words, in seconds on the recording's clock
        self._earlier_words: list[Span] = []
        # the transcript the copy button and downloads hold, to renew them only when it changes
        self._saved_text = ""
        self._problem = ""
        self._lock = threading.Lock()
        self._drawing = threading.Lock()
        self._pending: deque[Chunk] = deque(maxlen=PENDING_CHUNKS)
        self._picture = LiveSpectrogram(window_s=options.spectrogram_s)
        self._refresher: threading.Thread | None = None
        self._stopped = threading.Event()
        self._finished = w.CallbackDispatcher()
        self.microphone.on_start(self._started)
        self.microphone.on_chunk(self._received)
        self.microphone.on_stop(self._ended)
        # seconds of audio received, and drawn on the spectrogram
        self._received_s = self._drawn_s = 0.0
        shown = (self.prompt,) if expected_words else ()
        tools = w.HBox([self.copy, self.clear_button, self.downloads], layout=w.Layout(flex_flow="row wrap"))
        tools.add_class("asrkit-live-tools")
        picture = w.HBox([frequencies, self.spectrogram], layout=w.Layout(width="100%", align_items="stretch"))
        super().__init__(
            [w.HTML(STYLE), *shown, self.microphone, self.transcript, tools, picture, self.words, seconds, self.status]
        )
        self.spectrogram.value = self._picture.png()
        self._render()

    def on_finished(self, handler: Callable[[str], None]) -> None:
        """Call ``handler(text)`` with the whole recording's final text when capture stops."""
        self._finished.register_callback(handler)

    def text(self) -> str:
        """Everything recognised in this recording so far, committed and partial."""
        with self._lock:
            current = self.run.worker.result().text if self.run is not None else ""
            return " ".join(t for t in (*self._earlier, current) if t)

    def transcript_so_far(self) -> Transcript:
        """This recording's transcript so far (since the last :meth:`clear`), its word times on the
        recording's clock: what "copy" and the downloads hold."""
        with self._lock:
            run = self.run
            current = run.worker.result() if run is not None else StreamResult("", "")
            text = " ".join(t for t in (*self._earlier, current.text) if t)
            words = [*self._earlier_words, *(_shifted(current.words, run.begins_at_s) if run is not None else ())]
        return Transcript(text=text, duration_s=self._received_s, words=tuple(words), model=self.model.name)

    def clear(self) -> None:
        """Empty the transcript; a recording goes on, its next words starting a fresh transcript."""
        with self._lock:
            old, self.run = self.run, (self._new_run() if self.run is not None else None)
            self._earlier, self._earlier_words, self._problem = [], [], ""
        if old is not None:
            # the old session's last words are dropped with it: closing drains its queue, off this thread
            threading.Thread(target=old.worker.close, name="asrkit-live-clear", daemon=True).start()
        self._render()

    def use_model(self, model: ASRModel) -> None:
        """Recognise with ``model`` (and the expected words, if it takes them) from now on; a running
        session is finished on the old model (its words stay in the transcript) and the next chunk
        starts a new one on the new model."""
        with self._lock:
            self.model = model
            old, self.run = self.run, (self._new_run() if self.run is not None else None)
        if old is not None:
            self._keep(old, old.worker.close())
        else:
            # says at once whether the model takes the expected words
            self.prompt.apply(model)
        self._render()

    def _new_run(self) -> LiveRun:
        return LiveRun(
            self.prompt.apply(self.model),
            max_backlog_s=self.options.max_backlog_s,
            limits=self.limits,
            begins_at_s=self._received_s,
        )

    # --- on the kernel's message thread: quick, never waits for the model ---

    def _started(self, _sample_rate: int) -> None:
        with self._lock:
            if self.run is not None:  # a second start without a stop: finish the first quietly
                self.run.worker.close()
            self._earlier, self._earlier_words, self._problem = [], [], ""
            self.run = self._new_run()
        self._stopped.clear()
        if self._refresher is None or not self._refresher.is_alive():
            self._refresher = threading.Thread(target=self._refresh, name="asrkit-live-refresh", daemon=True)
            self._refresher.start()

    def _received(self, chunk: Chunk) -> None:
        with self._lock:
            run = self.run
        if run is None:
            return  # a chunk after stop, in flight while the stop was handled
        try:
            run.push(chunk)
        except (AudioError, BacklogFullError) as err:
            self._problem = f"chunk {chunk.seq} not used: {err}"
            return
        self._received_s += len(chunk.samples) / chunk.sample_rate
        self._pending.append(chunk)

    def _ended(self) -> None:
        # closing drains the queue through the model: a thread of its own, not the message thread
        threading.Thread(target=self._close, name="asrkit-live-close", daemon=True).start()

    # --- on other threads ---

    def _close(self) -> None:
        with self._lock:
            run = self.run
        if run is None:
            return
        final = run.worker.close()
        with self._lock:
            if self.run is not run:
                return  # a new recording or model took over meanwhile; it keeps the views
            self._earlier.append(final.text)
            self._earlier_words += _shifted(final.words, run.begins_at_s)
            self.run = None
            text = " ".join(t for t in self._earlier if t)
        self._stopped.set()
        if self._refresher is not None:
            self._refresher.join()
        self._render(closed=run)
        self._finished(text)

    def _keep(self, run: LiveRun, final: StreamResult) -> None:
        """A finished session's text and words stay in the transcript."""
        with self._lock:
            self._earlier.append(final.text)
            self._earlier_words += _shifted(final.words, run.begins_at_s)

    def _refresh(self) -> None:
        period = 1.0 / self.options.refresh_hz
        while not self._stopped.wait(period):
            self._render()

    def _render(self, *, closed: LiveRun | None = None) -> None:
        # the refresh thread, a closing recording and a model swap may all redraw
        with self._drawing:
            self._draw(closed)

    def _draw(self, closed: LiveRun | None) -> None:
        moved = False
        while self._pending:
            chunk = self._pending.popleft()
            self._picture.accept_waveform(chunk.sample_rate, chunk.samples)
            self._drawn_s += len(chunk.samples) / chunk.sample_rate
            moved = True
        if moved:
            self.spectrogram.value = self._picture.png()
        with self._lock:
            run = self.run or closed
            current = self.run.worker.result() if self.run is not None else StreamResult("", "")
            earlier = list(self._earlier)
        committed = " ".join(t for t in (*earlier, current.committed) if t)
        if len(committed) > SHOWN_CHARS:
            committed = "…" + committed[-SHOWN_CHARS:]
        self.transcript.value = (
            f'<div class="asrkit-transcript"><span class="asrkit-committed">{html.escape(committed)}</span> '
            f'<span class="asrkit-partial">{html.escape(current.partial)}</span></div>'
        )
        self.words.value = self._word_strip(run)
        self.status.value = self._status(run)
        self._renew_saving()

    def _renew_saving(self) -> None:
        """The copy button's text and the download links, when the transcript has changed."""
        transcript = self.transcript_so_far()
        if transcript.text == self._saved_text:
            return
        self._saved_text = self.copy.text = transcript.text
        self.downloads.value = (
            download_links(transcript, stem="live-transcript", formats=LIVE_DOWNLOADS) if transcript.text else ""
        )

    def _word_strip(self, run: LiveRun | None) -> str:
        """The session's words within the spectrogram's window, placed at their times (committed dark); each
        is cut short ("…") where it would reach the next, so that fast speech never smears into one blur."""
        placed: list[tuple[float, str, str]] = []
        current = run.worker.result() if run is not None else None
        if current is not None and current.words:
            window = self.options.spectrogram_s
            left_s = self._drawn_s - window
            n_committed = len(current.committed.split())
            for i, word in enumerate(current.words):
                # a word partly scrolled off the left edge stays, pinned there, until it has all gone
                at = max((run.begins_at_s + word.start - left_s) / window, 0.0)
                if run.begins_at_s + word.end > left_s and at < 1.0:
                    placed.append((at, "asrkit-committed" if i < n_committed else "asrkit-partial", word.text))
        spans = [
            f'<span class="{kind}" style="left:{100 * at:.1f}%;max-width:{100 * max(room - WORD_GAP, 0.0):.1f}%">'
            f"{html.escape(text)}</span>"
            for (at, kind, text), room in zip(placed, [b[0] - a[0] for a, b in zip(placed, placed[1:])] + [1.0])
        ]
        return f'<div class="asrkit-words">{"".join(spans)}</div>'

    def _status(self, run: LiveRun | None) -> str:
        transport = list(self.microphone.transport_s)
        transport_ms = 1000 * statistics.median(transport) if transport else math.nan
        if run is None:
            figures = {"model": self.model.name}
            line, detail = f"{html.escape(self.model.name)} is ready: press start and speak.", ""
        else:
            interval = run.decode_interval_s
            figures = {
                "model": run.model_name,
                "audio-s": run.session.audio_s,
                "rtf": run.rtf,
                "latency-s": run.latency_s,
                "backlog-s": run.worker.backlog_s,
                "max-backlog-s": run.max_backlog_s,
                "dropped-s": run.worker.dropped_s,
                "transport-ms": transport_ms,
                "malformed": self.microphone.malformed,
                "keeping-up": str(run.keeping_up).lower(),
                "errors": len(run.worker.errors),
            }
            if interval is not None:
                figures["decode-interval-s"] = interval
            line = f"{html.escape(run.model_name)} has heard {run.session.audio_s:.0f} s"
            if run.keeping_up:
                line += " and keeps up"
                if math.isfinite(run.latency_s):
                    line += f": words appear about {run.latency_s:.1f} s after they are said"
            else:
                line += f" and is falling behind: {run.worker.backlog_s:.1f} s of speech waiting"
                if run.worker.dropped_s:
                    line += f", {run.worker.dropped_s:.1f} s skipped to catch up"
            line += "."
            detail = "\n".join(
                [
                    f"RTF {run.rtf:.2f}: seconds of computing per second of speech (below 1 keeps up)",
                    f"latency {run.latency_s:.2f} s: from the audio reaching the server to its words",
                    f"backlog {run.worker.backlog_s:.1f} s (most {run.max_backlog_s:.1f} s): "
                    "speech waiting for the model",
                    f"dropped {run.worker.dropped_s:.1f} s: speech skipped because the model was too far behind",
                    f"page to server {transport_ms:.0f} ms: how long the audio takes to arrive",
                    *([f"decoding every {interval:.1f} s of speech"] if interval is not None else []),
                ]
            )
            if run.worker.errors:
                err = run.worker.errors[-1]
                self._problem = (
                    f"the model failed on some audio ({type(err).__name__}: {err}); it goes on with the next"
                )

        data = " ".join(
            f'data-{k}="{html.escape(str(v if isinstance(v, str) else round(v, 4)))}"' for k, v in figures.items()
        )
        problem = f'<div class="asrkit-problem">{html.escape(self._problem)}</div>' if self._problem else ""
        tip = f' title="{html.escape(detail)}"' if detail else ""
        more = ' <span class="asrkit-status-more">?</span>' if detail else ""
        return f'<div class="asrkit-status" {data}{tip}>{line}{more}</div>{problem}'


def _shifted(words: tuple[Span, ...], offset_s: float) -> tuple[Span, ...]:
    return tuple(Span(w.text, w.start + offset_s, w.end + offset_s) for w in words)

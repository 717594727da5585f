"""The browser microphone as a widget: 16-bit PCM chunks from the page to the kernel.

The browser half (``microphone.js``, shipped with the package) opens the microphone with
getUserMedia, runs it through an AudioWorklet that mixes to mono and cuts ~200 ms chunks of int16
PCM, at 16 kHz where the browser can resample (Chrome) and at the device's own rate otherwise, and
sends each chunk to the kernel as a binary buffer. It draws the start/stop button (a red dot), a
clock of the time recorded, a level meter and the device choice itself, so a click starts capture at
once, and it explains when the page is not a secure context (getUserMedia needs https or localhost).

The kernel half checks every message before anything else sees it: a malformed chunk is counted
and reported in the widget, never raised.

Usage
-----
::

    mic = Microphone()
    mic.on_chunk(lambda chunk: worker.push(chunk.rate, chunk.samples))
    mic
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anywidget
import numpy as np
import traitlets
from ipywidgets import CallbackDispatcher

from asrkit.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from asrkit.errors import AsrkitError

HERE = Path(__file__).resolve().parent
# Audio per chunk the browser sends, milliseconds: short enough for a live transcript, long enough
# that message overhead stays small (5 messages a second).
CHUNK_MS = 200
# A chunk longer than this is refused: the browser never sends one, so it is not from our page.
MAX_CHUNK_S = 2.0
# Browser-to-kernel delays kept for the status line (the most recent ones).
TRANSPORT_HISTORY = 50


class ChunkError(AsrkitError, ValueError):
    """A message from the browser that is not a well-formed audio chunk."""


@dataclass(frozen=True)
class Chunk:
    """One piece of microphone audio as it reached the kernel."""

    # samples per second of ``samples`` (16 kHz, or the device's rate where the browser cannot resample)
    sample_rate: int
    # mono 16-bit PCM, shape (n,)
    samples: np.ndarray
    # the browser's running number of the chunk since capture started
    seq: int
    # seconds from the browser sending it to the kernel receiving it (wall clocks: meaningful when
    # browser and kernel share a machine or synchronised clocks)
    transport_s: float


def decode_chunk(content: object, buffers: list, *, received: float) -> Chunk:
    """Check one ``{"type": "chunk", ...}`` message and its buffer; the chunk, or a :class:`ChunkError`.

    Parameters
    ----------
    content : object
        The message's JSON part: ``rate`` (Hz), ``seq`` and ``sent_ms`` (the browser's ``Date.now()``).
    buffers : list
        Its binary parts: exactly one, little-endian int16 samples.
    received : float
        ``time.time()`` when it arrived.

    Usage
    -----
    ::

        pcm = np.array([0, 1000, -1000], "<i2").tobytes()
        decode_chunk({"type": "chunk", "rate": 16000, "seq": 0, "sent_ms": 0}, [pcm], received=0.25).samples
        # array([    0,  1000, -1000], dtype=int16)
        decode_chunk({"type": "chunk", "rate": 16000, "seq": 1}, [b"abc"], received=0.0)
        # Traceback (most recent call last):

        # asrkit.widgets.microphone.ChunkError: chunk of 3 bytes: 16-bit samples need an even number of bytes
    """
    if not isinstance(content, dict):
        raise ChunkError(f"message is a {type(content).__name__}, not an object")
    rate, seq, sent_ms = content.get("rate"), content.get("seq", -1), content.get("sent_ms")
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ChunkError(f"chunk rate {rate!r} is not a whole number of Hz in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ChunkError(f"chunk number {seq!r} is not an integer")
    if len(buffers) != 1:
        raise ChunkError(f"chunk came with {len(buffers)} binary buffers, expected 1")
    data = memoryview(buffers[0]).cast("B")
    if not len(data):
        raise ChunkError("chunk holds no samples")
    if len(data) % 2:
        raise ChunkError(f"chunk of {len(data)} bytes: 16-bit samples need an even number of bytes")
    if len(data) // 2 > MAX_CHUNK_S * rate:
        raise ChunkError(f"chunk of {len(data) // 2 / rate:.2f} s is longer than the {MAX_CHUNK_S:g} s a page sends")
    transport_s = math.nan
    if isinstance(sent_ms, (int, float)) and not isinstance(sent_ms, bool) and math.isfinite(sent_ms):
        transport_s = received - sent_ms / 1000
    samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
    return Chunk(sample_rate=rate, samples=samples, seq=seq, transport_s=transport_s)


class Microphone(anywidget.AnyWidget):
    """Start/stop button, device choice and level meter; the audio arrives as :class:`Chunk` objects.

    Parameters
    ----------
    chunk_ms : int
        Milliseconds of audio per chunk.
    start_label : str
        The start button's word.

    Notes
    -----
    Handlers run on the kernel's message thread, in the order the browser sent the messages, so
    they must return quickly: hand the audio to a :class:`~asrkit.stream_worker.StreamWorker`, never
    run a model in them.
    """

    _esm = HERE / "microphone.js"
    _css = HERE / "microphone.css"
    # milliseconds of audio per chunk (read by the browser when capture starts)
    chunk_ms = traitlets.Int(CHUNK_MS).tag(sync=True)
    # False greys out the start button (e.g. while a model loads)
    enabled = traitlets.Bool(True).tag(sync=True)
    # set by the browser: whether it is capturing now
    recording = traitlets.Bool(False).tag(sync=True)
    # a line from the kernel shown under the controls (problems with chunks); "" for none
    message = traitlets.Unicode("").tag(sync=True)
    # the start button's word ("start" for live transcription, "record" for a clip)
    start_label = traitlets.Unicode("start").tag(sync=True)

    def __init__(self, *, chunk_ms: int = CHUNK_MS, start_label: str = "start", **kwargs) -> None:
        super().__init__(chunk_ms=chunk_ms, start_label=start_label, **kwargs)
        self._chunk_handlers = CallbackDispatcher()
        self._start_handlers = CallbackDispatcher()
        self._stop_handlers = CallbackDispatcher()
        # messages that were not well-formed chunks or events
        self.malformed = 0
        # recent browser-to-kernel delays, seconds
        self.transport_s: deque[float] = deque(maxlen=TRANSPORT_HISTORY)
        self.on_msg(self.receive)

    def on_chunk(self, handler: Callable[[Chunk], None]) -> None:
        """Call ``handler(chunk)`` for each chunk of audio."""
        self._chunk_handlers.register_callback(handler)

    def on_start(self, handler: Callable[[int], None]) -> None:
        """Call ``handler(sample_rate)`` when capture starts, before its first chunk."""
        self._start_handlers.register_callback(handler)

    def on_stop(self, handler: Callable[[], None]) -> None:
        """Call ``handler()`` when capture stops, after its last chunk."""
        self._stop_handlers.register_callback(handler)

    def stop(self) -> None:
        """Ask the browser to stop capturing (its last chunks and "stopped" still arrive)."""
        self.send({"command": "stop"})

    def receive(self, _widget, content, buffers) -> None:
        """Take one message from the page (a chunk of audio, or the capture's state), as the widget's comm
        delivers it; another front-end, or a test standing in for the browser, calls it the same way."""
        received = time.time()
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "chunk":
            try:
                chunk = decode_chunk(content, buffers, received=received)
            except ChunkError as err:
                self.malformed += 1
                self.message = f"{self.malformed} malformed message(s) from the page ignored; last: {err}"
                return
            if math.isfinite(chunk.transport_s):
                self.transport_s.append(chunk.transport_s)
            self._chunk_handlers(chunk)
        elif kind == "started" and isinstance(content.get("rate"), int):
            self.message = ""
            self._start_handlers(content["rate"])
        elif kind == "stopped":
            self._stop_handlers()
        else:
            self.malformed += 1
            self.message = f"{self.malformed} malformed message(s) from the page ignored; last: {str(content)[:80]}"

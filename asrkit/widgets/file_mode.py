"""Transcribe a whole file: upload one, or record a clip in the browser; listen to it, read the transcript
in timed segments, see it on the spectrogram with its word times, download it as text, SRT, WebVTT or
JSON. Words to expect (names, terms) typed in "Expected words" prompt the model, when it takes a prompt.

The recording uses the same :class:`~asrkit.widgets.microphone.Microphone` as the Live tab (a red
record button, a clock and a level meter); its 16-bit PCM chunks are kept until stop, within the
duration limit. Transcription runs on a thread of its own, one file at a time, so the page stays
responsive and the model is never used by two files at once. Long audio is transcribed in pieces of at
most :data:`PIECE_S` seconds, cut at the quietest moment near each piece's end, so that the progress bar
moves as the model goes, whatever the model.
"""

from __future__ import annotations

import base64
import html
import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import ipywidgets as w
import numpy as np

from asrkit.audio import (
    DEFAULT_LIMITS,
    SAMPLE_RATE,
    AudioError,
    AudioLimits,
    AudioTooLargeError,
    AudioTooLongError,
    CorruptAudioError,
    EmptyAudioError,
    UnsupportedFormatError,
    load_audio,
    wav_bytes,
)
from asrkit.contracts import ASRModel, Span, Transcript
from asrkit.formats import render
from asrkit.plotting import plot_spectrogram
from asrkit.widgets.microphone import Chunk, Microphone
from asrkit.widgets.prompt import PromptField

# What the file chooser offers (any file may still be picked; load_audio decides).
ACCEPT = "audio/*,video/webm,.wav,.flac,.ogg,.oga,.opus,.mp3,.m4a,.aac,.webm"
# Downloads offered: (label, asrkit.formats name, file extension, MIME type).
DOWNLOADS = (
    ("text", "text", "txt", "text/plain"),
    ("SRT", "srt", "srt", "application/x-subrip"),
    ("WebVTT", "vtt", "vtt", "text/vtt"),
    ("JSON", "json", "json", "application/json"),
)
# The spectrogram covers at most this many seconds: a picture of an hour would be unreadable and slow.
PLOT_MAX_S = 60.0
DPI = 80
# Longest piece the model is given at once, seconds: under Whisper's 30 s window, so a piece is one
# window; the progress bar moves once per piece.
PIECE_S = 28.0
# A piece is cut at the quietest FRAME_S of its last CUT_SEARCH_S seconds, so that no word is split.
CUT_SEARCH_S = 4.0
FRAME_S = 0.05
# A shown segment ends after a sentence's end (once it holds MIN_SEGMENT_WORDS words), at a pause of at
# least SEGMENT_PAUSE_S, or before it would pass MAX_SEGMENT_S.
MIN_SEGMENT_WORDS = 4
SEGMENT_PAUSE_S = 1.0
MAX_SEGMENT_S = 15.0
SENTENCE_END = (".", "?", "!")
# The file formats asrkit reads, as the page names them.
FORMAT_NAMES = "WAV, FLAC, OGG, MP3, M4A or WebM"
STYLE = """<style>
.asrkit-file-transcript .asrkit-segments{box-sizing:border-box;max-height:24em;overflow-y:auto;padding:6px 10px;
  border:1px solid #ddd;border-radius:4px;background:#fff;font-size:15px;line-height:1.5}
.asrkit-segment{margin:2px 0}
.asrkit-time{font-family:monospace;color:#777;margin-right:.5em;user-select:none}
.asrkit-file-error{color:#a12a1c}
</style>"""


def download_links(
    transcript: Transcript, *, stem: str, formats: tuple[tuple[str, str, str, str], ...] = DOWNLOADS
) -> str:
    """HTML links that save the transcript in each of ``formats`` (as :data:`DOWNLOADS`; data URLs: no
    server files)."""
    safe = re.sub(r"[^\w.-]+", "_", stem).strip("._") or "transcript"
    links = []
    for label, fmt, extension, mime in formats:
        data = base64.b64encode(render(transcript, fmt, audio=stem).encode("utf-8")).decode("ascii")
        links.append(
            f'<a class="asrkit-download" download="{safe}.{extension}" '
            f'href="data:{mime};charset=utf-8;base64,{data}">{label}</a>'
        )
    return "download: " + " · ".join(links)


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on), for segment start times.

    Examples
    --------
    >>> clock(0.4), clock(75.9), clock(3725.0)
    ('0:00', '1:15', '1:02:05')
    """
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def segments(transcript: Transcript) -> list[Span]:
    """The transcript in readable pieces with their times: words grouped into sentences, broken at
    pauses and kept under :data:`MAX_SEGMENT_S`; one segment at 0 for a transcript without word times.

    Examples
    --------
    >>> words = (Span("Hi.", 0.0, 0.3), Span("Go", 2.0, 2.2), Span("on", 2.3, 2.5))
    >>> [(s.text, s.start) for s in segments(Transcript("Hi. Go on", 3.0, words=words))]
    [('Hi.', 0.0), ('Go on', 2.0)]
    """
    if not transcript.words:
        return [Span(transcript.text, 0.0, transcript.duration_s)] if transcript.text.strip() else []
    groups: list[list[Span]] = [[]]
    for word in transcript.words:
        group = groups[-1]
        if group and (
            word.start - group[-1].end >= SEGMENT_PAUSE_S
            or word.end - group[0].start > MAX_SEGMENT_S
            or (group[-1].text.endswith(SENTENCE_END) and len(group) >= MIN_SEGMENT_WORDS)
        ):
            groups.append(group := [])
        group.append(word)
    return [Span(" ".join(w.text.strip() for w in g), g[0].start, g[-1].end) for g in groups]


def segments_html(transcript: Transcript) -> str:
    """The segments, one a line, each after its ``[m:ss]`` start time."""
    lines = [
        f'<div class="asrkit-segment"><span class="asrkit-time">[{clock(s.start)}]</span>{html.escape(s.text)}</div>'
        for s in segments(transcript)
    ]
    return f'<div class="asrkit-segments">{"".join(lines) or "<i>(nothing recognised)</i>"}</div>'


def piece_bounds(audio: np.ndarray, *, piece_s: float = PIECE_S) -> list[tuple[int, int]]:
    """(start, end) samples of the pieces ``audio`` (shape (n,), 16 kHz) is transcribed in: each at most
    ``piece_s`` long, cut at the quietest :data:`FRAME_S` of its last :data:`CUT_SEARCH_S` seconds.

    Examples
    --------
    >>> piece_bounds(np.zeros(16000 * 10, np.float32))
    [(0, 160000)]
    >>> [round((b - a) / 16000) for a, b in piece_bounds(np.ones(16000 * 70, np.float32))]
    [28, 28, 14]
    """
    longest, frame = round(piece_s * SAMPLE_RATE), round(FRAME_S * SAMPLE_RATE)
    search = min(round(CUT_SEARCH_S * SAMPLE_RATE), longest // 2)
    bounds, start = [], 0
    while len(audio) - start > longest:
        window = audio[start + longest - search : start + longest]
        energy = np.square(window[: len(window) // frame * frame].reshape(-1, frame)).sum(axis=1)
        # the last of equally quiet frames: pieces as long as they may be
        quietest = len(energy) - 1 - int(np.argmin(energy[::-1]))
        end = start + longest - search + (quietest + 1) * frame
        bounds.append((start, end))
        start = end
    bounds.append((start, len(audio)))
    return bounds


def _shifted(spans: tuple[Span, ...], offset_s: float) -> tuple[Span, ...]:
    return tuple(replace(s, start=s.start + offset_s, end=s.end + offset_s) for s in spans)


def plain_error(name: str, err: AudioError, *, limits: AudioLimits) -> str:
    """What went wrong with the user's file, in a sentence naming it (the detail is for the tooltip).

    Examples
    --------
    >>> plain_error("notes.txt", UnsupportedFormatError("<bytes>: not audio"), limits=DEFAULT_LIMITS)
    'notes.txt is not audio, or not in a format asrkit reads (WAV, FLAC, OGG, MP3, M4A or WebM).'
    """
    if isinstance(err, UnsupportedFormatError):
        return f"{name} is not audio, or not in a format asrkit reads ({FORMAT_NAMES})."
    if isinstance(err, CorruptAudioError):
        return f"{name} looks like audio but is damaged or cut short, so it cannot be read."
    if isinstance(err, EmptyAudioError):
        return f"{name} holds no sound."
    if isinstance(err, AudioTooLongError):
        return f"{name} is longer than the {limits.max_duration_s / 60:g} minutes accepted."
    if isinstance(err, AudioTooLargeError):
        return f"{name} is larger than the {size_text(limits.max_bytes)} accepted."
    return f"{name} could not be read as audio."


def size_text(n_bytes: int) -> str:
    """``"48 MB"``, ``"1.5 GB"``: an upload limit as the page says it."""
    return f"{n_bytes / 2**20:.0f} MB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.1f} GB"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def audio_player(**kwargs) -> w.Audio:
    """A player that is never empty: with no audio, the browser's request for its source fails with an
    error in the console, so it starts on a moment of silence (and is kept hidden until it has audio)."""
    return w.Audio(value=wav_bytes(np.zeros(SAMPLE_RATE // 100, np.float32)), format="wav", autoplay=False, **kwargs)


def _shown(widget: w.DOMWidget, visible: bool) -> None:
    # an empty image or player draws a broken icon or a 0:00 bar: keep it out of the page instead
    widget.layout.display = None if visible else "none"


class FileTranscriber(w.VBox):
    """Upload or record; then a player, the transcript in timed segments, its spectrogram and downloads.

    Parameters
    ----------
    model : ASRModel
    limits : AudioLimits
        Largest and longest file (and recording) accepted; larger ones are refused with a message.
    """

    def __init__(self, model: ASRModel, *, limits: AudioLimits = DEFAULT_LIMITS) -> None:
        self.model = model
        self.limits = limits
        self.upload = w.FileUpload(accept=ACCEPT, multiple=False, description="upload audio")
        self.microphone = Microphone(start_label="record")
        self.status = w.HTML()
        self.status.add_class("asrkit-file-status")
        self.progress = w.FloatProgress(min=0.0, max=1.0, layout=w.Layout(width="100%", max_width="1000px"))
        self.progress.add_class("asrkit-file-progress")
        self.player = audio_player(controls=True, layout=w.Layout(width="100%", max_width="1000px"))
        self.player.add_class("asrkit-file-player")
        self.transcript = w.HTML(layout=w.Layout(width="100%", max_width="1000px"))
        self.transcript.add_class("asrkit-file-transcript")
        self.picture = w.Image(format="png", layout=w.Layout(width="100%", max_width="800px"))
        self.picture.add_class("asrkit-file-plot")
        self.downloads = w.HTML()
        for widget in (self.progress, self.player, self.picture):
            _shown(widget, False)
        self.prompt = PromptField()
        self.prompt.text.layout.max_width = "100%"
        self.prompt.on_change(lambda: self.prompt.apply(self.model))
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asrkit-file")
        # the recording in progress: its chunks' samples, and their rate
        self._recording: list[np.ndarray] = []
        self._recording_rate = SAMPLE_RATE
        self._recording_lock = threading.Lock()
        self.upload.observe(self._uploaded, names="value")
        self.microphone.on_start(self._record_started)
        self.microphone.on_chunk(self._record_chunk)
        self.microphone.on_stop(self._record_stopped)
        super().__init__(
            [
                w.HTML(
                    STYLE + f"<p>Upload a file ({FORMAT_NAMES}; up to {size_text(limits.max_bytes)} and "
                    f"{limits.max_duration_s / 60:g} minutes) or record a clip: press <b>record</b>, speak, "
                    "press <b>stop</b>.</p>"
                ),
                self.prompt,
                w.HBox([self.upload, self.microphone], layout=w.Layout(flex_flow="row wrap", align_items="center")),
                self.status,
                self.progress,
                self.player,
                self.transcript,
                self.picture,
                self.downloads,
            ]
        )

    def use_model(self, model: ASRModel) -> None:
        """Transcribe the next file with ``model``."""
        self.model = model
        # says at once whether the new model takes the expected words
        self.prompt.apply(model)

    def _uploaded(self, change) -> None:
        for item in change["new"]:
            if item["size"] > self.limits.max_bytes:
                self._failed(item["name"], AudioTooLargeError(f"{item['name']}: {item['size']} bytes"))
                continue
            self.submit(item["name"], item["content"].tobytes())

    # --- the recorder: on the kernel's message thread, quick ---

    def _record_started(self, sample_rate: int) -> None:
        with self._recording_lock:
            self._recording, self._recording_rate = [], sample_rate

    def _record_chunk(self, chunk: Chunk) -> None:
        with self._recording_lock:
            if chunk.sample_rate != self._recording_rate:
                return  # not from this recording's stream
            held_s = sum(len(c) for c in self._recording) / self._recording_rate
            if held_s >= self.limits.max_duration_s:
                return  # stopping; the recording so far is kept
            self._recording.append(chunk.samples)
            full = held_s + len(chunk.samples) / chunk.sample_rate >= self.limits.max_duration_s
        if full:
            self.status.value = (
                f"The recording reached the {self.limits.max_duration_s / 60:g} minutes accepted and was stopped."
            )
            self.microphone.stop()

    def _record_stopped(self) -> None:
        with self._recording_lock:
            pieces, rate, self._recording = self._recording, self._recording_rate, []
        name = "recording.wav"
        if not pieces:
            self._failed(name, EmptyAudioError(f"{name}: no samples"))
            return
        try:
            audio = load_audio(np.concatenate(pieces), sample_rate=rate, limits=self.limits)
        except AudioError as err:
            self._failed(name, err)
            return
        self.submit(name, audio)

    # --- transcription ---

    def submit(self, name: str, data: bytes | np.ndarray) -> None:
        """Transcribe encoded audio (or 16 kHz float samples, shape (n,)) on the file thread, with the
        expected words the model takes; ``name`` labels it and its downloads."""
        self.status.value = f"<b>{html.escape(name)}</b>: waiting for the model…"
        model = self.prompt.apply(self.model)
        self._jobs.submit(
            self._transcribe, name, data, model, prompt=self.prompt.prompt if model is not self.model else ""
        )

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every file handed in so far (uploaded, recorded or passed to :meth:`submit`) is
        transcribed, or refused, and the page shows it; at most ``timeout`` seconds (then raises
        :class:`TimeoutError`)."""
        # one file at a time, in order: once a job queued now has run, every earlier one has
        self._jobs.submit(lambda: None).result(timeout)

    def _failed(self, name: str, err: AudioError) -> None:
        detail = str(err).replace("<bytes>", name).replace("<array>", name)
        self.status.value = (
            f'<span class="asrkit-file-error" title="{html.escape(detail)}">'
            f"{html.escape(plain_error(name, err, limits=self.limits))}</span>"
        )
        self.transcript.value = self.downloads.value = ""
        for widget in (self.progress, self.player, self.picture):
            _shown(widget, False)

    def _transcribe(self, name: str, data: bytes | np.ndarray, model: ASRModel, *, prompt: str = "") -> None:
        try:
            audio = data if isinstance(data, np.ndarray) else load_audio(data, limits=self.limits)
        except AudioError as err:
            self._failed(name, err)
            return
        self.transcript.value = self.downloads.value = ""
        _shown(self.picture, False)
        # the browser plays what it was given; a recording is handed back as WAV
        self.player.format = "wav" if isinstance(data, np.ndarray) else (name.rsplit(".", 1)[-1].lower() or "wav")
        self.player.value = wav_bytes(audio) if isinstance(data, np.ndarray) else data
        _shown(self.player, True)
        duration = len(audio) / SAMPLE_RATE
        start = time.perf_counter()
        try:
            transcript = self._pieces(name, audio, model)
        except Exception as err:  # a model failure is reported in the page; the next file still works
            self.status.value = (
                f'<span class="asrkit-file-error" title="{html.escape(repr(err))}">'
                f"{html.escape(model.name)} failed on <b>{html.escape(name)}</b>; "
                "try another model or file.</span>"
            )
            _shown(self.progress, False)
            return
        seconds = time.perf_counter() - start
        shown = audio[: round(PLOT_MAX_S * SAMPLE_RATE)]
        note = f" The spectrogram shows the first {PLOT_MAX_S:g} s." if len(shown) < len(audio) else ""
        self.transcript.value = segments_html(transcript)
        self.picture.value = _png(plot_spectrogram(shown, transcript=transcript).figure)
        _shown(self.picture, True)
        _shown(self.progress, False)
        self.downloads.value = download_links(transcript, stem=name.rsplit(".", 1)[0])
        expecting = f" expecting “{html.escape(prompt)}”" if prompt else ""
        speed = duration / max(seconds, 1e-9)
        # last, so that a status saying "transcribed" means everything is on the page
        self.status.value = (
            f"<b>{html.escape(name)}</b>: {duration:.1f} s of audio, {len(transcript.words)} words, "
            f"transcribed by {html.escape(model.name)}{expecting} in {seconds:.1f} s "
            f'(<span title="real-time factor {seconds / max(duration, 1e-9):.2f}">'
            f"{speed:.1f}× as fast as it plays</span>).{note}"
        )

    def _pieces(self, name: str, audio: np.ndarray, model: ASRModel) -> Transcript:
        """The whole transcript, piece by piece (see :func:`piece_bounds`), showing the progress."""
        duration = len(audio) / SAMPLE_RATE
        bounds = piece_bounds(audio)
        self.progress.value = 0.0
        _shown(self.progress, True)
        texts, words, chars = [], [], []
        for i, (begin, end) in enumerate(bounds):
            piece = f" (piece {i + 1} of {len(bounds)})" if len(bounds) > 1 else ""
            self.status.value = (
                f"<b>{html.escape(name)}</b>: transcribing… {begin / SAMPLE_RATE:.0f} of {duration:.0f} s done{piece}"
            )
            part = model.transcribe(audio[begin:end])
            offset = begin / SAMPLE_RATE
            texts.append(part.text.strip())
            words += _shifted(part.words, offset)
            chars += _shifted(part.chars, offset)
            self.progress.value = end / len(audio)
        return Transcript(
            text=" ".join(t for t in texts if t),
            duration_s=duration,
            words=tuple(words),
            chars=tuple(chars),
            model=model.name,
        )

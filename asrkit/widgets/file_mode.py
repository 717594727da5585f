"""Transcribe a whole file: upload one, or record a clip in the browser; read the transcript, see it on
the spectrogram with its word times, download it as text, SRT, WebVTT or JSON. Words to expect (names,
terms) typed in "Expected words" prompt the model, when it takes a prompt.

The recording uses ipywebrtc: a :class:`~ipywebrtc.CameraStream` with audio only feeds an
:class:`~ipywebrtc.AudioRecorder`, whose WebM/Opus result :func:`asrkit.audio.load_audio` decodes.
Transcription runs on a thread of its own, one file at a time, so the page stays responsive and the
model is never used by two files at once.
"""

from __future__ import annotations

import base64
import html
import io
import re
import time
from concurrent.futures import ThreadPoolExecutor

import ipywidgets as w
from ipywebrtc import AudioRecorder, CameraStream

from asrkit.audio import DEFAULT_LIMITS, SAMPLE_RATE, AudioError, AudioLimits, load_audio
from asrkit.formats import render
from asrkit.models.base import ASRModel
from asrkit.plotting import plot_spectrogram
from asrkit.widgets.prompt import PromptField

# What the file chooser offers (any file may still be picked; load_audio decides).
ACCEPT = "audio/*,video/webm,.wav,.flac,.ogg,.oga,.opus,.mp3,.m4a,.aac,.webm"
# Downloads offered: (label, asrkit.formats name, file extension, MIME type).
DOWNLOADS = (("text", "text", "txt", "text/plain"), ("SRT", "srt", "srt", "application/x-subrip"),
             ("WebVTT", "vtt", "vtt", "text/vtt"), ("JSON", "json", "json", "application/json"))
# The spectrogram covers at most this many seconds: a picture of an hour would be unreadable and slow.
PLOT_MAX_S = 60.0
DPI = 80


def download_links(transcript, *, stem: str) -> str:
    """HTML links that save the transcript in each of :data:`DOWNLOADS` (data URLs: no server files)."""
    safe = re.sub(r"[^\w.-]+", "_", stem).strip("._") or "transcript"
    links = []
    for label, fmt, extension, mime in DOWNLOADS:
        data = base64.b64encode(render(transcript, fmt, audio=stem).encode("utf-8")).decode("ascii")
        links.append(f'<a class="asrkit-download" download="{safe}.{extension}" '
                     f'href="data:{mime};charset=utf-8;base64,{data}">{label}</a>')
    return "download: " + " · ".join(links)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


class FileTranscriber(w.VBox):
    """Upload or record, then the full-context transcript, its spectrogram and downloads.

    Parameters
    ----------
    model : ASRModel
    limits : AudioLimits
        Largest and longest file accepted; larger ones are refused with a message.
    """

    def __init__(self, model: ASRModel, *, limits: AudioLimits = DEFAULT_LIMITS) -> None:
        self.model = model
        self.limits = limits
        self.upload = w.FileUpload(accept=ACCEPT, multiple=False, description="upload audio")
        self.camera = CameraStream(constraints={"audio": True, "video": False})
        self.recorder = AudioRecorder(stream=self.camera)
        self.status = w.HTML()
        self.status.add_class("asrkit-file-status")
        self.transcript = w.HTML()
        self.transcript.add_class("asrkit-file-transcript")
        self.picture = w.Image(format="png", layout=w.Layout(max_width="1000px"))
        self.picture.add_class("asrkit-file-plot")
        self.downloads = w.HTML()
        self.prompt = PromptField()
        self.prompt.on_change(lambda: self.prompt.apply(self.model))
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asrkit-file")
        self.upload.observe(self._uploaded, names="value")
        self.recorder.audio.observe(self._recorded, names="value")
        size = f"{limits.max_bytes / 2**20:.0f} MB" if limits.max_bytes < 2**30 else f"{limits.max_bytes / 2**30:.1f} GB"
        super().__init__([
            w.HTML(f"<p>Upload a file (WAV, FLAC, OGG, MP3, M4A, WebM; up to {size} and "
                   f"{limits.max_duration_s / 60:g} minutes) or record a clip with the recorder "
                   "(press its red button to start and again to stop).</p>"),
            self.prompt,
            w.HBox([self.upload, self.recorder]),
            self.status, self.transcript, self.picture, self.downloads,
        ])

    def use_model(self, model: ASRModel) -> None:
        """Transcribe the next file with ``model``."""
        self.model = model
        # says at once whether the new model takes the expected words
        self.prompt.apply(model)

    def _uploaded(self, change) -> None:
        for item in change["new"]:
            if item["size"] > self.limits.max_bytes:
                self.status.value = (f"<b>{html.escape(item['name'])}</b> is {item['size']} bytes, over the "
                                     f"limit of {self.limits.max_bytes} bytes: refused.")
                continue
            self.submit(item["name"], item["content"].tobytes())

    def _recorded(self, change) -> None:
        if change["new"]:
            self.submit("recording.webm", bytes(change["new"]))

    def submit(self, name: str, data: bytes) -> None:
        """Transcribe encoded audio on the file thread, with the expected words the model takes; ``name``
        labels it and its downloads."""
        self.status.value = f"transcribing <b>{html.escape(name)}</b>…"
        model = self.prompt.apply(self.model)
        self._jobs.submit(self._transcribe, name, data, model,
                          prompt=self.prompt.prompt if model is not self.model else "")

    def _transcribe(self, name: str, data: bytes, model: ASRModel, *, prompt: str = "") -> None:
        try:
            audio = load_audio(data, limits=self.limits)
        except AudioError as err:
            self.status.value = f"<b>{html.escape(name)}</b>: {html.escape(str(err))}"
            self.transcript.value, self.picture.value, self.downloads.value = "", b"", ""
            return
        start = time.perf_counter()
        try:
            transcript = model.transcribe(audio)
        except Exception as err:  # a model failure is reported in the page; the next file still works
            self.status.value = f"<b>{html.escape(name)}</b>: {html.escape(model.name)} failed: {html.escape(repr(err))}"
            return
        seconds = time.perf_counter() - start
        duration = len(audio) / SAMPLE_RATE
        shown = audio[: round(PLOT_MAX_S * SAMPLE_RATE)]
        note = f" (spectrogram: first {PLOT_MAX_S:g} s)" if len(shown) < len(audio) else ""
        self.transcript.value = (f'<div class="asrkit-transcript">{html.escape(transcript.text) or "<i>(nothing recognised)</i>"}</div>')
        self.picture.value = _png(plot_spectrogram(shown, transcript=transcript).figure)
        self.downloads.value = download_links(transcript, stem=name.rsplit(".", 1)[0])
        expecting = f" expecting “{html.escape(prompt)}”" if prompt else ""
        # last, so that a status saying "transcribed" means everything is on the page
        self.status.value = (f"<b>{html.escape(name)}</b>: {duration:.1f} s of audio, {len(transcript.words)} words, "
                             f"transcribed by {html.escape(model.name)}{expecting} in {seconds:.1f} s "
                             f"(RTF {seconds / max(duration, 1e-9):.2f}){note}")

"""Pictures of audio and transcripts, for notebooks and reports (matplotlib)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import librosa
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import asrkit._librosa  # noqa: F401  (sets NUMBA_CACHE_DIR before librosa loads numba)
from asrkit.audio import SAMPLE_RATE
from asrkit.contracts import Span, Transcript
from asrkit.features import FRAMES_PER_SECOND, FeatureConfig, log_mel

# Frequencies marked on a spectrogram's axis, Hz (speech lives mostly between 100 Hz and 4 kHz).
FREQUENCY_TICKS_HZ = (250, 500, 1000, 2000, 4000, 8000)
# Word labels on a spectrogram: font size (points), a character's width in ems (a generous average for
# sans-serif lower case), and the least gap between two labels, in ems; a label that would come
# closer to the one before it is left out, so long audio shows every few words instead of a smear.
WORD_FONT_PT = 8
CHAR_EM = 0.62
LABEL_GAP_EM = 0.8
# The caption (the transcript) takes at most this many lines above the picture; a longer one ends in "…".
CAPTION_LINES = 2
CAPTION_FONT_PT = 9


def mel_position(frequency_hz: float, *, config: FeatureConfig = FeatureConfig()) -> float:
    """Where ``frequency_hz`` lies on a log-mel picture's band axis (0 = centre of the lowest band).

    Usage
    -----
    ::

        round(mel_position(1000.0), 1), round(mel_position(8000.0), 1)  # 80 bands up to 8 kHz
        # (25.8, 79.0)
    """
    centres = librosa.mel_frequencies(
        n_mels=config.n_mels + 2, fmin=config.fmin, fmax=config.fmax or config.sample_rate / 2
    )[1:-1]
    return float(np.interp(frequency_hz, centres, np.arange(config.n_mels)))


def frequency_label(frequency_hz: float) -> str:
    """``"500 Hz"``, ``"2 kHz"``: a tick label."""
    return f"{frequency_hz / 1000:g} kHz" if frequency_hz >= 1000 else f"{frequency_hz:g} Hz"


def _caption(text: str, *, width_pt: float) -> str:
    per_line = max(int(width_pt / (CHAR_EM * CAPTION_FONT_PT)), 10)
    lines = textwrap.wrap(text, per_line) or [""]
    if len(lines) > CAPTION_LINES:
        lines = lines[:CAPTION_LINES]
        lines[-1] = lines[-1][: per_line - 1].rstrip() + "…"
    return "\n".join(lines)


def _word_labels(words: Sequence[Span], *, duration_s: float, seconds_per_pt: float) -> list[tuple[float, str]]:
    """(centre in seconds, text) of the word labels that fit: each starts at least a gap after the end
    of the one before, and none sticks out of the picture."""
    kept, free_from = [], 0.0
    for word in words:
        half = len(word.text) * CHAR_EM * WORD_FONT_PT * seconds_per_pt / 2
        centre = min(max((word.start + word.end) / 2, half), duration_s - half)
        if centre - half >= free_from:
            kept.append((centre, word.text))
            free_from = centre + half + LABEL_GAP_EM * WORD_FONT_PT * seconds_per_pt
    return kept


def plot_spectrogram(audio: np.ndarray, *, transcript: Transcript | None = None, ax: Axes | None = None) -> Axes:
    """Log-mel spectrogram of ``audio`` (shape (n_samples,), 16 kHz), with word times if given.

    Every word's time is shaded; its label is drawn where it does not overlap the one before (long audio
    shows every few words). The transcript is the caption, cut to :data:`CAPTION_LINES` lines.

    Usage
    -----
    ::

        ax = plot_spectrogram(load_audio("clip.flac"), transcript=model.transcribe(audio))
    """
    if ax is None:
        # a Figure not registered with pyplot is freed with its last reference, so repeated
        # plots in a long-running kernel do not pile up
        ax = Figure(figsize=(10, 3), layout="constrained").add_subplot()
    config = FeatureConfig()
    mel = log_mel(audio, config=config)
    duration = max(len(audio) / SAMPLE_RATE, 1e-3)
    ax.imshow(
        mel.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, len(mel) / FRAMES_PER_SECOND, -0.5, mel.shape[1] - 0.5),
    )
    ticks = [f for f in FREQUENCY_TICKS_HZ if f <= (config.fmax or config.sample_rate / 2)]
    ax.set_yticks([mel_position(f, config=config) for f in ticks], [frequency_label(f) for f in ticks])
    ax.set(xlabel="time (s)", ylabel="frequency", xlim=(0.0, duration))
    if transcript is not None:
        # the axes' width before layout: close enough to place labels that must not touch
        width_pt = ax.get_position().width * ax.figure.get_figwidth() * 72
        for word in transcript.words:
            ax.axvspan(word.start, word.end, color="white", alpha=0.12)
        for centre, text in _word_labels(transcript.words, duration_s=duration, seconds_per_pt=duration / width_pt):
            ax.text(
                centre,
                mel.shape[1] * 0.92,
                text,
                color="white",
                ha="center",
                va="top",
                fontsize=WORD_FONT_PT,
                clip_on=True,
            )
        ax.set_title(
            _caption(transcript.text or "(nothing recognised)", width_pt=width_pt), fontsize=CAPTION_FONT_PT, loc="left"
        )
    return ax


def plot_training(history: str | Path, *, ax: Axes | None = None) -> Axes:
    """Training loss and dev WER against steps, from a run's ``history.jsonl`` (``asrkit train``'s or
    ``asrkit finetune``'s).

    A run resumed from a checkpoint logs again the steps after it; the later record of a step wins.
    """
    records = [json.loads(line) for line in Path(history).read_text(encoding="utf-8").splitlines() if line.strip()]
    if ax is None:
        ax = Figure(figsize=(8, 3), layout="constrained").add_subplot()
    losses = sorted({r["step"]: r["loss"] for r in records if "loss" in r}.items())
    wers = sorted({r["step"]: 100 * r["dev_wer"] for r in records if "dev_wer" in r}.items())
    if losses:
        ax.plot(*zip(*losses), color="tab:blue", label="training loss")
    ax.set(xlabel="step", ylabel="loss")
    if wers:
        right = ax.twinx()
        right.plot(*zip(*wers), "o-", color="tab:red", label="dev WER (greedy)")
        right.set_ylim(bottom=0)
        right.set_ylabel("dev WER %")
        right.legend(loc="upper right")
    ax.legend(loc="upper left")
    return ax


def plot_stream_timeline(emissions, *, latencies: tuple[Sequence[float], Sequence[float]] = ((), ())) -> Figure:
    """How a live transcript evolved, and how late its words came.

    Left: each emission (a :class:`~asrkit.streaming.Emission`) as a row at the moment a listener saw
    it, its words drawn where they lie in the audio; partials pale, committed words dark. Right: the
    shown and committed latency of each final word (seconds after the word ended), as from
    :func:`asrkit.stream_metrics.word_latencies`.
    """
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    timeline, histogram = fig.subplots(1, 2, width_ratios=(2.2, 1))
    for e in emissions:
        seen = e.audio_s + e.lag_s
        for word in e.words:
            timeline.barh(
                seen, word.end - word.start, left=word.start, height=0.08, color="#1f4e79" if e.committed else "#9ecae1"
            )
            timeline.text(word.start, seen, word.text, fontsize=7, va="center", clip_on=True)
    timeline.set(
        xlabel="where the words are in the audio (s)",
        ylabel="when they were shown (s)",
        title="partials (pale) and commits (dark)",
    )
    shown, committed = latencies
    bins = np.linspace(0, max([*shown, *committed, 1.0]), 20)
    histogram.hist(
        [list(shown), list(committed)], bins=bins, label=["first shown", "committed"], color=["#9ecae1", "#1f4e79"]
    )
    histogram.set(xlabel="seconds after the word ended", ylabel="words", title="latency per word")
    histogram.legend()
    return fig

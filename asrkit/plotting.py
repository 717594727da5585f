"""Pictures of audio and transcripts, for notebooks and reports (matplotlib)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from asrkit.audio import SAMPLE_RATE
from asrkit.features import FRAMES_PER_SECOND, FeatureConfig, log_mel
from asrkit.models.base import Transcript


def plot_spectrogram(
    audio: np.ndarray, *, transcript: Transcript | None = None, ax: Axes | None = None
) -> Axes:
    """Log-mel spectrogram of ``audio`` (shape (n_samples,), 16 kHz), with word times if given.

    Examples
    --------
    >>> ax = plot_spectrogram(load_audio("clip.flac"), transcript=model.transcribe(audio))  # doctest: +SKIP
    """
    if ax is None:
        # a Figure not registered with pyplot is freed with its last reference, so repeated
        # plots in a long-running kernel do not pile up
        ax = Figure(figsize=(10, 3), layout="constrained").add_subplot()
    mel = log_mel(audio, config=FeatureConfig())
    duration = len(audio) / SAMPLE_RATE
    ax.imshow(
        mel.T, origin="lower", aspect="auto", cmap="magma",
        extent=(0.0, len(mel) / FRAMES_PER_SECOND, 0, mel.shape[1]),
    )
    ax.set(xlabel="time (s)", ylabel="mel band", xlim=(0.0, max(duration, 1e-3)))
    if transcript is not None:
        for word in transcript.words:
            ax.axvspan(word.start, word.end, color="white", alpha=0.12)
            ax.text((word.start + word.end) / 2, mel.shape[1] * 0.92, word.text, color="white",
                    ha="center", va="top", fontsize=8, clip_on=True)
        ax.set_title(transcript.text or "(nothing recognised)", fontsize=9, loc="left")
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
            timeline.barh(seen, word.end - word.start, left=word.start, height=0.08,
                          color="#1f4e79" if e.committed else "#9ecae1")
            timeline.text(word.start, seen, word.text, fontsize=7, va="center", clip_on=True)
    timeline.set(xlabel="where the words are in the audio (s)", ylabel="when they were shown (s)",
                 title="partials (pale) and commits (dark)")
    shown, committed = latencies
    bins = np.linspace(0, max([*shown, *committed, 1.0]), 20)
    histogram.hist([list(shown), list(committed)], bins=bins, label=["first shown", "committed"],
                   color=["#9ecae1", "#1f4e79"])
    histogram.set(xlabel="seconds after the word ended", ylabel="words", title="latency per word")
    histogram.legend()
    return fig

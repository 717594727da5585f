"""Checking a take before it enters the adaptation set, and cutting a continuous recording into takes."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from asrkit.audio import SAMPLE_RATE


@dataclass(frozen=True)
class QualityOptions:
    """Thresholds of :func:`check_take`."""

    # shortest take accepted, seconds: a prompt read in less was cut off or never read
    min_duration_s: float = 0.6
    # longest take accepted, seconds: longer means the recording ran on past the prompt
    max_duration_s: float = 20.0
    # seconds of speech (windows near the loudest one) below which the take holds no reading
    min_speech_s: float = 0.25
    # the loudest window's level (dBFS) below which the take is silence
    silence_db: float = -60.0
    # ... and below which it is too quiet to learn from (quiet FSDD speakers reach about -40)
    quiet_db: float = -48.0
    # a window counts as speech within this many dB of the loudest one
    speech_range_db: float = 30.0
    # samples at or beyond this magnitude are clipped
    clip_level: float = 0.99
    # more clipped samples than this share means distortion from too much input gain
    max_clipped_fraction: float = 0.001
    # the level is measured over windows of this many seconds
    window_s: float = 0.05


@dataclass(frozen=True)
class TakeQuality:
    """What :func:`check_take` measured, and what is wrong (nothing when ``ok``)."""

    duration_s: float
    # RMS level of the loudest window, dBFS
    level_db: float
    # seconds of windows within ``speech_range_db`` of the loudest
    speech_s: float
    # share of samples at the clip level
    clipped_fraction: float
    # one sentence per problem, for the user
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_take(audio: np.ndarray, *, options: QualityOptions = QualityOptions()) -> TakeQuality:
    """Flag a recording that should not enter the adaptation set: silence, too quiet, clipped, too short, too long.

    Parameters
    ----------
    audio : np.ndarray
        Mono float samples at 16 kHz, shape (n,).

    Usage
    -----
    ::

        check_take(np.zeros(16000, np.float32)).problems[0]
        # 'silence: nothing was heard (loudest -inf dBFS); check the microphone is on and not muted'
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"a take must be mono samples of shape (n,), got shape {audio.shape}")
    o = options
    duration = len(audio) / SAMPLE_RATE
    window = max(1, round(o.window_s * SAMPLE_RATE))
    frames = audio[: len(audio) // window * window].reshape(-1, window)
    with np.errstate(divide="ignore"):  # digital silence is -inf dBFS
        levels = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1)) if len(frames) else np.array([-np.inf])
    level = float(levels.max())
    speech_s = float(np.sum(levels >= max(level - o.speech_range_db, o.silence_db))) * window / SAMPLE_RATE
    clipped = float(np.mean(np.abs(audio) >= o.clip_level)) if len(audio) else 0.0
    problems = []
    if level < o.silence_db:
        problems.append(
            f"silence: nothing was heard (loudest {level:.0f} dBFS); check the microphone is on and not muted"
        )
    elif level < o.quiet_db:
        problems.append(
            f"too quiet (loudest {level:.0f} dBFS, need {o.quiet_db:.0f}): speak closer or raise the input level"
        )
    if clipped > o.max_clipped_fraction:
        problems.append(f"clipping: {100 * clipped:.1f}% of samples at full scale; lower the input level or move back")
    if duration < o.min_duration_s:
        problems.append(f"too short ({duration:.2f} s, need {o.min_duration_s:g} s): the reading was cut off")
    elif level >= o.silence_db and speech_s < o.min_speech_s:
        problems.append(f"too short: only {speech_s:.2f} s of speech; read the whole prompt")
    if duration > o.max_duration_s:
        problems.append(f"too long ({duration:.1f} s, at most {o.max_duration_s:g} s): stop after reading the prompt")
    return TakeQuality(duration, level, speech_s, clipped, tuple(problems))


@dataclass(frozen=True)
class HandsFreeOptions:
    """How :class:`TakeSplitter` finds takes in a continuous recording."""

    # the detector's resolution, seconds
    frame_s: float = 0.02
    # a take ends after this much silence: longer than a pause between words, shorter than one between prompts
    end_silence_s: float = 0.7
    # audio kept before the first loud frame and after the last, for soft onsets and endings
    margin_s: float = 0.25
    # a frame is speech this many dB above the noise floor ...
    above_floor_db: float = 12.0
    # ... and above this level (dBFS), so a digitally silent input does not make every sound speech
    min_level_db: float = -55.0
    # the noise floor is the quietest tenth of this many seconds of recent frames
    floor_window_s: float = 10.0
    # loud stretches shorter than this are clicks or breaths, not takes
    min_speech_s: float = 0.15
    # a take is cut here even without a pause (the quality check then calls it too long)
    max_take_s: float = 25.0


class TakeSplitter:
    """Cut a continuous 16 kHz recording into takes at pauses, with an energy detector.

    Unlike :class:`asrkit.vad.EnergyVAD`'s fixed level, the threshold follows the noise floor:
    readers' levels and rooms vary, and a quiet reader's take must not break apart inside a prompt.

    Usage
    -----
    ::

        splitter = TakeSplitter()
        tone = 0.1 * np.sin(np.arange(16000) / 5).astype(np.float32)
        silence = np.zeros(16000, np.float32)
        [round(len(t) / 16000, 2) for t in splitter.push(np.concatenate([silence, tone, silence]))]
        # [1.48]
    """

    def __init__(self, *, options: HandsFreeOptions = HandsFreeOptions()) -> None:
        self.options = options
        self._frame = round(options.frame_s * SAMPLE_RATE)
        self._margin = round(options.margin_s / options.frame_s)
        self._levels: deque[float] = deque(maxlen=round(options.floor_window_s / options.frame_s))
        self._before: deque[np.ndarray] = deque(maxlen=self._margin + 1)
        self._pending = np.zeros(0, np.float32)
        # frames of the take under way (None between takes), its loud frames and its trailing quiet ones
        self._take: list[np.ndarray] | None = None
        self._loud = self._quiet = 0

    @property
    def in_take(self) -> bool:
        return self._take is not None

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add mono float samples; returns the takes they completed (usually none)."""
        self._pending = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        done = []
        n_frames = len(self._pending) // self._frame
        for frame in self._pending[: n_frames * self._frame].reshape(n_frames, self._frame):
            take = self._step(frame)
            if take is not None:
                done.append(take)
        self._pending = self._pending[n_frames * self._frame :]
        return done

    def flush(self) -> np.ndarray | None:
        """The take under way, ended now (the recording stopped); None if there is none."""
        return self._end() if self._take is not None else None

    def _step(self, frame: np.ndarray) -> np.ndarray | None:
        o = self.options
        level = 10 * math.log10(float(np.mean(frame.astype(np.float64) ** 2)) + 1e-12)
        self._levels.append(level)
        loud = level > max(o.min_level_db, float(np.percentile(self._levels, 10)) + o.above_floor_db)
        if self._take is None:
            self._before.append(frame)
            if loud:
                self._take, self._loud, self._quiet = list(self._before), 1, 0
            return None
        self._take.append(frame)
        self._loud, self._quiet = (self._loud + 1, 0) if loud else (self._loud, self._quiet + 1)
        if self._quiet * o.frame_s >= o.end_silence_s or len(self._take) * o.frame_s >= o.max_take_s:
            return self._end()
        return None

    def _end(self) -> np.ndarray | None:
        frames, loud, quiet = self._take or [], self._loud, self._quiet
        self._take, self._loud, self._quiet = None, 0, 0
        self._before.clear()
        if loud * self.options.frame_s < self.options.min_speech_s:
            return None
        return np.concatenate(frames[: len(frames) - max(0, quiet - self._margin)])

"""Readings of digit prompts pieced together from recordings of single digits, standing in for a user at
the microphone in the adaptation tests."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.manifest import read_manifest
from asrkit.text import normalize_text


def digit_readings(
    prompts: Sequence[str], *, manifest: Path, speaker: str | None = None, gap_s: float = 0.25
) -> tuple[list[np.ndarray], list[Path]]:
    """Each prompt (digit words) read by joining single-digit clips of ``manifest`` (of ``speaker``, if given).

    Each clip is used once, in manifest order, and the digits of a prompt are joined by ``gap_s`` seconds of
    silence. Returns the readings (float32, 16 kHz) and the clips used.
    """
    clips: dict[str, deque[Path]] = {}
    for utt in read_manifest(manifest):
        if speaker is None or utt.speaker == speaker:
            clips.setdefault(normalize_text(utt.transcript), deque()).append(utt.audio_path)
    gap = np.zeros(round(gap_s * SAMPLE_RATE), np.float32)
    readings, used = [], []
    for prompt in prompts:
        parts = []
        for word in prompt.split():
            if not clips.get(word):
                raise ValueError(
                    f"{manifest} has no {'more ' if word in clips else ''}recordings of {word!r}"
                    + (f" by {speaker}" if speaker else "")
                )
            used.append(clips[word].popleft())
            parts += [load_audio(used[-1]), gap]
        readings.append(np.concatenate(parts[:-1]))
    return readings, used

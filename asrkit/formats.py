"""Writing transcripts as plain text, JSON, SubRip (SRT) and WebVTT subtitles."""

from __future__ import annotations

import json

from asrkit.models.base import Span, Transcript

FORMATS = ("text", "json", "srt", "vtt")
# Subtitle cues break before they pass either bound, as broadcast guidelines suggest.
MAX_CUE_CHARS = 42
MAX_CUE_SECONDS = 6.0


def cues(transcript: Transcript) -> list[Span]:
    """Group a transcript's words into subtitle cues; one cue for the whole audio without word times."""
    if not transcript.words:
        return [Span(transcript.text, 0.0, transcript.duration_s)] if transcript.text else []
    groups: list[list[Span]] = [[]]
    for word in transcript.words:
        group = groups[-1]
        if group and (
            len(" ".join(w.text for w in group)) + 1 + len(word.text) > MAX_CUE_CHARS
            or word.end - group[0].start > MAX_CUE_SECONDS
        ):
            groups.append(group := [])
        group.append(word)
    return [Span(" ".join(w.text for w in g), g[0].start, g[-1].end) for g in groups]


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(transcript: Transcript) -> str:
    """SubRip subtitles.

    Examples
    --------
    >>> t = Transcript("hi there", 1.0, words=(Span("hi", 0.1, 0.3), Span("there", 0.4, 0.8)))
    >>> print(to_srt(t))
    1
    00:00:00,100 --> 00:00:00,800
    hi there
    <BLANKLINE>
    """
    return "".join(
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n\n"
        for i, c in enumerate(cues(transcript), start=1)
    )[:-1]


def to_vtt(transcript: Transcript) -> str:
    """WebVTT subtitles."""
    body = "".join(
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{c.text}\n\n" for c in cues(transcript)
    )
    return "WEBVTT\n\n" + body


def to_json(transcript: Transcript, **extra: object) -> str:
    """The transcript with its word and character times, plus any ``extra`` top-level fields."""
    return json.dumps({**extra, **transcript.to_dict()}, indent=2)


def render(transcript: Transcript, fmt: str, **extra: object) -> str:
    """The transcript in one of :data:`FORMATS`."""
    if fmt == "text":
        return transcript.text + "\n"
    if fmt == "json":
        return to_json(transcript, **extra) + "\n"
    if fmt == "srt":
        return to_srt(transcript)
    if fmt == "vtt":
        return to_vtt(transcript)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")

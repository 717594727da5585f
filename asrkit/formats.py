"""Writing transcripts as plain text, JSON, SubRip (SRT) and WebVTT subtitles.

Subtitle cues follow common broadcast guidelines (BBC, EBU, Netflix): at most two lines of 42
characters, on screen 1 to 7 seconds, a new cue after a pause and, where the bounds allow, at the start
of a sentence, and no two cues on screen at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import accumulate

from asrkit.contracts import Span, Transcript

FORMATS = ("text", "json", "srt", "vtt")
# Characters a subtitle line holds at most; a cue holds two lines (and the line break between them).
MAX_LINE_CHARS = 42
MAX_CUE_CHARS = 2 * MAX_LINE_CHARS + 1
# Seconds a cue stays on screen: shorter ones cannot be read, longer ones are read twice.
MIN_CUE_SECONDS = 1.0
MAX_CUE_SECONDS = 7.0
# A silence at least this long between two words ends a cue: no cue runs across it.
PAUSE_SECONDS = 0.5
# Seconds a word takes to say, per character, at most (slow speech; about twice the usual): a word that
# lasts PAUSE_SECONDS longer than this holds a pause.
SPOKEN_SECONDS_PER_CHAR = 0.15
# Times in JSON are rounded to this many decimals of a second (milliseconds, as in SRT and WebVTT).
TIME_DECIMALS = 3
# Last characters of a word that ends a sentence or a clause (closing quotes and brackets aside).
SENTENCE_ENDS = (".", "?", "!", "…")
CLAUSE_ENDS = (",", ";", ":", "–", "—")
# Abbreviations whose full stop ends no sentence (Whisper writes "Mr. John Dashwood"), in lower case.
TITLES = frozenset({"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "e.g.", "i.e."})
# Words that lean on the word after them: a line or a cue should not end on one.
LEANING_WORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "nor",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "than",
        "that",
        "if",
        "my",
        "your",
        "his",
        "her",
        "its",
        "our",
        "their",
    }
)

# Costs of a way of cutting speech into cues, in units of one cue (so fewer cues come first): a cue
# that holds the end of one sentence and the start of the next, one on screen for less than
# MIN_CUE_SECONDS, and a cue that ends inside a clause, or on a leaning word.
_JOINED_SENTENCES_COST = 2.0
_SHORT_CUE_COST = 3.0
_MID_CLAUSE_COST = 0.4
_LEANING_END_COST = 0.8
# Weight of a cue's squared share of MAX_CUE_CHARS: among equally many cues, even lengths are cheaper.
_EVEN_LENGTH_COST = 0.5
# Costs of a line break, in characters of difference between the two lines' lengths.
_LINE_BREAK_AT_CLAUSE = -12
_LINE_BREAK_AFTER_LEANING = 12


def _ends_with(word: str, ends: tuple[str, ...]) -> bool:
    return word.rstrip("\"'”’)]").endswith(ends) and word.lower() not in TITLES


def _as_written(words: Sequence[Span], text: str) -> list[Span]:
    """``words`` with the pieces that ``text`` writes as one word joined (Whisper times "ill-disposed"
    as "ill" and "-disposed"); a word ``text`` does not hold at its place stays as it is."""
    joined: list[Span] = []
    cursor = 0
    for word in words:
        found = text.find(word.text, cursor)
        if found < 0 or text[cursor:found].strip():
            joined.append(word)
            continue
        if joined and found == cursor and cursor:
            joined[-1] = Span(joined[-1].text + word.text, joined[-1].start, word.end)
        else:
            joined.append(word)
        cursor = found + len(word.text)
    return joined


def _timed_words(transcript: Transcript) -> list[Span]:
    """The transcript's words as written, with times that never run backwards, none longer than a line.

    Without word times, the words share the audio's duration in proportion to their lengths.
    """
    if transcript.words:
        spans = [Span(w.text.strip(), w.start, w.end) for w in transcript.words if w.text.strip()]
        words = _as_written(spans, transcript.text)
    else:
        texts = transcript.text.split()
        step = transcript.duration_s / max(sum(len(t) + 1 for t in texts), 1)
        starts = [step * chars for chars in accumulate((len(t) + 1 for t in texts), initial=0)]
        words = [Span(t, starts[k], starts[k + 1]) for k, t in enumerate(texts)]
    timed: list[Span] = []
    for word in words:
        start = max(word.start, timed[-1].start if timed else word.start)
        end = max(word.end, start)
        # a word too long for a line (a URL, a run of digits) is cut into lines' worth, sharing its time
        pieces = [word.text[k : k + MAX_LINE_CHARS] for k in range(0, len(word.text), MAX_LINE_CHARS)]
        step = (end - start) / len(pieces)
        timed.extend(Span(p, start + k * step, start + (k + 1) * step) for k, p in enumerate(pieces))
    return timed


def _pause_before(previous: Span, word: Span) -> bool:
    """Whether a pause of at least PAUSE_SECONDS comes between ``previous`` and ``word``: a gap, or a
    word that lasts that much longer than it takes to say (Whisper's word times stretch the word after
    a silence back over it)."""
    stretched = word.end - word.start - SPOKEN_SECONDS_PER_CHAR * len(word.text)
    return word.start - previous.end >= PAUSE_SECONDS or stretched >= PAUSE_SECONDS


def _split_lines(texts: Sequence[str]) -> list[str]:
    """``texts`` (words that fit in a cue, as every cue :func:`_cut` makes does) as one line, or as two
    lines broken where they read best: near the middle, at a clause end, not after a leaning word."""
    if len(" ".join(texts)) <= MAX_LINE_CHARS:
        return [" ".join(texts)]

    def cost(k: int) -> int:
        cost = abs(len(" ".join(texts[:k])) - len(" ".join(texts[k:])))
        if _ends_with(texts[k - 1], SENTENCE_ENDS + CLAUSE_ENDS):
            return cost + _LINE_BREAK_AT_CLAUSE
        return cost + _LINE_BREAK_AFTER_LEANING * (texts[k - 1].lower() in LEANING_WORDS)

    fitting = [
        k for k in range(1, len(texts)) if max(len(" ".join(texts[:k])), len(" ".join(texts[k:]))) <= MAX_LINE_CHARS
    ]
    k = min(fitting, key=cost)
    return [" ".join(texts[:k]), " ".join(texts[k:])]


def _cut(run: Sequence[Span], room: Sequence[float]) -> list[tuple[int, int]]:
    """The cheapest cut of ``run`` (words with no pause between them) into cues, as (first, end) indices.

    ``room[k]`` is the time until which a cue ending on word ``k`` may stay on screen: the next word's start.
    """
    n = len(run)
    texts = [w.text for w in run]
    # characters of words[a:b] joined by spaces: written_to[b] - written_to[a] - 1
    written_to = list(accumulate((len(t) + 1 for t in texts), initial=0))
    sentences_to = list(accumulate((_ends_with(t, SENTENCE_ENDS) for t in texts), initial=0))
    breaks = [
        0.0
        if _ends_with(t, SENTENCE_ENDS + CLAUSE_ENDS)
        else _LEANING_END_COST
        if t.lower() in LEANING_WORDS
        else _MID_CLAUSE_COST
        for t in texts
    ]
    best = [0.0] + [float("inf")] * n
    back = [0] * (n + 1)
    for i in range(n):
        # the words a first line holds: the second line of a cue from word i starts at word `second`
        second = i + 1
        while second < n and written_to[second + 1] - written_to[i] - 1 <= MAX_LINE_CHARS:
            second += 1
        for j in range(i + 1, n + 1):
            chars = written_to[j] - written_to[i] - 1
            # a longer cue neither fits nor gets shorter, so the first that does not ends the search
            fits = j <= second or written_to[j] - written_to[second] - 1 <= MAX_LINE_CHARS
            if j > i + 1 and (run[j - 1].end - run[i].start > MAX_CUE_SECONDS or not fits):
                break
            cost = 1.0 + _EVEN_LENGTH_COST * (chars / MAX_CUE_CHARS) ** 2
            cost += _JOINED_SENTENCES_COST * (sentences_to[j - 1] > sentences_to[i])
            cost += _SHORT_CUE_COST * (room[j - 1] - run[i].start < MIN_CUE_SECONDS)
            cost += breaks[j - 1] if j < n else 0.0
            if best[i] + cost < best[j]:
                best[j], back[j] = best[i] + cost, i
    bounds = []
    j = n
    while j:
        bounds.append((back[j], j))
        j = back[j]
    return bounds[::-1]


def cues(transcript: Transcript) -> list[Span]:
    """Cut a transcript into subtitle cues; a cue's text holds its lines, separated by a newline.

    A pause of :data:`PAUSE_SECONDS` or more between words always ends a cue (a silence between their
    times, or a word that lasts far longer than it takes to say, see :data:`SPOKEN_SECONDS_PER_CHAR`;
    Whisper's word times stretch the word after a silence over it). Between pauses, the
    words are cut into the fewest cues of at most two lines of :data:`MAX_LINE_CHARS` and at most
    :data:`MAX_CUE_SECONDS`; among those, cues start with sentences, last at least
    :data:`MIN_CUE_SECONDS` (a shorter cue is joined to its neighbour), end at clause ends rather than
    after "the" or "of", and have even lengths. A cue shorter than :data:`MIN_CUE_SECONDS` stays on
    screen longer where the next one leaves room; cues never overlap. A single word longer than
    :data:`MAX_CUE_SECONDS` is one cue. Without word times (some backends give none), the words share
    the audio's duration in proportion to their lengths.

    Examples
    --------
    >>> words = (Span("Hello.", 0.0, 0.4), Span("Is", 1.2, 1.3), Span("anyone", 1.3, 1.6), Span("there?", 1.6, 2.5))
    >>> cues(Transcript("Hello. Is anyone there?", 3.0, words=words))
    [Span(text='Hello.', start=0.0, end=1.0), Span(text='Is anyone there?', start=1.2, end=2.5)]
    """
    words = _timed_words(transcript)
    if not words:
        return []
    audio_end = max(transcript.duration_s, words[-1].end)
    room = [w.start for w in words[1:]] + [audio_end]
    # shared-out times (no word times) show no pauses
    measured = bool(transcript.words)
    runs = [0] + [k for k in range(1, len(words)) if measured and _pause_before(words[k - 1], words[k])]
    result = []
    for first, end in zip(runs, runs[1:] + [len(words)]):
        for i, j in _cut(words[first:end], room[first:end]):
            cue = words[first + i : first + j]
            start = cue[0].start
            stop = max(start, min(max(cue[-1].end, start + MIN_CUE_SECONDS), room[first + j - 1]))
            result.append(Span("\n".join(_split_lines([w.text for w in cue])), start, stop))
    return result


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
    >>> t = Transcript("hi there", 2.0, words=(Span("hi", 0.1, 0.5), Span("there", 0.6, 1.4)))
    >>> print(to_srt(t))
    1
    00:00:00,100 --> 00:00:01,400
    hi there
    <BLANKLINE>
    """
    return "".join(
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n\n"
        for i, c in enumerate(cues(transcript), start=1)
    )[:-1]


def to_vtt(transcript: Transcript) -> str:
    """WebVTT subtitles."""
    body = "".join(f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{c.text}\n\n" for c in cues(transcript))
    return "WEBVTT\n\n" + body


def to_json(transcript: Transcript, **extra: object) -> str:
    """The transcript with its word and character times (in seconds, rounded to milliseconds), plus any
    ``extra`` top-level fields."""
    data = transcript.to_dict()
    data["duration_s"] = round(data["duration_s"], TIME_DECIMALS)
    for span in (*data["words"], *data["chars"]):
        span["start"], span["end"] = round(span["start"], TIME_DECIMALS), round(span["end"], TIME_DECIMALS)
    return json.dumps({**extra, **data}, indent=2)


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

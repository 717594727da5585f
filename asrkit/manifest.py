"""Manifests: lists of audio files with their transcripts.

Three layouts are read: asrkit's TSV (header ``path duration_s transcript speaker ...``, extra columns
ignored), NeMo's JSON lines (``audio_filepath``, ``text``, optional ``duration``), and a LibriSpeech
directory (``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` beside the ``.flac`` files). A
relative audio path is relative to the manifest's folder, as in NeMo.

What is refused (:class:`ManifestError`, naming the file and line): a manifest with no entries, an empty
audio path, a JSON field of the wrong type (``"text": null`` is not the word "None"), and a duration that
is not a finite number of seconds of at least 0. What is read but warned about (:class:`ManifestWarning`,
naming the lines): the same audio file on several lines, which counts it once per line, as NeMo does when a
manifest repeats a clip on purpose. An empty transcript is read as it is (it trains a model on silence);
evaluation leaves it out of the WER, see :func:`asrkit.evaluate.scorable`. A UTF-8 byte-order mark is
skipped.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from asrkit.errors import AsrkitError

TSV_COLUMNS = ("path", "transcript")
JSONL_KEYS = ("audio_filepath", "text")
# utf-8-sig reads plain UTF-8 too, and drops the byte-order mark that Windows editors put first
ENCODING = "utf-8-sig"
# Byte-order marks of UTF-16, the "Unicode" some editors save as: named in the error, as a hint.
UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")
# A warning lists at most this many repeated files, then says how many more there are.
MAX_NAMED = 10


class ManifestError(AsrkitError, ValueError):
    """A manifest that cannot be read; the message names the file and line."""


class ManifestWarning(UserWarning):
    """A manifest that reads, with entries worth a look; the message names the file and lines."""


@dataclass(frozen=True)
class Utterance:
    """One manifest entry."""

    # the audio file, absolute or relative to the working directory
    audio_path: Path
    # the reference text as written in the manifest (scoring normalises it)
    transcript: str
    # duration in seconds as the manifest states it; None when it does not
    duration_s: float | None = None
    # speaker label, "" when unknown
    speaker: str = ""

    @property
    def id(self) -> str:
        return self.audio_path.stem


def _duration(value: object, where: str) -> float | None:
    if value is None or value == "":
        return None
    # JSON's true would otherwise read as 1.0 s
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ManifestError(f"{where}: duration {value!r} is not a number")
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        raise ManifestError(f"{where}: duration {value!r} is not a number") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ManifestError(f"{where}: duration {value!r} must be a finite number of seconds, at least 0")
    return seconds


def _audio_path(folder: Path, value: str, where: str, field: str) -> Path:
    # an empty path would name the manifest's own folder; a NUL byte no file system accepts
    if not value.strip() or "\0" in value:
        raise ManifestError(f"{where}: field {field!r} must name an audio file, got {value!r}")
    return folder / value


def _json_string(entry: dict, key: str, where: str) -> str:
    value = entry[key]
    if not isinstance(value, str):
        raise ManifestError(f"{where}: field {key!r} must be a string, got {json.dumps(value)[:40]}")
    return value


def _json_speaker(entry: dict, where: str) -> str:
    # NeMo manifests number their speakers as often as they name them
    value = entry.get("speaker")
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ManifestError(f"{where}: field 'speaker' must be a string or an integer, got {json.dumps(value)[:40]}")
    return str(value)


def _read_tsv(path: Path) -> list[tuple[str, Utterance]]:
    with path.open(newline="", encoding=ENCODING) as f:
        # transcripts hold quotes ("'em") that csv's default quoting would swallow
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames is None:
            raise ManifestError(
                f"{path}: empty file; a manifest starts with a header line naming its columns "
                f"({', '.join(TSV_COLUMNS)}, ...)"
            )
        missing = [c for c in TSV_COLUMNS if c not in reader.fieldnames]
        if missing:
            raise ManifestError(f"{path}: header lacks column(s) {', '.join(missing)}")
        rows = []
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row or any(row[c] is None for c in TSV_COLUMNS):
                    raise ManifestError(f"{where}: expected {len(reader.fieldnames)} tab-separated fields")
                utterance = Utterance(
                    audio_path=_audio_path(path.parent, row["path"], where, "path"),
                    transcript=row["transcript"],
                    duration_s=_duration(row.get("duration_s"), where),
                    speaker=row.get("speaker") or "",
                )
                rows.append((where, utterance))
        except csv.Error as err:  # a line beyond csv's field size limit, for one; raised before it is counted
            raise ManifestError(f"{path}:{reader.line_num + 1}: {err}") from None
    return rows


def _read_jsonl(path: Path) -> list[tuple[str, Utterance]]:
    rows = []
    with path.open(encoding=ENCODING) as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            where = f"{path}:{line}"
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as err:
                raise ManifestError(f"{where}: not JSON ({err.msg})") from None
            except ValueError as err:  # an integer of more digits than Python converts
                raise ManifestError(f"{where}: not JSON ({err})") from None
            except RecursionError:
                raise ManifestError(f"{where}: JSON nested too deeply") from None
            if not isinstance(entry, dict) or any(k not in entry for k in JSONL_KEYS):
                raise ManifestError(f"{where}: needs keys {', '.join(JSONL_KEYS)}")
            utterance = Utterance(
                audio_path=_audio_path(
                    path.parent, _json_string(entry, "audio_filepath", where), where, "audio_filepath"
                ),
                transcript=_json_string(entry, "text", where),
                duration_s=_duration(entry.get("duration"), where),
                speaker=_json_speaker(entry, where),
            )
            rows.append((where, utterance))
    return rows


def _read_librispeech(root: Path) -> list[tuple[str, Utterance]]:
    rows = []
    for listing in sorted(root.rglob("*.trans.txt")):
        speaker = listing.name.split("-")[0]
        for line, text in enumerate(listing.read_text(encoding=ENCODING).splitlines(), start=1):
            if not text.strip():
                continue
            utt_id, _, transcript = text.partition(" ")
            if not transcript:
                raise ManifestError(f"{listing}:{line}: expected '<utterance-id> <transcript>'")
            rows.append(
                (f"{listing}:{line}", Utterance(listing.parent / f"{utt_id}.flac", transcript.strip(), None, speaker))
            )
    if not rows:
        raise ManifestError(f"{root}: a folder, but no LibriSpeech *.trans.txt files below it")
    return rows


def _warn_repeats(path: Path, rows: list[tuple[str, Utterance]]) -> None:
    lines: dict[str, list[str]] = {}
    for where, utterance in rows:
        lines.setdefault(os.path.normpath(utterance.audio_path), []).append(where.removeprefix(f"{path}:"))
    repeated = [(audio, at) for audio, at in lines.items() if len(at) > 1]
    if not repeated:
        return
    named = "; ".join(f"{audio} on lines {', '.join(at)}" for audio, at in repeated[:MAX_NAMED])
    more = f" (and {len(repeated) - MAX_NAMED} more)" if len(repeated) > MAX_NAMED else ""
    warnings.warn(
        f"{path}: {len(repeated)} audio file(s) appear more than once and count once per line: {named}{more}",
        ManifestWarning,
        stacklevel=3,
    )


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a TSV (``.tsv``) or NeMo JSON-lines (``.json``, ``.jsonl``) manifest, or a LibriSpeech folder.

    Usage
    -----
    ::

        utterances = read_manifest("dev.tsv")
        utterances[0].audio_path, utterances[0].transcript
    """
    path = Path(path)
    if path.is_dir():
        rows = _read_librispeech(path)
    elif not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    elif path.suffix not in (".tsv", ".json", ".jsonl"):
        raise ManifestError(f"{path}: unknown manifest type {path.suffix!r}; use .tsv, .json or .jsonl")
    else:
        try:
            rows = _read_tsv(path) if path.suffix == ".tsv" else _read_jsonl(path)
        except UnicodeDecodeError:
            with path.open("rb") as f:
                utf16 = f.read(2) in UTF16_MARKS
            hint = "; it is UTF-16: save it as UTF-8" if utf16 else ""
            raise ManifestError(f"{path}: not UTF-8 text{hint}") from None
        if not rows:
            raise ManifestError(f"{path}: no entries; nothing to transcribe or score")
    _warn_repeats(path, rows)
    return [utterance for _, utterance in rows]

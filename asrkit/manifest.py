"""Manifests: lists of audio files with their transcripts.

Three layouts are read: asrkit's TSV (header ``path duration_s transcript speaker ...``, extra columns
ignored), NeMo's JSON lines (``audio_filepath``, ``text``, optional ``duration``), and a LibriSpeech
directory (``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` beside the ``.flac`` files). A
relative audio path is relative to the manifest's folder, as in NeMo.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from asrkit.errors import AsrkitError

TSV_COLUMNS = ("path", "transcript")
JSONL_KEYS = ("audio_filepath", "text")


class ManifestError(AsrkitError, ValueError):
    """A manifest that cannot be read; the message names the file and line."""


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
    if value in (None, ""):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: duration {value!r} is not a number") from None


def _read_tsv(path: Path) -> list[Utterance]:
    with path.open(newline="", encoding="utf-8") as f:
        # transcripts hold quotes ("'em") that csv's default quoting would swallow
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in TSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: header lacks column(s) {', '.join(missing)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or any(row[c] is None for c in TSV_COLUMNS):
                raise ManifestError(f"{path}:{line}: expected {len(reader.fieldnames)} tab-separated fields")
            rows.append(
                Utterance(
                    audio_path=path.parent / row["path"],
                    transcript=row["transcript"],
                    duration_s=_duration(row.get("duration_s"), f"{path}:{line}"),
                    speaker=row.get("speaker") or "",
                )
            )
    return rows


def _read_jsonl(path: Path) -> list[Utterance]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
            except json.JSONDecodeError as err:
                raise ManifestError(f"{path}:{line}: not JSON ({err.msg})") from None
            if not isinstance(entry, dict) or any(k not in entry for k in JSONL_KEYS):
                raise ManifestError(f"{path}:{line}: needs keys {', '.join(JSONL_KEYS)}")
            rows.append(
                Utterance(
                    audio_path=path.parent / str(entry["audio_filepath"]),
                    transcript=str(entry["text"]),
                    duration_s=_duration(entry.get("duration"), f"{path}:{line}"),
                    speaker=str(entry.get("speaker", "")),
                )
            )
    return rows


def _read_librispeech(root: Path) -> list[Utterance]:
    rows = []
    for listing in sorted(root.rglob("*.trans.txt")):
        speaker = listing.name.split("-")[0]
        for line, text in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            utt_id, _, transcript = text.partition(" ")
            if not transcript:
                raise ManifestError(f"{listing}:{line}: expected '<utterance-id> <transcript>'")
            rows.append(Utterance(listing.parent / f"{utt_id}.flac", transcript.strip(), None, speaker))
    if not rows:
        raise ManifestError(f"{root}: a folder, but no LibriSpeech *.trans.txt files below it")
    return rows


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a TSV (``.tsv``) or NeMo JSON-lines (``.json``, ``.jsonl``) manifest, or a LibriSpeech folder.

    Examples
    --------
    >>> utts = read_manifest("../shared/data/splits/fixtures_dev.tsv")  # doctest: +SKIP
    >>> utts[0].transcript  # doctest: +SKIP
    'and mister john dashwood had then leisure to consider ...'
    """
    path = Path(path)
    if path.is_dir():
        return _read_librispeech(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    try:
        if path.suffix == ".tsv":
            return _read_tsv(path)
        if path.suffix in (".json", ".jsonl"):
            return _read_jsonl(path)
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None
    raise ManifestError(f"{path}: unknown manifest type {path.suffix!r}; use .tsv, .json or .jsonl")

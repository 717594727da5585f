import json
import os
import subprocess
import sys

import jiwer
import pytest
from conftest import FIXTURES_DEV, JFK, shared_path

from asrkit.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from asrkit.metrics import score
from asrkit.models import DEFAULT_MODEL
from asrkit.text import normalize_text


def test_console_script_transcribes_a_real_clip_with_the_default_model():
    clip = shared_path("speech/fixtures/wav/ps_goforward.flac")
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "asrkit"), "transcribe", str(clip)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == EXIT_OK, done.stderr
    # "go forward ten meters": the default model must get most of it
    assert score("go forward ten meters", done.stdout).wer <= 0.5, done.stdout


@pytest.mark.parametrize("fmt, start", [("srt", "1\n00:00:"), ("vtt", "WEBVTT\n\n"), ("json", "{")])
def test_subtitle_and_json_formats(tiny_model_dir, capsys, fmt, start):
    assert main(["transcribe", str(shared_path(JFK)), "--model", str(tiny_model_dir), "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        data = json.loads(out)
        assert data["model"] == "tiny-test" and data["model_trained"] is False
        assert data["duration_s"] == pytest.approx(11.0, abs=0.05)
    elif out:  # an untrained model may emit no words at all
        assert out.startswith(start)


def test_bad_files_are_reported_and_the_rest_still_transcribed(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "notes.wav").write_text("not audio at all")
    code = main(
        [
            "transcribe",
            str(tmp_path / "notes.wav"),
            str(shared_path(JFK)),
            str(tmp_path / "missing.flac"),
            "--model",
            str(tiny_model_dir),
            "--output-dir",
            str(tmp_path / "out"),
            "--format",
            "json",
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_PARTIAL
    assert "notes.wav" in err and "missing.flac" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["jfk.json"]


def test_unknown_model_and_bad_settings_exit_2(capsys, monkeypatch):
    assert main(["transcribe", "x.wav", "--model", "no-such-model"]) == EXIT_USAGE
    assert "no model named 'no-such-model'" in capsys.readouterr().err
    monkeypatch.setenv("ASR_BATCH_SIZE", "lots")
    assert main(["info"]) == EXIT_USAGE
    assert "ASR_BATCH_SIZE='lots'" in capsys.readouterr().err


def test_eval_prints_table_and_matches_an_independent_jiwer_computation(tiny_model_dir, tmp_path, capsys):
    manifest = shared_path(FIXTURES_DEV)
    out_json = tmp_path / "r.json"
    code = main(["eval", str(manifest), "--model", str(tiny_model_dir), "--limit", "5", "--json", str(out_json)])
    assert code == EXIT_OK
    table = capsys.readouterr().out
    assert "corpus WER" in table and "ps_sense_and_sensibility_01_austen_64kb-0870" in table
    report = json.loads(out_json.read_text())
    assert len(report["rows"]) == report["utterances"] == 5
    refs = [normalize_text(u["reference"]) for u in report["rows"]]
    hyps = [u["hypothesis"] for u in report["rows"]]
    assert report["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert report["wer_95"][0] <= report["wer"] <= report["wer_95"][1]


def test_eval_counts_unreadable_audio_as_deletions(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "m.tsv").write_text("path\ttranscript\nmissing.flac\tthree words here\n")
    assert main(["eval", str(tmp_path / "m.tsv"), "--model", str(tiny_model_dir)]) == EXIT_PARTIAL
    out = capsys.readouterr().out
    assert "D=3" in out and "could not be read" in out


def test_eval_bad_manifest_exits_2(tmp_path, capsys):
    (tmp_path / "m.tsv").write_text("file\ttext\n")
    assert main(["eval", str(tmp_path / "m.tsv")]) == EXIT_USAGE
    assert "lacks column" in capsys.readouterr().err


def test_info_names_versions_model_and_device(tiny_model_dir, capsys):
    assert main(["info", "--model", str(tiny_model_dir)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "tensorflow" in out and "jiwer" in out and "ai-edge-litert" in out
    assert "tiny-test [UNTRAINED" in out and "device: cpu" in out


def test_info_shows_training_figures_beside_per_split_results(tiny_model_dir, tmp_path, capsys):
    import dataclasses
    import shutil

    from asrkit.models import ModelCard

    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "m")
    card = ModelCard.load(model_dir)
    metrics = {"training_steps": 4334, "averaged_steps": [4164, 4334], "kathleen_dev": {"wer": 0.5, "utterances": 3}}
    dataclasses.replace(card, metrics=metrics).save(model_dir)
    assert main(["info", "--model", str(model_dir)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "training_steps: 4334" in out and "averaged_steps: [4164, 4334]" in out
    assert "kathleen_dev: wer=0.5, utterances=3" in out


def test_eval_records_its_results_and_command_in_the_model_card(tiny_model_dir, tmp_path, capsys):
    import shutil

    from asrkit.models import ModelCard

    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "m")
    argv = ["eval", str(shared_path(FIXTURES_DEV)), "--model", str(model_dir), "--limit", "2", "--record"]
    assert main(argv) == EXIT_OK
    card = ModelCard.load(model_dir)
    recorded = card.metrics["fixtures_dev"]
    assert recorded["utterances"] == 2 and 0 <= recorded["cer"] and recorded["wer"] >= 0
    assert recorded["command"] == "asrkit " + " ".join(argv)
    assert "general" not in recorded  # only the card's author says a set is general speech
    card.metrics["fixtures_dev"]["general"] = True
    card.save(model_dir)
    assert main(argv) == EXIT_OK
    assert ModelCard.load(model_dir).metrics["fixtures_dev"]["general"] is True  # measuring again keeps the mark


def test_eval_writes_reports_that_agree_with_jiwer_and_reruns_from_the_cache(tmp_path, capsys):
    import csv
    import time

    from asrkit.manifest import read_manifest

    manifest = shared_path("splits/kathleen_dev.tsv")
    out = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "html")}
    argv = [
        "eval",
        str(manifest),
        "--model",
        "default",
        "--limit",
        "6",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        str(out["json"]),
        "--csv",
        str(out["csv"]),
        "--report",
        str(out["html"]),
    ]
    began = time.perf_counter()
    assert main(argv) == EXIT_OK
    first_s = time.perf_counter() - began
    first = capsys.readouterr().out
    report = json.loads(out["json"].read_text())
    # an independent computation: jiwer on the manifest's own text_norm column and the hypotheses
    refs = [line.split("\t")[4] for line in manifest.read_text().splitlines()[1:7]]
    hyps = [row["hypothesis"] for row in report["rows"]]
    assert report["wer"] == pytest.approx(jiwer.wer(refs, hyps)) and 0 < report["wer"] < 0.6
    assert report["speakers"][0]["name"] == "kathleen" and report["normalizer"] == "asrkit.text.normalize_text"
    with out["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["utterance"] for r in rows] == [u.id for u in read_manifest(manifest)[:6]]
    page = out["html"].read_text()
    assert f"WER {100 * report['wer']:.2f}%" in page and all(r["utterance"] in page for r in rows)
    assert page.count("data:image/png;base64,") == 1 and "<script" not in page

    began = time.perf_counter()
    assert main(argv) == EXIT_OK
    assert time.perf_counter() - began < first_s
    again = capsys.readouterr().out
    assert "6 hypotheses from the cache" in again and "from the cache" not in first
    assert json.loads(out["json"].read_text())["wer"] == report["wer"]


def test_compare_two_models_on_one_manifest(tiny_model_dir, tmp_path, capsys):
    argv = [
        "compare",
        str(shared_path(FIXTURES_DEV)),
        "--models",
        "default",
        str(tiny_model_dir),
        "--limit",
        "3",
        "--no-cache",
    ]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "of 3 utterances transcribed differently" in out and "95% paired bootstrap" in out
    assert f"only {DEFAULT_MODEL} right:" in out and "only tiny-test right:" in out


def test_training_commands_are_given_their_data_and_name_what_is_missing(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):  # argparse: the text to synthesise is required, there is no default folder
        main(["synth", str(tmp_path / "out")])
    assert "--text" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "out"), "--text", str(tmp_path / "none")]) == EXIT_USAGE
    assert f"cannot read the --text folder {tmp_path / 'none'}" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "out"), "--text", str(tmp_path), "--exclude", str(tmp_path / "x.txt")]) == 2
    assert f"cannot read --exclude file {tmp_path / 'x.txt'}" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "run"), "--dev", "dev.tsv"]) == EXIT_USAGE
    assert "nothing to learn from" in capsys.readouterr().err
    assert main(["decoder", str(tiny_model_dir), str(tmp_path / "m"), "--dev", "dev.tsv"]) == EXIT_USAGE
    assert "the LM needs text" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "spec, manifest, copies",
    [("a/train.tsv:3", "a/train.tsv", 3), ("train.tsv", "train.tsv", 0), ("odd:name.tsv", "odd:name.tsv", 0)],
)
def test_train_sources_are_a_manifest_and_its_augmented_copies(spec, manifest, copies):
    from pathlib import Path

    from asrkit.cli import build_parser

    (source,) = build_parser().parse_args(["train", "run", "--dev", "d.tsv", "--train", spec]).train
    assert (source.manifest, source.clean, source.copies) == (Path(manifest), True, copies)

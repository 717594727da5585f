"""The recipes hand asrkit the lab data's paths: the commands they build are the ones our models were made with."""

from __future__ import annotations

from pathlib import Path

import ctc_en
import pytest
import whisper_finetune

from asrkit.cli import build_parser
from asrkit.data.dataset import Source

DATA = Path("/data")


def parsed(argv: list) -> object:
    return build_parser().parse_args([str(a) for a in argv])


def test_the_ctc_recipe_trains_on_the_real_speech_and_stops_early_on_the_dev_sets():
    args = parsed([*ctc_en.train_argv(DATA, Path("runs/r")), "--synthetic", "runs/synth0"])
    assert args.train == [
        Source(DATA / "splits/kathleen_train.tsv", clean=True, copies=3),
        Source(DATA / "splits/fsdd_train.tsv", clean=True, copies=2),
    ]
    assert args.dev == [DATA / "splits/kathleen_dev.tsv", DATA / "splits/fsdd_dev.tsv"]
    assert args.noise_dir == DATA / "noise" and args.synthetic == [Path("runs/synth0")]


def test_the_ctc_recipe_leaves_evaluation_text_out_of_the_corpus_and_the_lm():
    excluded = DATA / "splits/eval_texts_to_exclude_from_training.txt"
    synth = parsed(ctc_en.synth_argv(DATA, Path("out")))
    assert (synth.text, synth.exclude) == (DATA / "text", [excluded])
    decoder = parsed([*ctc_en.decoder_argv(DATA, Path("avg"), Path("out")), "--limit", "100"])
    assert (decoder.text, decoder.exclude, decoder.limit) == (DATA / "text", [excluded], 100)
    assert decoder.transcripts == [DATA / "splits/kathleen_train.tsv", DATA / "splits/fsdd_train.tsv"]
    assert decoder.dev == DATA / "splits/kathleen_dev.tsv"


@pytest.mark.parametrize("recipe", sorted(whisper_finetune.RECIPES))
def test_fine_tuning_recipes_check_forgetting_on_strangers_and_learn_no_evaluation_text(recipe):
    args = parsed(whisper_finetune.finetune_argv(DATA, recipe))
    train, dev, name, _ = whisper_finetune.RECIPES[recipe]
    assert (args.manifests, args.dev, args.name) == ([DATA / f"splits/{train}.tsv"], [DATA / f"splits/{dev}.tsv"], name)
    assert args.general == [DATA / "splits/fixtures_dev.tsv"]
    assert args.exclude == [DATA / "splits/eval_texts_to_exclude_from_training.txt"]


def test_a_recipe_given_another_folder_says_it_is_not_the_data_folder(tmp_path, capsys):
    with pytest.raises(SystemExit, match=f"{tmp_path} is not the data folder"):
        ctc_en.main(["--data", str(tmp_path), "synth", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()

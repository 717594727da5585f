"""Fine-tuning Whisper's decoder: learning, saving, resuming, cancelling and the forgetting check.

The clips are seeded noise with made-up transcripts: what is tested is the training machinery, which
any data exercises, so these tests run without the shared speech data.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrkit.audio import SAMPLE_RATE
from asrkit.cli import main
from asrkit.finetune import FinetuneReport, SetComparison, hold_out, select_clips
from asrkit.manifest import Utterance
from asrkit.models.whisper.checkpoint import CheckpointError
from asrkit.models.whisper.finetune import (
    BEST_FILE,
    CHECKPOINT_FILE,
    FINETUNED_FILE,
    FinetuneOptions,
    FinetuneResult,
    encode_examples,
    finetune,
    save_finetuned,
    target_tokens,
    written_form,
)
from asrkit.models.whisper.model import WhisperModel

TEXTS = ("zero", "seven", "Hello there.", "nine")


def _clips(n: int = 4, seconds: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.normal(0, 0.05, int(seconds * SAMPLE_RATE)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def base():
    from asrkit.models import load_model

    return load_model("whisper-tiny.en")


@pytest.fixture(scope="module")
def encoded(base):
    return encode_examples(base, _clips(), list(TEXTS))


def _fresh():
    # every training test changes its model's weights: each starts from a newly loaded base
    return WhisperModel.load(
        Path(__file__).resolve().parents[1] / "asrkit/models/shipped/whisper-tiny.en", warm_up=False
    )


def _logits(model, encoded):
    """Teacher-forced decoder logits of the encoded clips' targets, computed eagerly (LoRA included)."""
    tok = model.transcriber.tokenizer
    network = model.transcriber.inference.network
    seq, _ = target_tokens(tok, "Hello there.", duration_s=1.0, timestamps=False)
    cross = network.decoder.cross_keys_values(np.asarray(encoded.features[:2], np.float32))
    logits, _ = network.decoder(np.array([seq[:-1]] * 2, np.int32), cross)
    return np.asarray(logits)


def test_written_form_keeps_whispers_style():
    assert written_form("zero") == "Zero."
    assert written_form("the  cat sat") == "The cat sat."
    assert (
        written_form("Author of the danger trail, Philip Steels, etc.")
        == "Author of the danger trail, Philip Steels, etc."
    )


def test_targets_with_and_without_timestamps(base):
    tok = base.transcriber.tokenizer
    plain, first = target_tokens(tok, "zero", duration_s=0.5, timestamps=False)
    assert plain[:first] == [*tok.sot_sequence, tok.no_timestamps]
    assert tok.decode(plain[first:]) == " Zero." and plain[-1] == tok.eot
    timed, first = target_tokens(tok, "zero", duration_s=0.5, timestamps=True)
    assert timed[first] == tok.timestamp_begin
    assert timed[-2] == tok.timestamp_begin + 25 and timed[-1] == tok.eot  # 0.5 s in 0.02-s steps


def test_options_refuse_nonsense():
    with pytest.raises(ValueError, match="trainable 'encoder'"):
        FinetuneOptions(trainable="encoder")
    with pytest.raises(ValueError, match="peak_lr"):
        FinetuneOptions(peak_lr=0)


@pytest.mark.parametrize(("trainable", "lr"), [("decoder", 1e-4), ("lora", 3e-3)])
def test_training_lowers_the_loss(encoded, tmp_path, trainable, lr):
    model = _fresh()
    options = FinetuneOptions(
        trainable=trainable, peak_lr=lr, steps=4, batch_size=4, warmup_steps=1, eval_every=4, timestamp_fraction=0.0
    )
    result = finetune(model, encoded, encoded, run_dir=tmp_path, options=options)
    first, last = result.evaluations[0], result.evaluations[-1]
    assert (first.step, last.step) == (0, 4)
    assert last.loss < 0.7 * first.loss
    assert result.best_step == 4 and not result.cancelled


@pytest.mark.parametrize("trainable", ["decoder", "lora"])
def test_saved_model_reloads_to_the_same_logits(encoded, tmp_path, trainable):
    model = _fresh()
    options = FinetuneOptions(trainable=trainable, peak_lr=3e-3, steps=2, batch_size=4, warmup_steps=1)
    result = finetune(model, encoded, None, run_dir=tmp_path / "run", options=options)
    folder = save_finetuned(model, result, folder=tmp_path / "tuned", card=replace(model.card, name="tuned"))
    size = (folder / FINETUNED_FILE).stat().st_size
    # the adapters are tiny beside the decoder's 9.5M weights
    assert size < 2e6 if trainable == "lora" else size > 3e7
    reloaded = WhisperModel.load(folder, warm_up=False)
    assert reloaded.card.config["finetuned"]["steps"] == 2
    expected = _logits(model, encoded)
    np.testing.assert_allclose(_logits(reloaded, encoded), expected, atol=2e-4, rtol=1e-4)
    assert not np.allclose(_logits(_fresh(), encoded), expected, atol=1e-2)


def test_resumed_run_continues_where_it_stopped(encoded, tmp_path):
    options = FinetuneOptions(trainable="lora", peak_lr=3e-3, steps=4, batch_size=2, warmup_steps=1, checkpoint_every=2)
    whole = _fresh()
    finetune(whole, encoded, None, run_dir=tmp_path / "whole", options=options)

    stop = threading.Event()
    first = _fresh()

    def after_two(progress):
        if progress.stage == "training" and progress.done == 2:
            stop.set()

    cut = finetune(first, encoded, None, run_dir=tmp_path / "cut", options=options, on_progress=after_two, cancel=stop)
    assert cut.cancelled and cut.steps == 2
    resumed_model = _fresh()
    seen = []
    resumed = finetune(
        resumed_model,
        encoded,
        None,
        run_dir=tmp_path / "cut",
        options=options,
        on_progress=lambda p: seen.append(p.done) if p.stage == "training" else None,
    )
    assert seen[0] == 2 and resumed.steps == 4 and not resumed.cancelled
    np.testing.assert_allclose(_logits(resumed_model, encoded), _logits(whole, encoded), atol=1e-4)
    with pytest.raises(ValueError, match="other options"):
        finetune(_fresh(), encoded, None, run_dir=tmp_path / "cut", options=replace(options, steps=5))


def test_cancel_leaves_nothing_half_written(base, encoded, tmp_path):
    stop = threading.Event()
    stop.set()
    assert encode_examples(base, _clips(2), ["a", "b"], path=tmp_path / "features.npy", cancel=stop) is None
    assert list(tmp_path.iterdir()) == []
    result = finetune(
        _fresh(), encoded, encoded, run_dir=tmp_path / "run", options=FinetuneOptions(steps=3), cancel=stop
    )
    assert result.cancelled and result.steps == 0
    assert not [p for p in (tmp_path / "run").rglob("*") if "partial" in p.name]
    assert not (tmp_path / "run" / CHECKPOINT_FILE).exists()
    with pytest.raises(ValueError, match="cancelled"):
        save_finetuned(base, result, folder=tmp_path / "model", card=base.card)
    assert not (tmp_path / "model").exists()


def test_stored_features_are_reused_only_for_the_same_clips(base, tmp_path):
    path = tmp_path / "features.npy"
    encode_examples(base, _clips(2), ["a", "b"], path=path)
    written = path.stat().st_mtime_ns
    again = encode_examples(base, _clips(2), ["a", "b"], path=path)
    assert isinstance(again.features, np.memmap) and path.stat().st_mtime_ns == written
    stamp = path.with_suffix(".json").read_text()
    other = encode_examples(base, _clips(2), ["a", "c"], path=path)
    assert other.texts == ("a", "c") and path.with_suffix(".json").read_text() != stamp


def test_early_stopping_keeps_the_best_weights(encoded, tmp_path):
    # a learning rate this high wrecks the decoder: the base (step 0) stays the best
    options = FinetuneOptions(
        trainable="decoder", peak_lr=0.05, steps=20, batch_size=4, warmup_steps=1, eval_every=2, patience=2
    )
    model = _fresh()
    before = _logits(model, encoded)
    result = finetune(model, encoded, encoded, run_dir=tmp_path, options=options)
    assert result.stopped == "early stop" and result.steps == 4 and result.best_step == 0
    assert (tmp_path / BEST_FILE).is_file()
    np.testing.assert_allclose(_logits(model, encoded), before, atol=1e-5)


def test_a_tampered_or_foreign_learned_file_is_refused(encoded, tmp_path):
    model = _fresh()
    result = finetune(
        model, encoded, None, run_dir=tmp_path / "run", options=FinetuneOptions(trainable="lora", steps=1, batch_size=4)
    )
    folder = save_finetuned(model, result, folder=tmp_path / "tuned", card=model.card)
    with open(folder / FINETUNED_FILE, "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(CheckpointError, match="SHA-256"):
        WhisperModel.load(folder)
    from asrkit.models.whisper.finetune import apply_learned

    with pytest.raises(CheckpointError, match="does not fit"):
        apply_learned(
            {"decoder/ln_post/gamma": np.ones(384, np.float32)},
            {"decoder/ln_post/gamma": np.ones(3, np.float32)},
            source=folder,
        )


def test_forgetting_check_flags_a_regression():
    def report(general_after: float) -> FinetuneReport:
        sets = (
            SetComparison("digits_dev", Path("d.tsv"), 50, 0.43, 0.02, "dev"),
            SetComparison("strangers", Path("s.tsv"), 23, 0.0625, general_after, "general"),
        )
        result = FinetuneResult(10, 10, (), (), 1.0, False, "steps")
        return FinetuneReport("x", Path("x"), "base", Path("run"), result, sets, 9, 1, 0, 1.0, 1.0, 2.0, 100.0)

    worse = report(0.0825)
    assert worse.forgetting and "strangers WER 6.25% -> 8.25% (+2.00 points" in worse.forgetting
    assert "forgetting: strangers" in worse.table()
    assert report(0.07).forgetting is None
    assert "no forgetting" in report(0.07).table()


def test_clip_selection_excludes_eval_texts_and_holds_out():
    utts = [
        Utterance(Path(f"{i}.flac"), text, 1.0)
        for i, text in enumerate(["Hello, there.", "zero", "one", "two", "three", "four", "long one"])
    ]
    utts[-1] = replace(utts[-1], duration_s=31.0)
    kept, left_out = select_clips(utts, exclude=["hello there"])
    assert [u.transcript for u in kept] == ["zero", "one", "two", "three", "four"] and left_out == 2
    assert len(select_clips(utts, max_clips=3)[0]) == 3
    train, held = hold_out(kept, fraction=0.2, seed=0)
    assert len(held) == 1 and set(train).isdisjoint(held) and len(train) + len(held) == 5


def test_cli_finetunes_and_reports(tmp_path, capsys):
    lines = ["path\tduration_s\ttranscript\tspeaker"]
    for i, (audio, text) in enumerate(zip(_clips(), TEXTS)):
        sf.write(tmp_path / f"{i}.flac", audio, SAMPLE_RATE)
        lines.append(f"{tmp_path / f'{i}.flac'}\t1.0\t{text}\ts")
    manifest = tmp_path / "train.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    general = tmp_path / "general.tsv"
    general.write_text("\n".join(lines[:3]) + "\n")
    code = main(
        [
            "finetune",
            str(manifest),
            "--name",
            "tuned-test",
            "--base",
            "whisper-tiny.en",
            "--general",
            str(general),
            "--trainable",
            "lora",
            "--steps",
            "2",
            "--lr",
            "1e-3",
            "--batch-size",
            "2",
            "--copies",
            "0",
            "--held-out",
            "0.25",
            "--models-dir",
            str(tmp_path / "models"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "general" in out and "-> " in out
    run = tmp_path / "models" / "tuned-test.run"
    assert (run / "curve.png").stat().st_size > 1000 and not (run / "features.npy").exists()
    from asrkit.models import ModelCard

    card = ModelCard.load(tmp_path / "models" / "tuned-test")
    assert card.metrics["general"]["base_wer"] >= 0 and "forgetting" in card.metrics
    assert card.config["finetuned"]["options"]["trainable"] == "lora"
    assert main(["finetune", str(manifest), "--name", "Bad Name", "--models-dir", str(tmp_path)]) == 2

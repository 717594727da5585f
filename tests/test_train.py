import dataclasses
import json
import threading

import numpy as np
import pytest

from asrkit.cli import EXIT_USAGE, main
from asrkit.data.dataset import FeatureCache
from asrkit.models import load_model
from asrkit.models.ctc import CTCModelConfig
from asrkit.train import LearningRate, TrainConfig, average_snapshots, train

MODEL = CTCModelConfig(conv_channels=16, rnn_layers=1, rnn_units=32, lookahead_frames=2)


def tiny_cache(n: int = 8) -> FeatureCache:
    """Random features whose label is a function of them, so there is something to learn."""
    rng = np.random.default_rng(0)
    feats, labels = [], []
    for i in range(n):
        feats.append(rng.normal(-5, 2, (120, 80)).astype(np.float16))
        labels.append(np.array([3 + i % 5, 4 + i % 7, 3 + i % 5], np.int16))
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in feats])])
    label_offsets = np.concatenate([[0], np.cumsum([len(l) for l in labels])])
    return FeatureCache(np.concatenate(feats), offsets, np.concatenate(labels), label_offsets)


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_learning_rate_warms_up_then_decays():
    lr = LearningRate(1e-3, warmup=10, total=110, final_fraction=0.1)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(5e-4)
    assert float(lr(10)) == pytest.approx(1e-3) and float(lr(60)) == pytest.approx(5.5e-4)
    assert float(lr(110)) == pytest.approx(1e-4) and float(lr(500)) == pytest.approx(1e-4)


@pytest.mark.timeout(300)
def test_training_lowers_the_loss_saves_a_loadable_model_and_resumes(tmp_path):
    dev = [(np.random.default_rng(1).uniform(-0.2, 0.2, 16000).astype(np.float32), "hello")]
    config = TrainConfig(steps=40, warmup_steps=5, peak_lr=3e-3, log_every=10, eval_every=20, checkpoint_every=20)
    cache = tiny_cache()
    train(tmp_path, cache=cache, dev=dev, model_config=MODEL, config=config, name="t", progress=False)
    losses = [r["loss"] for r in history(tmp_path) if "loss" in r]
    assert len(losses) == 4 and losses[-1] < 0.7 * losses[0]
    model = load_model(tmp_path / "best")
    assert model.card.trained and model.card.metrics["step"] in (20, 40)
    assert "dev_wer_greedy" in model.card.metrics

    # interrupting and running again continues from the last checkpoint, not from scratch
    train(
        tmp_path,
        cache=cache,
        dev=dev,
        model_config=MODEL,
        config=TrainConfig(**{**config.__dict__, "steps": 60}),
        name="t",
        progress=False,
    )
    steps = [r["step"] for r in history(tmp_path) if "loss" in r]
    assert steps == [10, 20, 30, 40, 50, 60]
    assert load_model(tmp_path / "last").card.metrics["step"] == 60

    # checkpoints at 20, 40, 60 left snapshots of the network; the last two average into a model
    snapshots = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert snapshots == ["step-0000020.npz", "step-0000040.npz", "step-0000060.npz"]
    averaged = load_model(average_snapshots(tmp_path, tmp_path / "avg", last=2))
    assert averaged.card.metrics["averaged_steps"] == [40, 60] and averaged.name == "avg"
    with np.load(tmp_path / "snapshots/step-0000040.npz") as a, np.load(tmp_path / "snapshots/step-0000060.npz") as b:
        for i, w in enumerate(averaged.network.get_weights()):
            np.testing.assert_allclose(w, (a[f"network_{i}"] + b[f"network_{i}"]) / 2, rtol=1e-6)
    assert not np.allclose(averaged.network.get_weights()[-2], load_model(tmp_path / "last").network.get_weights()[-2])
    assert main(["average", str(tmp_path), str(tmp_path / "avg3"), "--last", "3"]) == 0
    assert load_model(tmp_path / "avg3").card.metrics["averaged_steps"] == [20, 40, 60]

    # a fresh run can start from a saved model's weights instead of from random ones
    warm = tmp_path / "warm"
    train(
        warm,
        cache=cache,
        dev=dev,
        model_config=MODEL,
        init_from=tmp_path / "last",
        progress=False,
        config=TrainConfig(**{**config.__dict__, "steps": 10, "warmup_steps": 1000}),
    )
    assert history(warm)[0]["loss"] < 0.7 * losses[0]


@pytest.mark.timeout(300)
def test_a_run_interrupted_mid_pass_ends_where_an_uninterrupted_one_does(tmp_path):
    # without dropout, the same batches in the same order give the same weights
    model_config = dataclasses.replace(MODEL, dropout=0.0)
    dev = [(np.zeros(8000, np.float32), "a")]
    config = TrainConfig(
        steps=12, warmup_steps=2, max_batch_size=2, log_every=100, eval_every=100, checkpoint_every=100
    )
    train(tmp_path / "straight", cache=tiny_cache(), dev=dev, model_config=model_config, config=config, progress=False)

    cancel = threading.Event()
    stop_at_6 = lambda step, loss: step == 6 and cancel.set()  # noqa: E731 - the second of a pass's 4 batches
    for run in range(2):
        train(
            tmp_path / "resumed",
            cache=tiny_cache(),
            dev=dev,
            model_config=model_config,
            config=config,
            on_step=stop_at_6 if run == 0 else None,
            cancel=cancel if run == 0 else None,
            progress=False,
        )
    assert load_model(tmp_path / "resumed" / "last").card.metrics["step"] == 12
    straight = load_model(tmp_path / "straight" / "last").network.get_weights()
    resumed = load_model(tmp_path / "resumed" / "last").network.get_weights()
    for a, b in zip(straight, resumed, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_averaging_a_run_without_snapshots_says_so(tmp_path, capsys):
    with pytest.raises(ValueError, match="no snapshots"):
        average_snapshots(tmp_path, tmp_path / "out")
    assert main(["average", str(tmp_path), str(tmp_path / "out")]) == EXIT_USAGE
    assert "no snapshots" in capsys.readouterr().err


def test_stopping_on_time_checkpoints_first(tmp_path):
    dev = [(np.zeros(8000, np.float32), "a")]
    config = TrainConfig(steps=1000, warmup_steps=5, log_every=1000, eval_every=1000, checkpoint_every=1000)
    for expected_step in (1, 2):
        train(tmp_path, cache=tiny_cache(), dev=dev, model_config=MODEL, config=config, max_minutes=0, progress=False)
        # each run stops after one step, and the next starts from the checkpoint the last one wrote
        assert load_model(tmp_path / "last").card.metrics["step"] == expected_step


def test_tune_decoder_and_save_with_a_language_model(tmp_path, tiny_model_dir):
    from asrkit.lm import NGramLM
    from asrkit.models.keras_ctc import KerasCTCModel
    from asrkit.train import tune_decoder, with_decoder

    model = KerasCTCModel.load(tiny_model_dir)
    lm = NGramLM.build(["hello world", "hello there"], order=2)
    rng = np.random.default_rng(2)
    dev = [(rng.uniform(-0.2, 0.2, 8000).astype(np.float32), "hello world")] * 2
    decoder, results = tune_decoder(model, lm, dev, alphas=(0.5, 1.0), betas=(0.0, 2.0), beam_width=4, progress=False)
    assert len(results) == 8 and decoder.lm == "lm.arpa.gz"
    assert {r["config"].closed_vocabulary for r in results} == {False, True}
    assert min(r["wer"] for r in results) == next(r["wer"] for r in results if r["config"] == decoder)
    with_decoder(model, lm, decoder, name="tiny-lm").save(tmp_path / "tiny-lm")
    loaded = load_model(tmp_path / "tiny-lm")
    assert loaded.name == "tiny-lm" and loaded.lm is not None and loaded.config.decoder == decoder
    assert (
        loaded.transcribe(dev[0][0]).text == with_decoder(model, lm, decoder, name="tiny-lm").transcribe(dev[0][0]).text
    )
    # the untrained network spells noise; a closed vocabulary lets only the LM's words through
    closed = dataclasses.replace(decoder, closed_vocabulary=True)
    with_decoder(model, lm, closed, name="tiny-closed").save(tmp_path / "tiny-closed")
    text = load_model(tmp_path / "tiny-closed").transcribe(dev[0][0]).text
    assert set(text.split()) <= {"hello", "world", "there"}


def test_training_curves_keep_the_last_record_of_a_step_logged_twice(tmp_path):
    from asrkit.plotting import plot_training

    lines = [
        {"step": 10, "loss": 3.0},
        {"step": 20, "loss": 2.0},
        {"step": 20, "dev_wer": 0.9},
        # resumed from the checkpoint at step 10: step 20 again
        {"step": 20, "loss": 2.5},
        {"step": 20, "dev_wer": 0.8},
        {"step": 30, "loss": 1.5},
    ]
    (tmp_path / "history.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    ax = plot_training(tmp_path / "history.jsonl")
    (loss_line,) = ax.get_lines()
    assert list(loss_line.get_xdata()) == [10, 20, 30] and list(loss_line.get_ydata()) == [3.0, 2.5, 1.5]
    (wer_line,) = ax.figure.axes[1].get_lines()
    assert list(wer_line.get_xdata()) == [20] and list(wer_line.get_ydata()) == [80.0]

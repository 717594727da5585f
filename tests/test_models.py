import json

import keras
import numpy as np
import pytest
from conftest import JFK, shared_path

import asrkit.models as registry
from asrkit.audio import load_audio
from asrkit.config import Config
from asrkit.contracts import CardError
from asrkit.models import (
    ASRModel,
    Headline,
    ModelCard,
    UnknownModelError,
    available_models,
    headline_metric,
    list_models,
    load_model,
)
from asrkit.models.ctc import CTCModelConfig
from asrkit.models.keras_ctc import KerasCTCModel, select_device


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir)


def test_loads_through_the_registry_and_meets_the_contract(tiny, tiny_model_dir):
    assert isinstance(tiny, ASRModel)
    assert tiny.name == "tiny-test" and tiny.sample_rate == 16000 and not tiny.card.trained


def test_save_load_round_trip_gives_identical_logits(tiny, tmp_path):
    feats = [np.random.default_rng(0).normal(-5, 3, (123, 80)).astype(np.float32)]
    tiny.save(tmp_path / "copy")
    again = KerasCTCModel.load(tmp_path / "copy")
    np.testing.assert_array_equal(tiny.logits(feats)[0], again.logits(feats)[0])
    assert again.card == tiny.card


def test_output_length_matches_the_network(tiny):
    for n in (1, 2, 3, 4, 5, 99, 400):
        (out,) = tiny.logits([np.zeros((n, 80), np.float32)])
        assert len(out) == tiny.config.output_length(n) == -(-n // tiny.config.subsampling)


def test_batch_equals_one_by_one(tiny):
    rng = np.random.default_rng(1)
    audios = [rng.uniform(-0.3, 0.3, n).astype(np.float32) for n in (16000, 3000, 200, 0, 41000)]
    batched = tiny.transcribe_batch(audios)
    singles = [tiny.transcribe(a) for a in audios]
    assert batched == singles
    assert batched[3].text == "" and batched[3].duration_s == 0.0


def test_transcribes_a_real_clip_with_times(tiny):
    audio = load_audio(shared_path(JFK))
    result = tiny.transcribe(audio)
    assert result.duration_s == pytest.approx(11.0, abs=0.05)
    assert result.model == "tiny-test"
    assert " ".join(w.text for w in result.words) == result.text
    assert all(0 <= w.start < w.end <= result.duration_s + 0.04 for w in result.words)


def test_rejects_audio_that_is_not_mono_float(tiny):
    with pytest.raises(ValueError, match="load_audio"):
        tiny.transcribe(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="mono float"):
        tiny.transcribe(np.zeros(100, np.int16))


def test_safe_mode_refuses_code_in_a_model_file(tmp_path, tiny_model_dir):
    inputs = keras.Input((None, 80))
    evil = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    folder = tmp_path / "evil"
    folder.mkdir()
    evil.save(folder / "model.keras")
    (folder / "card.json").write_text((tiny_model_dir / "card.json").read_text())
    with pytest.raises(ValueError, match="(?i)unsafe|safe_mode"):
        load_model(folder)


def test_registry_lists_names_and_explains_unknown_ones(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("ASR_MODELS_DIR", str(tiny_model_dir.parent))
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path / "none")
    assert [e.name for e in available_models()] == ["tiny-test"]
    assert load_model("tiny-test").name == "tiny-test"
    monkeypatch.setenv("ASR_MODEL_NAME", "tiny-test")
    assert load_model(config=Config.from_env()).name == "tiny-test"
    with pytest.raises(UnknownModelError, match="no model named 'nope': registered models are tiny-test"):
        load_model("nope")


def test_a_cards_headline_is_its_first_general_set_else_its_largest_set():
    card = ModelCard(
        "m",
        "",
        True,
        metrics={
            "digits": {"wer": 0.47, "utterances": 500, "rtf": 3.2},
            "strangers": {"wer": 0.0625, "utterances": 23, "rtf": 0.24, "general": True},
            "read": {"wer": 0.046, "utterances": 300, "general": True},
            "training_steps": 6364,
            "truthy": {"wer": 0.01, "utterances": 900, "general": "yes"},
        },
    )
    assert headline_metric(card) == Headline("strangers", 0.0625, 23, 0.24, general=True)
    own = ModelCard(
        "m",
        "",
        True,
        metrics={
            "a_dev": {"wer": 0.1, "utterances": 20},
            "notes": "x",
            "b_dev": {"wer": 0.3, "utterances": 90},
            "bad": {"wer": "low"},
        },
    )
    assert headline_metric(own) == Headline("b_dev", 0.3, 90, None, general=False)
    assert headline_metric(ModelCard("m", "", True, metrics={"steps": 3})) is None


def test_listing_models_passes_over_unreadable_cards_and_names_them(tmp_path, monkeypatch):
    (tmp_path / "good").mkdir()
    ModelCard(name="good", description="", trained=True).save(tmp_path / "good")
    for name, text in (("broken", "{"), ("odd", json.dumps({"name": "odd", "why": 1})), ("short", "{}")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text(text)
    listing = list_models(tmp_path)
    assert [e.name for e in listing.entries] == ["good"]
    assert [(b.name, type(b.error)) for b in listing.broken] == [
        ("broken", CardError),
        ("odd", CardError),
        ("short", CardError),
    ]
    assert "lacks the fields: name, description, trained" in str(listing.broken[2].error)
    with pytest.raises(ValueError, match="not valid JSON"):
        available_models(tmp_path)


def test_card_naming_an_unknown_backend(tmp_path):
    ModelCard(name="x", description="", trained=False, config={"backend": "cobol"}).save(tmp_path)
    with pytest.raises(UnknownModelError, match="backend 'cobol'"):
        load_model(tmp_path)


def test_card_with_unknown_fields_is_refused(tmp_path):
    (tmp_path / "card.json").write_text(json.dumps({"name": "x", "description": "", "trained": 1, "why": 2}))
    with pytest.raises(ValueError, match="unknown fields: why"):
        ModelCard.load(tmp_path)


def test_config_round_trip_and_frame_duration():
    config = CTCModelConfig(rnn_units=7)
    assert CTCModelConfig.from_dict(config.to_dict()) == config
    assert config.frame_duration_s == pytest.approx(0.01 * config.subsampling)
    with pytest.raises(ValueError, match="unknown CTCModelConfig fields: depth"):
        CTCModelConfig.from_dict({**config.to_dict(), "depth": 3})


def test_gpu_request_without_gpu_falls_back_with_a_warning():
    with pytest.warns(UserWarning, match="no GPU"):
        assert select_device("gpu") == "cpu"
    assert select_device("auto") == "cpu"


def test_pocketsphinx_from_the_registry_transcribes_a_real_clip():
    model = load_model("pocketsphinx")
    assert isinstance(model, ASRModel) and model.card.trained
    result = model.transcribe(load_audio(shared_path("speech/fixtures/wav/ps_goforward.flac")))
    assert result.text == "go forward ten meters"
    assert [w.text for w in result.words] == result.text.split()
    assert all(0 <= w.start < w.end <= result.duration_s for w in result.words)


def test_pocketsphinx_transcribes_a_clip_the_same_whatever_came_before():
    clip = load_audio(shared_path("speech/fixtures/wav/pra_cmu_arctic_us_axb_a0006.flac"))
    alone = load_model("pocketsphinx").transcribe(clip).text
    model = load_model("pocketsphinx")
    # PocketSphinx's own decoder, fed this clip after ps_cards_001, changes its first words
    model.transcribe(load_audio(shared_path("speech/fixtures/wav/ps_cards_001.flac")))
    assert model.transcribe(clip).text == alone

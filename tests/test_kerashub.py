"""KerasHub's Moonshine through load_model(), offline: a tiny random model with the real classes and a
sentencepiece vocabulary, built and saved here (nothing is downloaded)."""

import io

import pytest

keras_hub = pytest.importorskip("keras_hub", reason="needs the 'keras-hub' extra")

import keras  # noqa: E402
import sentencepiece  # noqa: E402
from conftest import JFK, shared_path  # noqa: E402

from asrkit.audio import load_audio  # noqa: E402
from asrkit.evaluate import HypothesisCache, evaluate  # noqa: E402
from asrkit.manifest import Utterance  # noqa: E402
from asrkit.models import load_model, resolve_model  # noqa: E402
from asrkit.models.hf import ModelUnavailableError  # noqa: E402
from asrkit.models.kerashub import MoonshineModel  # noqa: E402


@pytest.fixture(scope="module")
def moonshine(tmp_path_factory):
    """A tiny Moonshine saved as a preset folder, a clip, and what the saved network generates for it."""
    from keras_hub.layers import MoonshineAudioConverter
    from keras_hub.models import (
        MoonshineAudioToText,
        MoonshineAudioToTextPreprocessor,
        MoonshineBackbone,
        MoonshineTokenizer,
    )

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["and so my fellow americans ask not what your country can do for you"] * 10),
        model_writer=proto,
        vocab_size=24,
        model_type="char",
        pad_id=-1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        minloglevel=2,
    )
    tokenizer = MoonshineTokenizer(proto=proto.getvalue())
    preprocessor = MoonshineAudioToTextPreprocessor(audio_converter=MoonshineAudioConverter(), tokenizer=tokenizer)
    keras.utils.set_random_seed(0)  # random weights, the same in every run
    backbone = MoonshineBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        filter_dim=16,
        encoder_num_layers=1,
        decoder_num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        encoder_num_heads=2,
        decoder_num_heads=2,
    )
    network = MoonshineAudioToText(backbone=backbone, preprocessor=preprocessor)
    network.compile(sampler="greedy")
    audio = load_audio(shared_path(JFK))[: 16000 * 2]
    expected = network.generate({"audio": audio[None, :, None]}, max_length=13)[0]
    folder = tmp_path_factory.mktemp("keras-hub") / "tiny-moonshine"
    network.save_to_preset(str(folder))
    return folder, audio, " ".join(expected.split())


def test_moonshine_round_trip_transcribes_and_streams(moonshine):
    folder, audio, expected = moonshine
    model = load_model(folder)
    assert isinstance(model, MoonshineModel) and model.name == "keras-hub:tiny-moonshine"
    assert "Moonshine" in model.card.description and model.card.config["backend"] == "keras-hub"
    # 2 s of audio at 6.5 tokens/s: the same 13-token bound the saved network was run with
    transcript = model.transcribe(audio)
    assert transcript.text == expected and transcript.duration_s == 2.0
    assert [w.text for w in transcript.words] == expected.split()
    # a shorter clip batched with a longer one decodes as it does alone (zero padding is masked)
    short = audio[:12000]
    alone = model.transcribe(short).text
    assert [t.text for t in model.transcribe_batch([audio, short])] == [expected, alone]
    stream = model.create_stream()
    for start in range(0, len(audio), 4000):
        stream.accept_waveform(16000, audio[start : start + 4000])
    assert stream.finish().text == expected


def test_moonshine_evaluation_is_cached_by_the_folder(moonshine, tmp_path):
    """A hub folder has no card.json, yet its files identify the version its hypotheses are cached under."""
    folder, audio, expected = moonshine
    assert resolve_model(folder) == folder
    cache = HypothesisCache.for_model(folder, cache_dir=tmp_path)
    utterance = Utterance(audio_path=shared_path(JFK), transcript="and so my fellow americans")
    model = load_model(folder)
    first = evaluate(model, [utterance], cache=cache, progress=False)
    again = evaluate(model, [utterance], cache=HypothesisCache.for_model(folder, cache_dir=tmp_path), progress=False)
    assert first.cached == 0 and again.cached == 1
    assert again.rows[0].hypothesis == first.rows[0].hypothesis


def test_a_preset_that_is_not_cached_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="does not download at run time.*kagglehub.model_download"):
        load_model("keras-hub:moonshine_tiny_en")
    with pytest.raises(ModelUnavailableError, match="not a KerasHub speech preset.*moonshine_base_en"):
        load_model("keras-hub:bert_base_en")


def test_a_preset_folder_of_another_task_is_refused(moonshine, tmp_path):
    folder, _, _ = moonshine
    other = tmp_path / "not-speech"
    other.mkdir()
    for item in folder.iterdir():
        if item.is_file():
            (other / item.name).write_bytes(item.read_bytes())
    (other / "task.json").write_text('{"class_name": "BertTextClassifier"}')
    with pytest.raises(ModelUnavailableError, match="BertTextClassifier.*MoonshineAudioToText"):
        load_model(other)

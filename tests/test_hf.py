"""Hugging Face TensorFlow models through load_model(), offline: tiny random models with the real classes,
built and saved here (nothing is downloaded)."""

import json

import numpy as np
import pytest

transformers = pytest.importorskip("transformers", reason="needs the 'hf' extra (transformers<5 and tf-keras)")

import tensorflow as tf  # noqa: E402
from conftest import JFK, shared_path  # noqa: E402

from asrkit.audio import load_audio  # noqa: E402
from asrkit.models import load_model  # noqa: E402
from asrkit.models.hf import ModelUnavailableError, StridedRecognizer, Wav2Vec2Model, WhisperModel  # noqa: E402

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory):
    from transformers import (
        TFWav2Vec2ForCTC,
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Processor,
    )

    folder = tmp_path_factory.mktemp("hf") / "tiny-wav2vec2"
    folder.mkdir()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate(LETTERS)}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    tf.random.set_seed(0)
    network = TFWav2Vec2ForCTC(config)
    network(np.zeros((1, 16000), np.float32))
    network.save_pretrained(folder)
    return folder


def test_wav2vec2_loads_offline_transcribes_and_streams(wav2vec2_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model(wav2vec2_dir)
    assert isinstance(model, Wav2Vec2Model) and model.name == "hf:tiny-wav2vec2" and model.frame_samples == 320
    audio = load_audio(shared_path(JFK))[: 16000 * 5]
    logits = model.logits(audio)
    assert logits.shape[1] == 5 + len(LETTERS) and abs(len(logits) - len(audio) / 320) <= 2
    transcript = model.transcribe(audio)
    assert transcript.text == " ".join(w.text for w in transcript.words)
    assert all(0 <= w.start <= w.end <= 5.01 for w in transcript.words)
    # the same logits decode to the same words whether run whole or in strided chunks
    recognizer = StridedRecognizer(model)
    for start in range(0, len(audio), 3333):
        recognizer.accept_waveform(audio[start : start + 3333])
    chunked = recognizer.finish()
    assert abs(sum(len(l) for l in recognizer._logits) - len(logits)) <= 1
    # the stream's windows fall where the recognizer's did, however the audio is cut into chunks
    stream = model.create_stream()
    for start in range(0, len(audio), 1600):
        stream.accept_waveform(16000, audio[start : start + 1600])
    assert stream.finish().text == " ".join(w.text for w in chunked)


def test_a_hub_model_that_is_not_cached_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(
        ModelUnavailableError,
        match="does not download at run time.*huggingface-cli download facebook/wav2vec2-base-960h",
    ):
        load_model("hf:facebook/wav2vec2-base-960h")


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    """A tiny Whisper saved to a folder, and the tokens the network it was saved from generates."""
    from transformers import (
        TFWhisperForConditionalGeneration,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    folder = tmp_path_factory.mktemp("hf") / "tiny-whisper"
    folder.mkdir()
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}  # bytes only: no merges
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|en|>",
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]
    vocab |= {t: len(vocab) + i for i, t in enumerate(specials)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    features = WhisperFeatureExtractor(feature_size=80)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(folder)
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=vocab[end],
        bos_token_id=vocab[end],
        eos_token_id=vocab[end],
        decoder_start_token_id=vocab["<|startoftranscript|>"],
    )
    tf.random.set_seed(0)  # random weights, the same in every run
    network = TFWhisperForConditionalGeneration(config)
    network.build_in_name_scope()
    # the defaults name token ids of the full vocabulary
    network.generation_config.suppress_tokens = network.generation_config.begin_suppress_tokens = None
    network.generation_config.forced_decoder_ids = None
    network.generation_config.no_timestamps_token_id = vocab["<|notimestamps|>"]
    network.generation_config.max_length = 12
    network.save_pretrained(folder)
    audio = load_audio(shared_path(JFK))[: 16000 * 3]
    tokens = np.asarray(network.generate(features(audio, sampling_rate=16000, return_tensors="np").input_features))
    return folder, audio, tokens


def test_whisper_round_trip_keeps_its_weights_transcribes_and_streams(whisper, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, audio, tokens = whisper
    model = load_model(folder)
    assert isinstance(model, WhisperModel)
    inputs = model.processor(audio, sampling_rate=16000, return_tensors="np").input_features
    # the known trap: a network built inside generate() would have re-randomised weights
    np.testing.assert_array_equal(np.asarray(model.network.generate(inputs)), tokens)
    expected = " ".join(model.processor.batch_decode(tokens, skip_special_tokens=True)[0].split())
    transcript = model.transcribe(audio)
    assert transcript.text == expected and transcript.duration_s == 3.0
    stream = model.create_stream()
    for start in range(0, len(audio), 4000):
        stream.accept_waveform(16000, audio[start : start + 4000])
    assert stream.finish().text == expected


def test_evaluation_caches_a_hub_folder_and_skips_the_cache_for_a_hub_name(wav2vec2_dir, tmp_path):
    from asrkit.cli.recognise import cache_for
    from asrkit.config import Config

    assert cache_for(str(wav2vec2_dir), config=Config(), cache_dir=tmp_path).path.name.startswith("tiny-wav2vec2-")
    # a name has no folder whose files would tell one version of the model from the next
    assert cache_for("hf:facebook/wav2vec2-base-960h", config=Config(), cache_dir=tmp_path) is None

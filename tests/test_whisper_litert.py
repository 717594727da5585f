"""Whisper exported to LiteRT: a loadable folder, the Keras model's logits and transcripts, no TensorFlow."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import FIXTURES_DEV, JFK, shared_path

from asrkit.audio import load_audio
from asrkit.cli import EXIT_OK, main
from asrkit.manifest import read_manifest
from asrkit.models import ModelUnavailableError, load_model
from asrkit.models.whisper.checkpoint import CheckpointError, sha256_file
from asrkit.models.whisper.frontend import log_mel_spectrogram, pad_or_trim
from asrkit.models.whisper.litert import (
    BACKEND,
    DECODER_FILE,
    ENCODER_FILE,
    WhisperLiteRTInference,
    WhisperLiteRTModel,
)
from asrkit.models.whisper.transcribe import MEL_PADDING, TranscribeOptions

GREEDY = TranscribeOptions(beam_size=1, without_timestamps=True, condition_on_previous_text=False)
# fixtures_dev clips whose greedy transcripts end where the speech does (no hallucinated tail, where
# float rounding can pick another token)
CLIPS = (0, 4, 12, 17, 19)


@pytest.fixture(scope="module")
def keras_model():
    try:
        return load_model("whisper-tiny.en")
    except ModelUnavailableError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def exported(keras_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("whisper") / "whisper-tiny.en-litert"
    assert main(["export", "whisper-tiny.en", str(out)]) == EXIT_OK
    return out


@pytest.fixture(scope="module")
def lite(exported):
    return WhisperLiteRTModel.load(exported)


@pytest.fixture(scope="module")
def jfk():
    return load_audio(shared_path(JFK))


def test_export_writes_a_verified_model_folder(exported, lite):
    card = json.loads((exported / "card.json").read_text())
    config = card["config"]
    assert card["name"] == "whisper-tiny.en-litert" and config["backend"] == BACKEND and card["metrics"] == {}
    assert config["quantization"] == "float16" and config["decoding"] == {"beam_size": 5}
    assert config["whisper"]["n_vocab"] == 51864 and config["generation"]["alignment_heads"]
    for file in (ENCODER_FILE, DECODER_FILE):
        assert config["weights"]["sha256"][file] == sha256_file(exported / file)
    # float16 weights: ~9M encoder and ~29M decoder parameters, the embedding stored once
    assert 15e6 < (exported / ENCODER_FILE).stat().st_size < 25e6
    assert 50e6 < (exported / DECODER_FILE).stat().st_size < 65e6
    assert lite.name == "whisper-tiny.en-litert" and lite.transcriber.inference.config.to_dict() == config["whisper"]


def test_a_corrupt_flatbuffer_is_refused(exported, tmp_path):
    broken = shutil.copytree(exported, tmp_path / "broken")
    with open(broken / ENCODER_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="SHA-256"):
        WhisperLiteRTModel.load(broken)


def test_decoding_steps_match_the_keras_network(keras_model, lite, jfk):
    """The same calls on both runtimes give the same logits and attention: a prompt for two beams of
    each of two windows, steps with beams reordered and repeated the way beam search does it (the
    audio keys/values left as they are), a shrinking batch and the alignment's scoring."""
    keras_inf, lite_inf = keras_model.transcriber.inference, lite.transcriber.inference
    assert isinstance(lite_inf, WhisperLiteRTInference)
    mel = log_mel_spectrogram(jfk, padding=MEL_PADDING)
    windows = np.stack([pad_or_trim(mel), pad_or_trim(mel[:, 200:])])
    # " And so my fellow Americans ask"
    words = np.array([843, 523, 616, 5891, 3399, 1265])
    reallocations = []

    def run(inf):
        cross_all = inf.cross_keys_values(inf.encode(windows))
        cross = inf.gather(cross_all, np.array([0, 0, 1, 1]))
        logits, cache = inf.prefill(np.array([[50257, 50362]] * 4), cross)
        out, batch = [logits], 4
        for step, rows in enumerate((None, [1, 0, 3, 2], [0, 0, 2, 3], None, [2, 3], None)):
            if rows is not None:
                cache = inf.gather(cache, np.array(rows))
                if len(rows) != batch:
                    cross, batch = inf.gather(cross, np.array(rows)), len(rows)
            generation = getattr(getattr(inf, "_decoder", None), "generation", None)
            # every row its own token, so that reordering rows changes the logits
            logits, cache = inf.step(words[(np.arange(batch) + step) % len(words), np.newaxis], cross, cache)
            reallocations.append(getattr(getattr(inf, "_decoder", None), "generation", None) != generation)
            out.append(logits)
        logits, weights = inf.cross_attention(np.array([[50257, 50362, 843, 523, 616]] * 2), cross_all)
        return out, logits, weights

    keras_steps, keras_logits, keras_weights = run(keras_inf)
    reallocations.clear()
    lite_steps, lite_logits, lite_weights = run(lite_inf)
    # the prompt-to-step change and the smaller batch reallocate; reordered beams do not
    assert reallocations == [True, False, False, False, True, False]
    for k, l in zip(keras_steps, lite_steps):
        assert k.shape == l.shape
        np.testing.assert_allclose(l, k, atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(lite_logits, keras_logits, atol=2e-3, rtol=1e-3)
    for k, l in zip(keras_weights, lite_weights):
        np.testing.assert_allclose(l, k, atol=1e-4)


def test_greedy_transcripts_equal_the_keras_model(keras_model, lite, jfk):
    utterances = read_manifest(shared_path(FIXTURES_DEV))
    audios = [jfk] + [load_audio(utterances[i].audio_path) for i in CLIPS]
    expected = keras_model.segments(audios, options=GREEDY)
    got = lite.segments(audios, options=GREEDY)
    assert [[s.text for s in segs] for segs in got] == [[s.text for s in segs] for segs in expected]
    assert [[s.tokens for s in segs] for segs in got] == [[s.tokens for s in segs] for segs in expected]
    assert got[0][0].text.startswith(" And so my fellow Americans ask not what your country can do for you")


def test_default_decoding_with_word_times_equals_the_keras_model(keras_model, lite, jfk):
    """Beam search of width 5, timestamps and word times from the cross-attention alignment."""
    expected, got = keras_model.transcribe(jfk), lite.transcribe(jfk)
    assert got.text == expected.text
    assert [w.text for w in got.words] == [w.text for w in expected.words]
    np.testing.assert_allclose(
        [(w.start, w.end) for w in got.words], [(w.start, w.end) for w in expected.words], atol=0.021
    )


def test_litert_streams_in_whole_windows_as_the_keras_model_does(keras_model, lite, jfk):
    """The exported encoder takes 30-s windows only; streamed in 30-s windows, both decode the same."""
    options = replace(lite.streaming, catch_up=0.0)
    results = []
    for model in (keras_model, lite):
        stream = model.create_stream(options=options)
        for begin in range(0, len(jfk), 16000):
            stream.accept_waveform(16000, jfk[begin : begin + 16000])
        results.append(stream.finish())
        assert stream.recognizer.status.window_s == 30.0
    assert results[0].committed == results[1].committed
    assert results[1].committed.startswith("And so my fellow Americans")


def test_transcribing_with_litert_imports_neither_tensorflow_nor_keras(exported):
    code = (
        "import sys\n"
        "from asrkit.audio import load_audio\n"
        "from asrkit.models import load_model\n"
        f"m = load_model({str(exported)!r})\n"
        f"print(m.transcribe(load_audio({str(shared_path(JFK))!r})).text)\n"
        "print(sorted(k for k in ('tensorflow', 'keras') if k in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text, modules = done.stdout.strip().splitlines()[-2:]
    assert text.startswith("And so, my fellow Americans") and modules == "[]"

"""Our CTC model exported to LiteRT: same logits, same transcripts, offline and streamed, without TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import JFK, shared_path

from asrkit.audio import load_audio
from asrkit.cli import EXIT_OK, EXIT_USAGE, main
from asrkit.models import load_model
from asrkit.models.litert_ctc import LiteRTCTCModel


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("litert") / "tiny-lite"
    assert main(["export", str(tiny_model_dir), str(out)]) == EXIT_OK
    return out


def test_export_writes_a_loadable_model_folder(exported):
    card = json.loads((exported / "card.json").read_text())
    assert card["name"] == "tiny-test-litert" and card["config"]["backend"] == "litert-ctc"
    assert card["metrics"] == {} and (exported / "model.tflite").stat().st_size > 10_000
    assert isinstance(load_model(exported), LiteRTCTCModel)


def test_logits_and_transcripts_match_keras(tiny_model_dir, exported):
    keras_model, lite = load_model(tiny_model_dir), load_model(exported)
    audio = load_audio(shared_path(JFK))
    feats = [keras_model.features(audio), keras_model.features(audio[:7777]), keras_model.features(audio[:0])]
    for k, l in zip(keras_model.logits(feats), lite.logits(feats)):
        assert k.shape == l.shape
        np.testing.assert_allclose(l, k, atol=1e-4)
    assert [t.text for t in lite.transcribe_batch([audio, audio[:7777]])] == [
        t.text for t in keras_model.transcribe_batch([audio, audio[:7777]])
    ]


@pytest.mark.parametrize("chunk", [1600, 4001])
def test_streamed_equals_offline(exported, chunk):
    lite = load_model(exported)
    audio = load_audio(shared_path(JFK))[: 16000 * 4]
    stream = lite.create_stream()
    for start in range(0, len(audio), chunk):
        stream.accept_waveform(16000, audio[start : start + chunk])
    assert stream.finish().text == lite.transcribe(audio).text


def test_exporting_a_model_of_another_kind_is_refused(capsys):
    assert main(["export", "pocketsphinx", "/tmp/never-written"]) == EXIT_USAGE
    assert "not a Keras CTC model" in capsys.readouterr().err


def test_transcribing_with_litert_imports_neither_tensorflow_nor_keras(exported):
    code = (
        "import sys, numpy as np\n"
        "from asrkit.models import load_model\n"
        f"m = load_model({str(exported)!r})\n"
        "m.transcribe(np.zeros(16000, np.float32)); s = m.create_stream()\n"
        "s.accept_waveform(16000, np.zeros(8000, np.float32)); s.finish()\n"
        "print(sorted(k for k in ('tensorflow', 'keras') if k in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

"""A prompt of expected words (ASRModel.with_prompt) on the shipped Whisper tiny.en and real speech:
through the API, the CLI, a live stream and the app's File and Live tabs; its length limit; and the
models that take none refusing it by name."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import shared_path

from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.cli import EXIT_OK, EXIT_USAGE, main
from asrkit.models import PromptError, load_model
from asrkit.models.whisper.model import MAX_PROMPT_TOKENS
from asrkit.models.whisper.streaming import StreamingOptions
from asrkit.models.whisper.transcribe import TranscribeOptions
from asrkit.stream_metrics import stream_audio
from asrkit.widgets.file_mode import FileTranscriber
from asrkit.widgets.live import LiveOptions, LiveTranscriber

# CMU ARCTIC speaker aew: "Not at this particular case, Tom, apologized Whittemore." tiny.en writes
# "Whitmore" without a prompt, in the file transcript and the live stream alike
WHITTEMORE = "speech/fixtures/wav/pra_cmu_arctic_us_aew_a0002.flac"
PROMPT = "Whittemore"


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def clip():
    return load_audio(shared_path(WHITTEMORE))


def test_the_prompt_corrects_a_name_tiny_en_misspells(model, clip):
    assert "Whitmore" in model.transcribe(clip).text
    prompted = model.with_prompt(PROMPT)
    assert "Whittemore" in prompted.transcribe(clip).text
    assert "Whittemore" in prompted.text([clip])[0]
    # a copy: the model itself is as it was, and the network is shared, not loaded again
    assert model.prompt is None and prompted.prompt == PROMPT
    assert prompted.transcriber.inference is model.transcriber.inference and prompted.lock is model.lock
    assert prompted.with_prompt("  ").prompt is None


def test_a_streamed_transcript_uses_the_prompt(model, clip):
    audio = np.concatenate([clip, np.zeros(SAMPLE_RATE, np.float32)])
    # a pass every second of audio whatever it costs: the same passes however busy the machine is
    steady = StreamingOptions(catch_up=0.0)
    plain = stream_audio(model.create_stream(options=steady), audio, chunk_s=0.2, realtime=False)
    prompted = stream_audio(model.with_prompt(PROMPT).create_stream(options=steady), audio, chunk_s=0.2, realtime=False)
    assert "Whitmore" in plain.result().committed and "Whittemore" in prompted.result().committed


def test_the_expected_words_come_first_in_a_prompt_within_its_budget(model):
    tr, tok = model.transcriber, model.transcriber.tokenizer
    expected = tok.encode(" Dashwood, Voila, Kaldi")
    said = list(range(1000, 1300))
    options = TranscribeOptions(initial_prompt="Dashwood, Voila, Kaldi")
    budget = StreamingOptions().prompt_tokens
    prompt = tr.prompt(said, options, budget=budget)
    context = prompt[1 : prompt.index(tok.sot)]
    assert prompt[0] == tok.sot_prev and len(context) == budget
    assert context[: len(expected)] == expected and context[len(expected) :] == said[-(budget - len(expected)) :]
    # a file's windows: the expected words and the end of the text so far, half the decoder's positions
    prompt = tr.prompt(said, options)
    assert len(prompt[1 : prompt.index(tok.sot)]) == tr.max_length // 2 - 1
    assert tr.prompt([], TranscribeOptions()) == [*tok.sot_sequence]


def test_a_prompt_over_the_limit_or_with_special_tokens_is_refused(model):
    with pytest.raises(PromptError, match=rf"whisper-tiny.en is \d+ tokens long .* at most {MAX_PROMPT_TOKENS} tokens"):
        model.with_prompt(", ".join(["Dashwood", "Whittemore", "Kaldi"] * 20))
    with pytest.raises(PromptError, match="special token"):
        model.with_prompt("Kaldi <|endoftext|>")


def test_a_model_without_a_prompt_refuses_it_by_name(tiny_model_dir):
    for name in ("pocketsphinx", str(tiny_model_dir)):
        other = load_model(name)
        with pytest.raises(PromptError, match=rf"{other.name} \(\w+\) takes no prompt"):
            other.with_prompt(PROMPT)


def test_the_cli_prompt_flag(capsys, tiny_model_dir, tmp_path):
    clip = str(shared_path(WHITTEMORE))
    assert main(["transcribe", clip, "--prompt", PROMPT]) == EXIT_OK
    assert "Whittemore" in capsys.readouterr().out
    assert main(["stream", clip, "--prompt", PROMPT, "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["prompt"] == PROMPT and "Whittemore" in report["text"] and "Whittemore" in report["offline_text"]
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"path\ttranscript\n{clip}\tNot at this particular case, Tom, apologized Whittemore.\n")
    assert main(["eval", str(manifest), "--prompt", PROMPT, "--json", str(tmp_path / "r.json")]) == EXIT_OK
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["hypothesis"].endswith("whittemore")
    capsys.readouterr()
    assert main(["eval", str(manifest), "--prompt", PROMPT, "--record"]) == EXIT_USAGE
    assert "never --record-ed" in capsys.readouterr().err
    assert main(["transcribe", clip, "--model", str(tiny_model_dir), "--prompt", PROMPT]) == EXIT_USAGE
    assert "--prompt: tiny-test (KerasCTCModel) takes no prompt" in capsys.readouterr().err


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition(), f"{what} never happened"


def test_the_file_tab_transcribes_with_the_expected_words(model):
    view = FileTranscriber(model)
    view.prompt.text.value = PROMPT
    assert "expects these words" in view.prompt.note.value
    view.submit("clip.flac", shared_path(WHITTEMORE).read_bytes())
    _wait_for(lambda: "transcribed by" in view.status.value, "the transcription")
    assert "Whittemore" in view.transcript.value and f"expecting “{PROMPT}”" in view.status.value
    # a model that takes no prompt: the tab says so and transcribes without
    view.use_model(load_model("pocketsphinx"))
    assert "Expected words not used" in view.prompt.note.value and "pocketsphinx" in view.prompt.note.value


def test_the_live_tab_streams_with_the_expected_words(model, clip):
    # room for the whole clip in the queue: it arrives at once, and a dropped start changes the words
    view = LiveTranscriber(model, options=LiveOptions(max_backlog_s=30.0))
    view.prompt.text.value = PROMPT
    assert "expects these words" in view.prompt.note.value
    finished: list[str] = []
    view.on_finished(finished.append)
    mic = view.microphone
    mic.receive(mic, {"type": "started", "rate": SAMPLE_RATE}, [])
    pcm = (np.concatenate([clip, np.zeros(SAMPLE_RATE, np.float32)]) * 32767).astype("<i2")
    size = SAMPLE_RATE // 5
    for seq, begin in enumerate(range(0, len(pcm), size)):
        mic.receive(
            mic,
            {"type": "chunk", "rate": SAMPLE_RATE, "seq": seq, "sent_ms": time.time() * 1000},
            [pcm[begin : begin + size].tobytes()],
        )
    mic.receive(mic, {"type": "stopped"}, [])
    _wait_for(lambda: finished, "the end of the recording")
    assert "Whittemore" in finished[0] and 'data-dropped-s="0.0"' in view.status.value, finished

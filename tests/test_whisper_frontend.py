"""Tests for asrkit.models.whisper.frontend against faster-whisper's FeatureExtractor.

faster-whisper is a test-only dependency: the comparisons skip without it, the rest still run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import JFK, shared_path

from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.models.whisper.frontend import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_FREQS,
    N_SAMPLES,
    log_mel_spectrogram,
    mel_filters,
    pad_or_trim,
)

# Max abs difference from faster-whisper in the normalised log-mel (values in about [-1.5, 1.5]).
# Both run the same float32 NumPy FFT; only the order of float32 additions in the filterbank matmul
# differs, which measured at most 2.4e-7 (2 ulp): this leaves room for other BLAS kernels.
TOLERANCE = 1e-6

rng = np.random.default_rng(20240601)
_t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
SIGNALS = {
    "sine": 0.5 * np.sin(2 * np.pi * 440 * _t[:SAMPLE_RATE]),
    # tonal and loud: many bands sit near the 80 dB clamp, where float32 rounding shows most
    "chirp": np.sin(2 * np.pi * (100 + 3000 * _t) * _t),
    "noise": 0.1 * rng.standard_normal(SAMPLE_RATE),
    "silence": np.zeros(SAMPLE_RATE),
    "near_floor": 1e-5 * rng.standard_normal(8000),  # about a tenth of the mel values at the 1e-10 floor
    "clicks": (np.arange(SAMPLE_RATE) % 997 == 0).astype(np.float64),
    "short_250": 0.3 * rng.standard_normal(250),  # under one window: reflect padding wraps
    "short_170": rng.uniform(-1, 1, 170),
    "odd_12345": 0.2 * rng.standard_normal(12_345),
}


@pytest.fixture(scope="module")
def reference() -> Callable[..., np.ndarray]:
    """faster-whisper's log-mel, called the way `log_mel_spectrogram` is."""
    feature_extractor = pytest.importorskip("faster_whisper.feature_extractor")
    extractors = {}

    def compute(audio: np.ndarray, *, n_mels: int, padding: int) -> np.ndarray:
        if n_mels not in extractors:
            extractors[n_mels] = feature_extractor.FeatureExtractor(feature_size=n_mels)
        return extractors[n_mels](audio, padding=padding)

    return compute


def assert_matches(audio: np.ndarray, reference, *, n_mels: int, padding: int) -> np.ndarray:
    ours = log_mel_spectrogram(audio, n_mels=n_mels, padding=padding)
    theirs = reference(audio, n_mels=n_mels, padding=padding)
    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape == (n_mels, (audio.size + padding) // HOP_LENGTH)
    assert np.abs(ours - theirs).max() <= TOLERANCE
    return ours


def test_constants_match_faster_whisper():
    feature_extractor = pytest.importorskip("faster_whisper.feature_extractor")
    theirs = feature_extractor.FeatureExtractor()
    assert (N_FFT, HOP_LENGTH, SAMPLE_RATE) == (theirs.n_fft, theirs.hop_length, theirs.sampling_rate)
    assert (N_SAMPLES, N_FRAMES) == (theirs.n_samples, theirs.nb_max_frames) == (480_000, 3000)
    assert 1 / FRAMES_PER_SECOND == theirs.time_per_frame


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_faster_whispers_own(n_mels):
    feature_extractor = pytest.importorskip("faster_whisper.feature_extractor")
    filters = mel_filters(n_mels)
    assert filters.shape == (n_mels, N_FREQS) and filters.dtype == np.float32
    theirs = feature_extractor.FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, n_mels)
    np.testing.assert_allclose(filters, theirs, rtol=0, atol=1e-8)


def test_mel_filters_are_cached_and_read_only():
    assert mel_filters(80) is mel_filters(80)
    with pytest.raises(ValueError, match="read-only"):
        mel_filters(80)[0, 0] = 1.0


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("padding", [0, HOP_LENGTH])
def test_matches_faster_whisper_on_speech(reference, n_mels, padding):
    audio = load_audio(shared_path(JFK))
    mel = assert_matches(audio, reference, n_mels=n_mels, padding=padding)
    # speech is not clamped everywhere: a sign the comparison is not between two constant arrays
    assert mel.max() - mel.min() == pytest.approx(2.0, abs=1e-6)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("padding", [0, HOP_LENGTH])
@pytest.mark.parametrize("name", SIGNALS)
def test_matches_faster_whisper_on_synthetic_signals(reference, name, n_mels, padding):
    assert_matches(SIGNALS[name].astype(np.float32), reference, n_mels=n_mels, padding=padding)


def test_float64_input_is_computed_in_float32_like_faster_whisper(reference):
    assert_matches(SIGNALS["noise"], reference, n_mels=80, padding=HOP_LENGTH)


def test_silence_is_the_log_floor():
    mel = log_mel_spectrogram(np.zeros(SAMPLE_RATE, dtype=np.float32))
    # (log10(1e-10) + 4) / 4, with 1e-10 rounded to float32
    np.testing.assert_allclose(mel, np.full((80, FRAMES_PER_SECOND), -1.5), rtol=0, atol=TOLERANCE)


def test_thirty_seconds_fill_exactly_one_encoder_window():
    audio = np.zeros(N_SAMPLES, dtype=np.float32)
    assert log_mel_spectrogram(audio).shape == (80, N_FRAMES)
    assert log_mel_spectrogram(audio, n_mels=128, padding=HOP_LENGTH).shape == (128, N_FRAMES + 1)


def test_under_one_hop_gives_no_frames_unless_padded(reference):
    audio = SIGNALS["noise"][: HOP_LENGTH - 1].astype(np.float32)
    assert log_mel_spectrogram(audio).shape == (80, 0)
    assert log_mel_spectrogram(np.zeros(0, dtype=np.float32), n_mels=128).shape == (128, 0)
    assert_matches(audio, reference, n_mels=80, padding=HOP_LENGTH)
    assert_matches(np.zeros(0, dtype=np.float32), reference, n_mels=80, padding=HOP_LENGTH)


def test_pad_or_trim_appends_zero_frames():
    mel = log_mel_spectrogram(SIGNALS["noise"].astype(np.float32))
    padded = pad_or_trim(mel)
    assert padded.shape == (80, N_FRAMES) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[:, : mel.shape[1]], mel)
    assert np.all(padded[:, mel.shape[1] :] == 0.0)


def test_pad_or_trim_keeps_the_first_frames():
    mel = np.arange(2 * 3 * 10, dtype=np.float32).reshape(2, 3, 10)
    np.testing.assert_array_equal(pad_or_trim(mel, 4), mel[..., :4])
    assert pad_or_trim(mel, 10) is mel
    assert pad_or_trim(mel, 12).shape == (2, 3, 12)
    assert pad_or_trim(mel, 0).shape == (2, 3, 0)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((2, SAMPLE_RATE), dtype=np.float32), r"shape \(n_samples,\), got shape \(2, 16000\)"),
        (np.zeros(SAMPLE_RATE, dtype=np.int16), "floating-point.*int16"),
        (np.zeros(SAMPLE_RATE, dtype=np.complex64), "floating-point.*complex64"),
        (np.array([0.0, np.nan, 0.1, np.nan], dtype=np.float32), "2 NaN and 0 infinite.*first at sample 1"),
        (np.array([0.0, 0.0, -np.inf], dtype=np.float32), "0 NaN and 1 infinite.*first at sample 2"),
        (np.array([0.0, 1e300]), "1 infinite"),  # finite in float64, not in float32
    ],
    ids=["stereo", "int16", "complex", "nan", "inf", "float32_overflow"],
)
def test_bad_audio_raises_naming_the_problem(audio, message):
    with pytest.raises(ValueError, match=message):
        log_mel_spectrogram(audio)


def test_bad_arguments_raise():
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    with pytest.raises(ValueError, match="padding must be at least 0 samples, got -1"):
        log_mel_spectrogram(audio, padding=-1)
    with pytest.raises(ValueError, match="n_mels must be at least 1, got 0"):
        log_mel_spectrogram(audio, n_mels=0)
    with pytest.raises(ValueError, match="n_frames must be at least 0, got -1"):
        pad_or_trim(np.zeros((80, 10), dtype=np.float32), -1)

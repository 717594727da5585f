import json

import numpy as np
import pytest
from conftest import JFK, shared_path

from asrkit.features import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    LOG_FLOOR,
    N_FFT,
    N_MELS,
    N_MFCC,
    SAMPLE_RATE,
    FeatureConfig,
    FeatureStats,
    StreamingFeatureExtractor,
    compute_features,
    log_mel,
    mfcc,
    normalize,
)

KINDS = ["log_mel", "mfcc"]


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    # Noise rather than silence so that every frame and channel is distinct and a misaligned frame shows.
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * SAMPLE_RATE)).astype(np.float32)


def _stream(audio: np.ndarray, boundaries: list[int], config: FeatureConfig) -> np.ndarray:
    extractor = StreamingFeatureExtractor(config)
    parts = [extractor.accept_waveform(chunk) for chunk in np.split(audio, boundaries)]
    parts.append(extractor.finish())
    assert extractor.num_frames == sum(part.shape[0] for part in parts)
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    import soundfile

    audio, sample_rate = soundfile.read(shared_path(JFK), dtype="float32")
    assert sample_rate == SAMPLE_RATE and audio.ndim == 1
    return audio


def test_constants_are_consistent():
    assert FRAMES_PER_SECOND == 100
    assert N_FFT / SAMPLE_RATE == 0.025 and HOP_LENGTH / SAMPLE_RATE == 0.010
    assert FeatureConfig().num_features == N_MELS
    assert FeatureConfig(kind="mfcc").num_features == N_MFCC


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [1, 7, 159, 160, 161, 400, 4000])
def test_streaming_equals_offline_for_fixed_chunks(kind, chunk):
    config = FeatureConfig(kind=kind)
    audio = _noise(0.5)
    offline = compute_features(audio, config=config)
    streamed = _stream(audio, list(range(chunk, audio.size, chunk)), config)
    assert streamed.shape == offline.shape == (config.num_frames(audio.size), config.num_features)
    np.testing.assert_allclose(streamed, offline, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(5))
def test_streaming_equals_offline_for_random_chunks(kind, seed):
    config = FeatureConfig(kind=kind)
    rng = np.random.default_rng(seed)
    audio = _noise(1.3, seed=seed)
    # Sizes from empty to several windows, so some calls complete no frame and others many.
    boundaries = np.cumsum(rng.integers(0, 3 * N_FFT, size=200))
    boundaries = boundaries[boundaries < audio.size].tolist()
    streamed = _stream(audio, boundaries, config)
    np.testing.assert_allclose(streamed, compute_features(audio, config=config), atol=1e-4)


def test_streaming_keeps_less_than_one_window_and_resets():
    extractor = StreamingFeatureExtractor(FeatureConfig())
    for chunk in np.split(_noise(1.0), [5000, 5001, 9000]):
        extractor.accept_waveform(chunk)
        assert extractor.num_pending_samples < N_FFT
    assert extractor.finish().shape == (0, N_MELS)
    extractor.reset()
    assert extractor.num_frames == 0 and extractor.num_pending_samples == 0
    assert extractor.accept_waveform(np.zeros(N_FFT - 1, np.float32)).shape == (0, N_MELS)
    assert extractor.accept_waveform(np.zeros(1, np.float32)).shape == (1, N_MELS)


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_on_real_speech(jfk, kind):
    config = FeatureConfig(kind=kind)
    features = compute_features(jfk, config=config)
    assert features.shape == (1 + (jfk.size - N_FFT) // HOP_LENGTH, config.num_features)
    assert features.dtype == np.float32 and np.isfinite(features).all()


def test_real_speech_is_well_above_the_log_floor(jfk):
    features = log_mel(jfk)
    assert features.min() >= np.log(LOG_FLOOR) - 1e-3
    assert np.median(features.max(axis=1)) > np.log(LOG_FLOOR) + 5


def test_tone_lands_in_the_nearest_mel_band():
    import librosa

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmin=0.0, fmax=SAMPLE_RATE / 2)[1:-1]
    assert log_mel(tone).mean(axis=0).argmax() == np.abs(centres - 1000).argmin()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("length", [0, 1, N_FFT - 1])
def test_short_input_gives_zero_frames(kind, length):
    config = FeatureConfig(kind=kind)
    features = compute_features(np.zeros(length, np.float32), config=config)
    assert features.shape == (0, config.num_features) and features.dtype == np.float32


def test_exactly_one_window_gives_one_frame():
    assert log_mel(np.zeros(N_FFT, np.float32)).shape == (1, N_MELS)
    assert np.allclose(log_mel(np.zeros(N_FFT, np.float32)), np.log(LOG_FLOOR))


def test_mfcc_is_dct_of_log_mel():
    import scipy.fft

    audio = _noise(0.2)
    expected = scipy.fft.dct(log_mel(audio), type=2, norm="ortho", axis=-1)[:, :N_MFCC]
    np.testing.assert_allclose(mfcc(audio), expected, atol=1e-5)


def test_rejects_non_mono_or_integer_audio():
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 1000), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        log_mel(np.zeros(1000, np.int16))


def test_per_utterance_cmvn(jfk):
    normalized = normalize(log_mel(jfk))
    np.testing.assert_allclose(normalized.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(axis=0), 1, atol=1e-3)


@pytest.mark.parametrize("n_frames", [0, 1])
def test_cmvn_of_degenerate_utterances_has_no_nan(n_frames):
    normalized = normalize(np.full((n_frames, 3), 2.5, np.float32))
    assert normalized.shape == (n_frames, 3)
    assert not np.isnan(normalized).any() and np.all(normalized == 0)


def test_global_cmvn_and_stats_match_numpy():
    utterances = [_noise(seconds, seed=i) for i, seconds in enumerate([0.03, 0.5, 0.0, 1.2, 0.3])]
    features = [log_mel(audio) for audio in utterances]
    stats = FeatureStats(num_features=N_MELS)
    for utterance in features:
        stats.update(utterance)
    everything = np.concatenate(features).astype(np.float64)
    assert stats.count == everything.shape[0]
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.std, everything.std(axis=0), rtol=1e-5)
    normalized = normalize(features[1], mean=stats.mean, std=stats.std)
    np.testing.assert_allclose(normalized, (features[1] - everything.mean(0)) / everything.std(0), atol=1e-4)


def test_stats_and_global_cmvn_reject_bad_input():
    with pytest.raises(ValueError, match="no frames"):
        _ = FeatureStats(num_features=2).mean
    with pytest.raises(ValueError, match="expected shape"):
        FeatureStats(num_features=2).update(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="both mean and std"):
        normalize(np.zeros((4, 2)), mean=np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        normalize(np.zeros((4, 2)), mean=np.zeros(3), std=np.ones(3))


def test_config_round_trips_through_json():
    config = FeatureConfig(kind="mfcc", n_mels=64, n_mfcc=13, fmin=20.0, fmax=7600.0)
    assert FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert FeatureConfig.from_dict(FeatureConfig().to_dict()) == FeatureConfig()
    assert FeatureConfig.from_dict({"kind": "mfcc"}) == FeatureConfig(kind="mfcc")


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown FeatureConfig keys: n_mel, window"):
        FeatureConfig.from_dict({"n_mel": 80, "window": "hann"})
    with pytest.raises(ValueError, match="kind"):
        FeatureConfig(kind="spectrogram")
    with pytest.raises(ValueError, match="n_mfcc"):
        FeatureConfig(n_mels=20, n_mfcc=40)
    with pytest.raises(ValueError, match="fmax"):
        FeatureConfig(fmax=9000.0)
    with pytest.raises(ValueError, match="hop_length"):
        FeatureConfig(hop_length=N_FFT + 1)

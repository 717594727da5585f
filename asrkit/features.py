"""Acoustic features: log-mel filterbanks and MFCCs, offline and streaming.

Frames are never centre-padded, so frame ``t`` covers samples ``[t * hop_length, t * hop_length +
n_fft)`` and depends on nothing else. That makes every feature frame-local: a streaming extractor fed
any chunking reproduces the offline features, and a model trained offline sees the same input live.
"""

from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any

import librosa
import numpy as np
import scipy.fft

import asrkit._librosa  # noqa: F401  (sets NUMBA_CACHE_DIR before librosa loads numba)
from asrkit.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms analysis window
HOP_LENGTH = 160  # 10 ms between frames
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
N_MELS = 80
N_MFCC = 40

# Added to mel power before the log. A full-scale sine gives a mel-band power of about 1e2, so this is
# ~80 dB down (Whisper's dynamic range) and above 16-bit quantisation noise (~1e-9): digital silence and
# dither all map to about log(1e-6) = -13.8 instead of -inf or outliers that would dominate CMVN. It is
# a constant rather than relative to the utterance's loudest frame so that features stay frame-local.
LOG_FLOOR = 1e-6

# A feature channel that is constant over an utterance (e.g. all silence at LOG_FLOOR) has std 0;
# dividing by this instead keeps it at 0 rather than NaN, and is far below any real channel's spread.
STD_FLOOR = 1e-5

FEATURE_KINDS = ("log_mel", "mfcc")


@dataclass(frozen=True)
class FeatureConfig:
    kind: str = "log_mel"  # which features compute_features returns: one of FEATURE_KINDS
    sample_rate: int = SAMPLE_RATE  # Hz; the audio must already be at this rate
    n_fft: int = N_FFT  # analysis window and FFT size in samples
    hop_length: int = HOP_LENGTH  # samples between the starts of consecutive frames
    n_mels: int = N_MELS  # mel bands in the filterbank
    n_mfcc: int = N_MFCC  # cepstral coefficients kept when kind == "mfcc"
    fmin: float = 0.0  # lowest filterbank frequency in Hz
    fmax: float | None = None  # highest filterbank frequency in Hz; None means sample_rate / 2

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "n_mfcc"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        # A hop longer than the window would skip samples, which the streaming buffer does not model.
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft})")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must not exceed n_mels ({self.n_mels})")
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= nyquist:
            raise ValueError(f"need 0 <= fmin < fmax <= {nyquist} Hz, got fmin={self.fmin}, fmax={fmax}")

    @property
    def num_features(self) -> int:
        """Width of one feature frame for this config's ``kind``."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def num_frames(self, num_samples: int) -> int:
        """Number of complete frames in ``num_samples`` samples (0 if shorter than one window).

        Examples
        --------
        >>> FeatureConfig().num_frames(SAMPLE_RATE)
        98
        """
        if num_samples < self.n_fft:
            return 0
        return 1 + (num_samples - self.n_fft) // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict, as stored in a model card."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        """Inverse of `to_dict`; missing keys take their defaults, unknown keys are an error.

        Unknown keys are rejected because silently ignoring one (a typo, or a field from a newer
        asrkit) would give a model features other than those it was trained on.
        """
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown FeatureConfig keys: {', '.join(unknown)}")
        return cls(**data)


def _as_waveform(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n_samples,), got shape {audio.shape}")
    if audio.size and not np.issubdtype(audio.dtype, np.floating):
        raise TypeError(f"expected floating-point samples in [-1, 1], got dtype {audio.dtype}")
    return audio.astype(np.float32, copy=False)


@cache
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    filters = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    # Every caller shares this cached array, so an in-place edit by one would corrupt all the others.
    filters.setflags(write=False)
    return filters


def log_mel(audio: np.ndarray, *, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Natural-log mel filterbank energies, time-major.

    Parameters
    ----------
    audio : np.ndarray, shape = (n_samples,)
        Mono floating-point waveform in [-1, 1] at ``config.sample_rate``.
    config : FeatureConfig
        Framing and filterbank settings; ``kind`` and ``n_mfcc`` are ignored.

    Returns
    -------
    np.ndarray, shape = (n_frames, config.n_mels), dtype float32
        ``log(mel_power + LOG_FLOOR)``, with ``n_frames = config.num_frames(n_samples)``: 0 for
        audio shorter than one window.

    Examples
    --------
    >>> log_mel(np.zeros(SAMPLE_RATE, dtype=np.float32)).shape
    (98, 80)
    """
    audio = _as_waveform(audio)
    if config.num_frames(audio.shape[0]) == 0:
        return np.zeros((0, config.n_mels), dtype=np.float32)
    spectrum = librosa.stft(audio, n_fft=config.n_fft, hop_length=config.hop_length, center=False)
    power = np.abs(spectrum) ** 2  # (n_fft // 2 + 1, n_frames)
    filters = _mel_filters(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    mel = power.T @ filters.T
    return np.log(mel + LOG_FLOOR).astype(np.float32)


def mfcc(audio: np.ndarray, *, config: FeatureConfig = FeatureConfig(kind="mfcc")) -> np.ndarray:
    """Mel-frequency cepstral coefficients: orthonormal DCT-II of `log_mel` over the mel axis.

    Parameters
    ----------
    audio : np.ndarray, shape = (n_samples,)
        Mono floating-point waveform in [-1, 1] at ``config.sample_rate``.
    config : FeatureConfig
        Framing, filterbank and ``n_mfcc``; ``kind`` is ignored.

    Returns
    -------
    np.ndarray, shape = (n_frames, config.n_mfcc), dtype float32

    Examples
    --------
    >>> mfcc(np.zeros(SAMPLE_RATE, dtype=np.float32)).shape
    (98, 40)
    """
    cepstrum = scipy.fft.dct(log_mel(audio, config=config), type=2, norm="ortho", axis=-1)
    return cepstrum[:, : config.n_mfcc]


_EXTRACTORS = {"log_mel": log_mel, "mfcc": mfcc}


def compute_features(audio: np.ndarray, *, config: FeatureConfig) -> np.ndarray:
    """The features ``config.kind`` names, shape (n_frames, config.num_features), float32.

    Examples
    --------
    >>> compute_features(np.zeros(SAMPLE_RATE, dtype=np.float32), config=FeatureConfig(kind="mfcc")).shape
    (98, 40)
    """
    return _EXTRACTORS[config.kind](audio, config=config)


def normalize(features: np.ndarray, *, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """Cepstral mean and variance normalisation, per utterance or with global statistics.

    Parameters
    ----------
    features : np.ndarray, shape = (n_frames, n_features)
    mean, std : np.ndarray, shape = (n_features,), optional
        Global statistics (e.g. from `FeatureStats`, stored in a model card). Give both or neither;
        with neither, the utterance's own per-channel mean and std are used.

    Returns
    -------
    np.ndarray, shape = (n_frames, n_features), dtype float32
        ``(features - mean) / max(std, STD_FLOOR)``. Per-utterance normalisation of 0 frames gives 0
        frames, and of 1 frame gives zeros.

    Examples
    --------
    >>> normalize(np.array([[1.0, 5.0], [3.0, 5.0]])).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"expected features of shape (n_frames, n_features), got {features.shape}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std for global normalisation, or neither for per-utterance")
    if mean is None:
        if features.shape[0] == 0:
            return features.copy()
        mean, std = features.mean(axis=0), features.std(axis=0)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (features.shape[1],) or std.shape != (features.shape[1],):
        raise ValueError(f"mean and std must have shape ({features.shape[1]},), got {mean.shape} and {std.shape}")
    return (features - mean) / np.maximum(std, STD_FLOOR)


class FeatureStats:
    """Running per-channel mean and (population) std over the frames of many utterances.

    Batches are merged with Chan et al.'s parallel form of Welford's update, which stays accurate
    where a plain sum of squares would cancel catastrophically (log energies sit far from zero).

    Examples
    --------
    >>> stats = FeatureStats(num_features=2)
    >>> stats.update(np.array([[0.0, 1.0], [2.0, 1.0]]))
    >>> stats.mean.tolist(), stats.std.tolist()
    ([1.0, 1.0], [1.0, 0.0])
    """

    def __init__(self, num_features: int):
        self.num_features = num_features
        self.count = 0
        self._mean = np.zeros(num_features, dtype=np.float64)
        self._m2 = np.zeros(num_features, dtype=np.float64)  # sum of squared deviations from _mean

    def update(self, features: np.ndarray) -> None:
        """Add the frames of one utterance, shape (n_frames, num_features)."""
        batch = np.asarray(features, dtype=np.float64)
        if batch.ndim != 2 or batch.shape[1] != self.num_features:
            raise ValueError(f"expected shape (n_frames, {self.num_features}), got {batch.shape}")
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        delta = batch_mean - self._mean
        total = self.count + n
        self._mean += delta * (n / total)
        self._m2 += ((batch - batch_mean) ** 2).sum(axis=0) + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean, shape (num_features,), float32."""
        self._require_frames()
        return self._mean.astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        """Per-channel population standard deviation, shape (num_features,), float32."""
        self._require_frames()
        return np.sqrt(self._m2 / self.count).astype(np.float32)

    def _require_frames(self) -> None:
        if self.count == 0:
            raise ValueError("no frames accumulated yet; call update() first")


class StreamingFeatureExtractor:
    """Features computed incrementally from audio chunks, identical to `compute_features` offline.

    Between calls only the samples not yet covered by a complete frame are kept (fewer than
    ``n_fft``), so the cost of a call depends on the chunk's length, not on how much came before.

    Examples
    --------
    >>> extractor = StreamingFeatureExtractor(FeatureConfig())
    >>> [extractor.accept_waveform(np.zeros(8000, np.float32)).shape[0] for _ in range(2)]
    [48, 50]
    >>> extractor.num_frames
    98
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        self.config = config
        self._pending = np.zeros(0, dtype=np.float32)
        self._num_frames = 0

    @property
    def num_frames(self) -> int:
        """Frames emitted since construction or the last `reset`."""
        return self._num_frames

    @property
    def num_pending_samples(self) -> int:
        """Samples received but not yet part of an emitted frame (always < ``config.n_fft``)."""
        return self._pending.shape[0]

    def accept_waveform(self, samples: np.ndarray) -> np.ndarray:
        """Feed the next chunk; return the frames it completed.

        Parameters
        ----------
        samples : np.ndarray, shape = (n_samples,)
            Mono floating-point audio at ``config.sample_rate``; any length, including 0.

        Returns
        -------
        np.ndarray, shape = (k, config.num_features), dtype float32
            The ``k >= 0`` frames that this chunk completed, in order.
        """
        self._pending = np.concatenate([self._pending, _as_waveform(samples)])
        frames = compute_features(self._pending, config=self.config)
        # Copy so that a view does not pin the caller's whole chunk in memory until the next call.
        self._pending = self._pending[frames.shape[0] * self.config.hop_length :].copy()
        self._num_frames += frames.shape[0]
        return frames

    def finish(self) -> np.ndarray:
        """End the utterance: return its remaining frames and drop the leftover samples.

        Without centre padding the leftover samples never fill a window, so this always returns
        shape (0, num_features); callers should still use it so that a padded front end could
        later flush its tail without changing them.
        """
        self._pending = np.zeros(0, dtype=np.float32)
        return np.zeros((0, self.config.num_features), dtype=np.float32)

    def reset(self) -> None:
        """Forget all audio and the frame count, ready for a new utterance."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._num_frames = 0

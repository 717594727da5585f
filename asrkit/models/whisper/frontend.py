"""Whisper's log-mel front end: audio samples to the normalised log-mel the encoder reads.

The numbers match faster-whisper 1.2.1's ``FeatureExtractor`` (a NumPy port of openai-whisper's
torch front end) to float32 rounding, so checkpoints converted from either run on the input they
were trained with.
"""

from __future__ import annotations

import operator
from functools import cache

import librosa
import numpy as np

import asrkit._librosa  # noqa: F401  (sets NUMBA_CACHE_DIR before librosa loads numba)
from asrkit.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms between frames
N_FREQS = N_FFT // 2 + 1  # 201 one-sided FFT bins
CHUNK_LENGTH_S = 30  # the encoder always sees 30 s
N_SAMPLES = CHUNK_LENGTH_S * SAMPLE_RATE  # 480000 samples in a chunk
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a chunk
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second
# The encoder's second convolution has stride 2, so one output position spans two mel frames.
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # 320
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 encoder positions per second

# Periodic Hann (torch.hann_window's default), which Whisper was trained with, not NumPy's symmetric one.
_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)


@cache
def mel_filters(n_mels: int) -> np.ndarray:
    """Slaney-normalised mel filterbank Whisper uses, 0 to 8 kHz.

    Parameters
    ----------
    n_mels : int
        Number of mel bands: 80, or 128 for large-v3.

    Returns
    -------
    np.ndarray, shape = (n_mels, N_FREQS), dtype float32
        Read-only; row ``m`` weights the power in each FFT bin for band ``m``.
    """
    n_mels = operator.index(n_mels)
    if n_mels < 1:
        raise ValueError(f"n_mels must be at least 1, got {n_mels}")
    filters = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels)
    # Every caller shares this cached array, so an in-place edit by one would corrupt all the others.
    filters.setflags(write=False)
    return filters


def log_mel_spectrogram(audio: np.ndarray, *, n_mels: int = 80, padding: int = 0) -> np.ndarray:
    """Normalised log-mel spectrogram, as faster-whisper's ``FeatureExtractor(feature_size=n_mels)``.

    Frames are centred (the audio is reflect-padded by ``N_FFT // 2`` each side) and, as in Whisper,
    the last one is dropped. Power in each mel band is floored at 1e-10,
    log10-compressed, clamped to 8 (80 dB) below the loudest value in ``audio`` and mapped by
    ``(x + 4) / 4`` to about [-1, 1].

    Parameters
    ----------
    audio : np.ndarray, shape = (n_samples,)
        Mono floating-point samples in [-1, 1] at ``SAMPLE_RATE``, as ``asrkit.audio.load_audio``
        returns; computed in float32.
    n_mels : int
        Number of mel bands: 80, or 128 for large-v3.
    padding : int
        Zero samples appended before the STFT. faster-whisper's ``transcribe`` uses its default of
        ``HOP_LENGTH``, which makes the last frame of ``audio`` a full one.

    Returns
    -------
    np.ndarray, shape = (n_mels, (n_samples + padding) // HOP_LENGTH), dtype float32
        Empty along the frame axis when ``n_samples + padding < HOP_LENGTH``.

    Raises
    ------
    ValueError
        If ``audio`` is not 1-D, not floating-point or not finite, or ``padding`` is negative.

    Examples
    --------
    >>> log_mel_spectrogram(np.zeros(N_SAMPLES, dtype=np.float32), n_mels=128).shape
    (128, 3000)
    """
    samples = _validated_samples(audio)
    filters = mel_filters(n_mels)
    padding = operator.index(padding)
    if padding < 0:
        raise ValueError(f"padding must be at least 0 samples, got {padding}")
    samples = np.pad(samples, (0, padding))
    n_frames = samples.size // HOP_LENGTH
    if n_frames == 0:
        return np.zeros((n_mels, 0), dtype=np.float32)

    centred = np.pad(samples, N_FFT // 2, mode="reflect")
    # The STFT of the centred signal has n_frames + 1 frames; Whisper drops the last, so skip it.
    frames = np.lib.stride_tricks.sliding_window_view(centred, N_FFT)[::HOP_LENGTH][:n_frames]
    # NumPy's float32 FFT, as faster-whisper's: scipy's FFT is ~3x faster, but its float32 rounding
    # moves the output by up to ~5e-5, several times faster-whisper's own distance from float64.
    spectrum = np.fft.rfft(frames * _WINDOW, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2  # (n_frames, N_FREQS); avoids abs()'s square root
    log_mel = np.log10(np.maximum(filters @ power.T, np.float32(1e-10)))
    np.maximum(log_mel, log_mel.max() - 8.0, out=log_mel)
    log_mel += 4.0
    log_mel /= 4.0
    return log_mel


def pad_or_trim(mel: np.ndarray, n_frames: int = N_FRAMES) -> np.ndarray:
    """Zero-pad or trim a log-mel spectrogram to ``n_frames`` frames along its last axis.

    Padded frames are exactly 0, as faster-whisper pads a short final segment. (openai-whisper
    instead appends 30 s of zero samples before the log-mel, so its padding is the log-mel of
    silence, clamped 80 dB below the loudest value.)

    Parameters
    ----------
    mel : np.ndarray, shape = (..., n_mels, n_in)
        Output of `log_mel_spectrogram`, or a slice of it.
    n_frames : int
        Frames wanted; the encoder takes ``N_FRAMES``.

    Returns
    -------
    np.ndarray, shape = (..., n_mels, n_frames)
        ``mel`` itself if it already has ``n_frames`` frames, a view of it if it has more, and a
        new zero-padded array if it has fewer.

    Examples
    --------
    >>> pad_or_trim(np.ones((80, 2), dtype=np.float32), 4)[0]
    array([1., 1., 0., 0.], dtype=float32)
    """
    n_frames = operator.index(n_frames)
    if n_frames < 0:
        raise ValueError(f"n_frames must be at least 0, got {n_frames}")
    missing = n_frames - mel.shape[-1]
    if missing <= 0:
        return mel[..., :n_frames] if missing else mel
    return np.pad(mel, [(0, 0)] * (mel.ndim - 1) + [(0, missing)])


def _validated_samples(audio: np.ndarray) -> np.ndarray:
    """``audio`` as float32, or a ValueError naming what is wrong with it."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono samples of shape (n_samples,), got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        # Integer PCM would need scaling to [-1, 1] first; casting it silently gives garbage features.
        raise ValueError(f"audio must be floating-point samples in [-1, 1], got dtype {audio.dtype}")
    # Checked after the cast, which turns float64 beyond float32's range into inf: reported below.
    with np.errstate(over="ignore"):
        samples = audio.astype(np.float32, copy=False)
    bad = ~np.isfinite(samples)
    if bad.any():
        n_nan = int(np.isnan(samples).sum())
        raise ValueError(
            f"audio must be finite, got {n_nan} NaN and {int(bad.sum()) - n_nan} infinite samples "
            f"(first at sample {int(bad.argmax())})"
        )
    return samples

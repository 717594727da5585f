"""Training-time augmentation: speed perturbation, room reverberation, additive noise, SpecAugment.

Noise and room impulse responses come from a folder of noise clips with a ``rir_simulated/`` subfolder
(see :class:`Augmenter`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal
import soxr

from asrkit.audio import SAMPLE_RATE, load_audio


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly a waveform is perturbed; each draw is independent."""

    # speaking-rate factors drawn uniformly (Kaldi-style: tempo and pitch change together)
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    # chance of convolving with a simulated room impulse response
    reverb_prob: float = 0.4
    # chance of adding a noise clip
    noise_prob: float = 0.6
    # signal-to-noise ratio range in dB for added noise
    snr_db: tuple[float, float] = (5.0, 25.0)
    # peak level range in dB relative to full scale after augmentation
    gain_db: tuple[float, float] = (-20.0, -1.0)


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``audio`` (shape (n,)) ``factor`` times faster: n / factor samples, pitch shifted too."""
    if factor == 1.0:
        return audio
    return soxr.resample(audio, round(SAMPLE_RATE * factor), SAMPLE_RATE)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with an impulse response, aligned on its direct path so words keep their times."""
    direct = int(np.argmax(np.abs(rir)))
    wet = scipy.signal.fftconvolve(audio, rir / (np.sqrt(np.sum(rir**2)) + 1e-9))[direct : direct + len(audio)]
    return wet.astype(np.float32)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add a random stretch of ``noise`` (looped if short) at ``snr_db`` below the speech's power."""
    if len(noise) < len(audio):
        noise = np.tile(noise, len(audio) // len(noise) + 1)
    start = rng.integers(0, len(noise) - len(audio) + 1)
    piece = noise[start : start + len(audio)]
    speech_power = np.mean(audio**2) + 1e-10
    noise_power = np.mean(piece**2) + 1e-10
    return (audio + piece * np.sqrt(speech_power / noise_power / 10 ** (snr_db / 10))).astype(np.float32)


# Noise and impulse response files are read in any of these formats.
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".opus")


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix in AUDIO_SUFFIXES)


class Augmenter:
    """Random waveform perturbations with the shared noise clips and room impulse responses.

    Without ``noise_dir`` only speed and gain are perturbed.
    Randomness comes from the caller (one generator per utterance), so the same utterance gets
    the same perturbation however many processes share the work.
    """

    def __init__(self, noise_dir: str | Path | None, *, config: AugmentConfig = AugmentConfig()) -> None:
        self.config = config
        self.rirs: list[np.ndarray] = []
        self.noises: list[np.ndarray] = []
        if noise_dir is None:
            return
        noise_dir = Path(noise_dir)
        self.rirs = [load_audio(p) for p in _audio_files(noise_dir / "rir_simulated")]
        self.noises = [
            load_audio(p) for d in sorted(noise_dir.glob("*/")) if d.name != "rir_simulated" for p in _audio_files(d)
        ]
        if not self.rirs or not self.noises:
            raise FileNotFoundError(f"{noise_dir} has no noise clips or room impulse responses")

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A perturbed copy of ``audio`` (shape (n,), 16 kHz); its length changes with the speed."""
        c = self.config
        audio = speed_perturb(audio, float(rng.choice(c.speeds)))
        if rng.random() < c.reverb_prob and self.rirs:
            audio = reverberate(audio, self.rirs[rng.integers(len(self.rirs))])
        if rng.random() < c.noise_prob and self.noises:
            audio = add_noise(audio, self.noises[rng.integers(len(self.noises))], rng.uniform(*c.snr_db), rng)
        peak = np.max(np.abs(audio)) + 1e-9
        return (audio * (10 ** (rng.uniform(*c.gain_db) / 20) / peak)).astype(np.float32)


def spec_augment(
    features: np.ndarray,
    rng: np.random.Generator,
    *,
    freq_masks: int = 2,
    max_freq_width: int = 12,
    time_masks_per_s: float = 1.0,
    max_time_width: int = 25,
    fill: np.ndarray | float = 0.0,
) -> np.ndarray:
    """SpecAugment: blank random frequency bands and time spans of (n_frames, n_features) features.

    ``fill`` (a scalar or a (n_features,) vector, e.g. the global mean) replaces masked values.
    Time masks scale with length: ``time_masks_per_s`` per second of 10 ms frames.
    """
    out = features.copy()
    n_frames, n_features = out.shape
    fill = np.broadcast_to(np.asarray(fill, out.dtype), (n_features,))
    for _ in range(freq_masks):
        width = int(rng.integers(0, max_freq_width + 1))
        start = int(rng.integers(0, max(n_features - width, 0) + 1))
        out[:, start : start + width] = fill[start : start + width]
    for _ in range(int(n_frames / 100 * time_masks_per_s)):
        width = int(rng.integers(0, max_time_width + 1))
        start = int(rng.integers(0, max(n_frames - width, 0) + 1))
        out[start : start + width] = fill
    return out

"""Load speech audio from files, encoded bytes or arrays as mono float32 at SAMPLE_RATE.

Every model and feature consumes what :func:`load_audio` returns, so input validation
lives here: a bad input raises an :class:`AudioError` subclass whose message names the
problem and the source, rather than surfacing later as a shape error or a garbage
transcript.
"""

from __future__ import annotations

import io
import itertools
import math
import numbers
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from asrkit.errors import AsrkitError

SAMPLE_RATE = 16000  # the one rate every model and feature uses
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 8
# Float peaks up to this are clipped: gain or resampling can overshoot 1.0 a little.
# Higher ones almost surely mean integer PCM cast to float without scaling.
FLOAT_CLIP_TOLERANCE = 1.5

# Lossy formats state lengths from bitrate estimates or with encoder padding, so
# decoding up to this much less than the header says is not truncation.
_LOSSY_SLACK_S = 0.1
_LOSSY_SLACK_FRACTION = 0.02
_READ_BLOCK_FRAMES = 1 << 16
_OGG_MAX_PAGE_BYTES = 27 + 255 + 255 * 255  # header, lacing table, largest body
_WAV_PLACEHOLDER_SIZE = 0x7FFF0000  # WAV data sizes from here up mean "length unknown"
# FFmpeg probes permissively (random bytes can pass for subtitles) and some demuxers,
# such as HLS, open further files named in the input; allow audio containers only.
_PYAV_DEMUXERS = "mov,matroska,mp3,aac,ogg,wav,flac,aiff,caf,asf,amr"
# Raw streams have no length field; FFmpeg guesses one from the bitrate.
_GUESSED_LENGTH_DEMUXERS = {"mp3", "aac", "amr"}

# Decoded float32 samples, shape (frames, channels), and their sample rate.
_Decoded = tuple[np.ndarray, int]


@dataclass(frozen=True)
class AudioLimits:
    """Bounds on what :func:`load_audio` accepts, so one input cannot exhaust memory."""

    max_bytes: int = 512 * 2**20  # file, encoded bytes or array size; checked before reading
    max_duration_s: float = 3600.0  # checked from the header before decoding, and after


DEFAULT_LIMITS = AudioLimits()


class AudioError(AsrkitError, ValueError):
    """Base class: the input cannot be turned into speech samples."""


class EmptyAudioError(AudioError):
    """The input has 0 bytes or holds 0 samples."""


class CorruptAudioError(AudioError):
    """A recognised format whose data is broken or shorter than its header declares."""


class UnsupportedFormatError(AudioError):
    """Not audio (text, images, archives, random bytes), or a container with no audio stream."""


class InvalidSamplesError(AudioError):
    """NaN or infinite samples, a non-numeric dtype, or float samples far outside [-1, 1]."""


class ChannelError(AudioError):
    """No channels, more than MAX_CHANNELS, or an array not shaped (frames[, channels])."""


class SampleRateError(AudioError):
    """A sample rate that is missing, not a whole number, or outside the supported range."""


class AudioTooLongError(AudioError):
    """Longer than ``AudioLimits.max_duration_s``."""


class AudioTooLargeError(AudioError):
    """Larger than ``AudioLimits.max_bytes``."""


class AudioNotFoundError(AudioError, FileNotFoundError):
    """The path does not exist or is a directory."""


def load_audio(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray,
    *,
    sample_rate: int | None = None,
    limits: AudioLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Load speech audio as mono float32 samples at SAMPLE_RATE.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray, memoryview or np.ndarray
        A path to an audio file; the encoded bytes of one (WAV, FLAC, OGG, MP3, M4A/AAC,
        WebM/Opus, ...); or samples shaped (frames,) or (frames, channels). Integer
        samples are scaled by their dtype's full scale; float samples should lie in
        [-1, 1]. A ``str`` is always a path, never audio content.
    sample_rate : int, optional
        Rate of an array ``source`` in Hz, required there. Encoded audio states its own
        rate, so passing one with a path or bytes is a TypeError.
    limits : AudioLimits, default DEFAULT_LIMITS
        Size and duration bounds.

    Returns
    -------
    np.ndarray, shape (n_samples,), dtype float32
        Channels averaged to mono, resampled to SAMPLE_RATE, within [-1, 1].

    Raises
    ------
    AudioError
        The subclass says what is wrong with the input.
    TypeError
        ``source`` has an unsupported type, or ``sample_rate`` came with encoded audio.
    """
    if isinstance(source, np.ndarray):
        src = "<array>"
        samples, rate = _from_array(source, sample_rate, src, limits)
    elif sample_rate is not None:
        raise TypeError("sample_rate is only for arrays; encoded audio states its own rate")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        src, data = "<bytes>", bytes(source)
        if not data:
            raise EmptyAudioError(f"{src}: empty input (0 bytes)")
        _check_size(len(data), src, limits)
        samples, rate = _decode(io.BytesIO(data), src, limits)
    elif isinstance(source, (str, os.PathLike)):
        src = str(os.fspath(source))
        samples, rate = _from_path(source, src, limits)
    else:
        raise TypeError(f"cannot load audio from {type(source).__name__}")
    return _to_mono_16k(samples, rate, src, limits)


def wav_bytes(audio: np.ndarray) -> bytes:
    """16 kHz mono float samples, shape (n,), as a 16-bit PCM WAV file in memory (for an audio player)."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _from_path(path: str | os.PathLike[str], src: str, limits: AudioLimits) -> _Decoded:
    try:
        info = os.stat(path)
    except PermissionError as e:  # the file exists; "not found" would mislead
        raise AudioError(f"{src}: cannot be read: permission denied") from e
    except (OSError, ValueError) as e:  # ValueError: an embedded NUL byte
        raise AudioNotFoundError(f"{src}: no such file") from e
    if stat.S_ISDIR(info.st_mode):
        raise AudioNotFoundError(f"{src}: is a directory, not an audio file")
    if info.st_size == 0:
        raise EmptyAudioError(f"{src}: empty file (0 bytes)")
    _check_size(info.st_size, src, limits)
    try:
        f = open(path, "rb")
    except PermissionError as e:
        raise AudioError(f"{src}: cannot be read: permission denied") from e
    with f:
        return _decode(f, src, limits)


def _from_array(array: np.ndarray, sample_rate: object, src: str, limits: AudioLimits) -> _Decoded:
    """Validate raw samples and scale them to float32."""
    if sample_rate is None:
        raise SampleRateError(f"{src}: sample_rate is required for arrays")
    if (
        not isinstance(sample_rate, numbers.Real)
        or isinstance(sample_rate, bool)
        or not float(sample_rate).is_integer()
    ):
        raise SampleRateError(f"{src}: sample_rate must be a whole number of Hz: {sample_rate!r}")
    rate = int(sample_rate)
    _check_rate(rate, src)
    if array.dtype.kind not in "fiu":
        raise InvalidSamplesError(f"{src}: dtype {array.dtype} is not a real numeric sample type")
    if array.ndim == 1:
        array = array[:, np.newaxis]
    elif array.ndim != 2:
        raise ChannelError(f"{src}: {array.ndim}-D array; expected (frames,) or (frames, channels)")
    frames, channels = array.shape
    if channels > MAX_CHANNELS and frames <= MAX_CHANNELS:
        raise ChannelError(
            f"{src}: shape {array.shape} looks like (channels, frames); "
            "transpose it (array.T) to (frames, channels)"
        )
    _check_channels(channels, src)
    _check_size(array.nbytes, src, limits)
    _check_duration(frames / rate, src, limits)
    if array.dtype.kind == "f":
        return array.astype(np.float32), rate
    full_scale = 2.0 ** (np.iinfo(array.dtype).bits - 1)
    # Unsigned PCM (8-bit WAV's convention) is centred on mid-scale, not on zero.
    offset = full_scale if array.dtype.kind == "u" else 0.0
    return (array.astype(np.float32) - offset) / full_scale, rate


def _decode(f: BinaryIO, src: str, limits: AudioLimits) -> _Decoded:
    """Decode an encoded file with libsndfile, or failing that FFmpeg."""
    head = f.read(16)
    f.seek(0)
    # libsndfile reads an Ogg stream cut short as a shorter, intact one.
    if head.startswith(b"OggS") and not _ogg_ends_cleanly(f):
        raise CorruptAudioError(f"{src}: truncated or corrupt: Ogg stream's final page is missing")
    decoded = _decode_soundfile(f, src, limits)
    if decoded is None:
        f.seek(0)
        decoded = _decode_pyav(f, src, limits)
    if decoded is not None:
        return decoded
    if _looks_like_audio(head):
        raise CorruptAudioError(f"{src}: truncated or corrupt: looks like audio, will not decode")
    raise UnsupportedFormatError(f"{src}: not audio: no decoder recognises this format")


def _decode_soundfile(f: BinaryIO, src: str, limits: AudioLimits) -> _Decoded | None:
    """Decode with libsndfile (WAV, FLAC, OGG, MP3, AIFF, ...); None if it cannot open ``f``."""
    wav_frames = _wav_declared_frames(f)
    f.seek(0)
    try:
        sound = sf.SoundFile(f)
    except sf.LibsndfileError:
        return None
    with sound:
        _check_rate(sound.samplerate, src)
        _check_channels(sound.channels, src)
        _check_duration(sound.frames / sound.samplerate, src, limits)
        # Block by block: a single read() allocates whatever length the header claims.
        blocks = []
        try:
            while len(block := sound.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                blocks.append(block)
        except sf.LibsndfileError as e:
            raise CorruptAudioError(f"{src}: truncated or corrupt {sound.format} data ({e})") from e
        samples = np.concatenate(blocks) if blocks else np.zeros((0, sound.channels), np.float32)
        # libsndfile trims a WAV's stated length to the bytes present, hiding truncation.
        declared = sound.frames if wav_frames is None else wav_frames
        _check_complete(len(samples), declared, sound.samplerate, src, lossy=sound.format == "MP3")
        return samples, sound.samplerate


def _decode_pyav(f: BinaryIO, src: str, limits: AudioLimits) -> _Decoded | None:
    """Decode the first audio stream with FFmpeg (M4A/AAC, WebM/Opus, ...); None if unknown."""
    # imported here: FFmpeg is only needed for what libsndfile cannot read, and a trainer on a
    # machine without PyAV still reads FLAC/WAV/OGG
    import av

    try:
        container = av.open(f, container_options={"format_whitelist": _PYAV_DEMUXERS})
    except av.error.FFmpegError:
        return None
    with container:
        if not container.streams.audio:
            found = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise UnsupportedFormatError(f"{src}: not audio: no audio stream (found {found})")
        stream = container.streams.audio[0]
        declared_s = _declared_seconds(container, stream)
        if declared_s is not None:
            _check_duration(declared_s, src, limits)
        # Planar float for every frame, whatever sample format the codec decodes to.
        resampler = av.AudioResampler(format="fltp")
        planes, n_frames, rate = [], 0, stream.sample_rate
        try:
            for frame in itertools.chain(container.decode(stream), [None]):  # None flushes
                for out in resampler.resample(frame):
                    planes.append(out.to_ndarray())
                    n_frames, rate = n_frames + out.samples, out.sample_rate
                if n_frames:
                    _check_duration(n_frames / rate, src, limits)
        except av.error.FFmpegError as e:
            codec = stream.codec_context.name
            raise CorruptAudioError(f"{src}: truncated or corrupt {codec} data ({e})") from e
    if declared_s is not None:
        _check_complete(n_frames, round(declared_s * rate), rate, src, lossy=True)
    if not planes:
        return np.zeros((0, stream.channels), np.float32), rate
    return np.concatenate(planes, axis=1).T, rate


def _declared_seconds(container, stream) -> float | None:
    """Length the PyAV ``container`` states for ``stream``; None where it states none or guesses."""
    import av

    if container.format.name in _GUESSED_LENGTH_DEMUXERS:
        return None
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    # A container's own duration covers all its streams, so only use it for a lone one.
    if container.duration is not None and len(container.streams) == 1:
        return container.duration / av.time_base
    return None  # e.g. live recordings such as MediaRecorder's WebM


def to_mono(
    samples: np.ndarray, *, sample_rate: int, limits: AudioLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Validate raw samples and mix them to mono float32 in [-1, 1], keeping their rate.

    For audio that arrives in pieces (a microphone, a socket), where each piece must be checked
    but resampling belongs to a stateful resampler that sees the pieces in order.

    Parameters
    ----------
    samples : np.ndarray, shape (frames,) or (frames, channels)
        Integer samples are scaled by their dtype's full scale.
    sample_rate : int
        Their rate in Hz.

    Returns
    -------
    np.ndarray, shape (frames,), dtype float32
    """
    src = "<array>"
    floats, _ = _from_array(np.asarray(samples), sample_rate, src, limits)
    return _validated_mono(floats, src)


def _validated_mono(samples: np.ndarray, src: str) -> np.ndarray:
    """Check float32 samples, shape (frames, channels), for NaN and scale; average the channels."""
    if not len(samples):
        raise EmptyAudioError(f"{src}: contains no audio samples")
    peak = float(np.max(np.abs(samples)))
    if not math.isfinite(peak):  # max propagates NaN, and inf is its own max
        raise InvalidSamplesError(f"{src}: contains NaN or infinite samples")
    if peak > FLOAT_CLIP_TOLERANCE:
        raise InvalidSamplesError(
            f"{src}: float samples peak at {peak:g}, above {FLOAT_CLIP_TOLERANCE}; looks like "
            "unscaled integer PCM, scale it to [-1, 1] (int16: divide by 32768)"
        )
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    return np.clip(mono, -1.0, 1.0)


def _to_mono_16k(samples: np.ndarray, rate: int, src: str, limits: AudioLimits) -> np.ndarray:
    """Validate float32 samples, shape (frames, channels); return (n_samples,) at SAMPLE_RATE."""
    _check_rate(rate, src)
    _check_channels(samples.shape[1], src)
    _check_duration(len(samples) / rate, src, limits)
    mono = _validated_mono(samples, src)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    # Clipping also absorbs the slight overshoot band-limited resampling adds near full scale.
    return np.ascontiguousarray(np.clip(mono, -1.0, 1.0), dtype=np.float32)


def _check_size(n_bytes: int, src: str, limits: AudioLimits) -> None:
    if n_bytes > limits.max_bytes:
        limit = limits.max_bytes
        raise AudioTooLargeError(f"{src}: {n_bytes} bytes, over the limit of {limit} bytes")


def _check_duration(seconds: float, src: str, limits: AudioLimits) -> None:
    if seconds > limits.max_duration_s:
        limit = limits.max_duration_s
        raise AudioTooLongError(f"{src}: {seconds:.1f} s long, over the limit of {limit:g} s")


def _check_rate(rate: int, src: str) -> None:
    if rate <= 0:
        raise SampleRateError(f"{src}: sample rate {rate} Hz is not positive")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise SampleRateError(
            f"{src}: sample rate {rate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz"
        )


def _check_channels(channels: int, src: str) -> None:
    if channels == 0:
        raise ChannelError(f"{src}: has 0 channels")
    if channels > MAX_CHANNELS:
        raise ChannelError(f"{src}: has {channels} channels; at most {MAX_CHANNELS} are supported")


def _check_complete(got: int, declared: int, rate: int, src: str, *, lossy: bool) -> None:
    slack = max(_LOSSY_SLACK_S * rate, _LOSSY_SLACK_FRACTION * declared) if lossy else 0
    if declared - got > slack:
        raise CorruptAudioError(
            f"{src}: truncated or corrupt: header declares {declared} frames, only {got} decoded"
        )


def _wav_declared_frames(f: BinaryIO) -> int | None:
    """Frames a RIFF/WAVE header declares; None when not WAV or the length is left open."""
    riff = f.read(12)
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        return None
    block_align = 0
    while len(header := f.read(8)) == 8:
        chunk_id, size = header[:4], int.from_bytes(header[4:], "little")
        if chunk_id == b"data":
            # Writers that cannot seek back to finish the header (pipes, arecord) leave a
            # placeholder: 0, or a size at the 2 or 4 GiB edge.
            return size // block_align if block_align and 0 < size < _WAV_PLACEHOLDER_SIZE else None
        next_chunk = f.tell() + size + (size & 1)  # chunks are padded to even sizes
        if chunk_id == b"fmt ":
            block_align = int.from_bytes(f.read(16)[12:14], "little")
        f.seek(next_chunk)
    return None


def _ogg_ends_cleanly(f: BinaryIO) -> bool:
    """Whether the last Ogg page is whole and flagged end-of-stream."""
    size = f.seek(0, io.SEEK_END)
    f.seek(max(0, size - _OGG_MAX_PAGE_BYTES))  # a whole last page lies within this tail
    tail = f.read()
    f.seek(0)
    start = tail.rfind(b"OggS")
    if start < 0 or len(tail) < start + 27:
        return False
    n_segments = tail[start + 26]
    lacing = tail[start + 27 : start + 27 + n_segments]
    end = start + 27 + n_segments + sum(lacing)
    return bool(tail[start + 5] & 0x04) and len(lacing) == n_segments and end <= len(tail)


def _looks_like_audio(head: bytes) -> bool:
    """Whether ``head`` starts like an audio container, so a decode failure means damage."""
    if head[:4] in (b"RIFF", b"RF64"):
        return head[8:12] == b"WAVE"
    if head[:4] == b"FORM":
        return head[8:12] in (b"AIFF", b"AIFC")
    return (
        head.startswith((b"fLaC", b"OggS", b"ID3", b"\x1a\x45\xdf\xa3", b"caff"))  # EBML: WebM
        or head[4:8] == b"ftyp"  # MP4/M4A
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # MPEG/ADTS sync
    )

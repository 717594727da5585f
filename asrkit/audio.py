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
import zlib
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
# Decoded frames mixed and resampled at a time: codecs decode ~1000 frames at once, and a soxr call
# per codec frame would cost more than the decoding.
_READ_BLOCK_FRAMES = 1 << 16
_OGG_HEADER_BYTES = 27  # capture pattern, version, flags, granule, serial, sequence, checksum, segments
_OGG_CRC_AT = 22  # where the header's checksum lies; the page is summed with it zeroed
_OGG_FIRST_PAGE, _OGG_LAST_PAGE = 0x02, 0x04  # header flags
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))  # each byte, its bits in reverse order
_WAV_PLACEHOLDER_SIZE = 0x7FFF0000  # WAV data sizes from here up mean "length unknown"
# libsndfile's SF_COUNT_MAX, which it reports as the length of a FLAC whose header states none
# (total samples 0, as an encoder writing to a pipe leaves it): not a length to check
_SF_UNKNOWN_FRAMES = 2**63 - 1
# No PCM format stores 64-bit integers, so they have no full scale to divide by; a list of Python
# ints becomes int64 too, and scaling its values by 2**63 would make silence.
_UNSCALED_DTYPES = (np.dtype(np.int64), np.dtype(np.uint64))
# FFmpeg probes permissively (random bytes can pass for subtitles) and some demuxers,
# such as HLS, open further files named in the input; allow audio containers only.
_PYAV_DEMUXERS = "mov,matroska,mp3,aac,ogg,wav,flac,aiff,caf,asf,amr"
# Raw streams have no length field; FFmpeg guesses one from the bitrate.
_GUESSED_LENGTH_DEMUXERS = {"mp3", "aac", "amr"}


@dataclass(frozen=True)
class AudioLimits:
    """Bounds on what :func:`load_audio` accepts, so one input cannot exhaust memory."""

    max_bytes: int = 512 * 2**20  # file, encoded bytes or array size; checked before reading
    max_duration_s: float = 3600.0  # checked from the header before decoding, and while decoding


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
        samples (8, 16 or 32 bits) are scaled by their dtype's full scale; float samples
        should lie in [-1, 1]. 64-bit integers are refused, as by soundfile: no PCM
        format has them, so their scale is unknown. A ``str`` is always a path, never
        audio content.
    sample_rate : int, optional
        Rate of an array ``source`` in Hz, required there. Encoded audio states its own
        rate, so passing one with a path or bytes is a TypeError.
    limits : AudioLimits, default DEFAULT_LIMITS
        Size and duration bounds.

    Returns
    -------
    np.ndarray, shape (n_samples,), dtype float32
        Channels averaged to mono, resampled to SAMPLE_RATE, within [-1, 1]. Encoded audio
        is mixed and resampled as it decodes, and decoding stops at the duration limit, so
        memory follows this result's size, not the source's rate and channel count.

    Raises
    ------
    AudioError
        The subclass says what is wrong with the input.
    TypeError
        ``source`` has an unsupported type, or ``sample_rate`` came with encoded audio.
    """
    if isinstance(source, np.ndarray):
        src = "<array>"
        samples, rate = _checked_array(source, sample_rate, src, limits)
        mono = _Mono16k(rate=rate, channels=samples.shape[1], src=src, limits=limits)
        for start in range(0, len(samples), _READ_BLOCK_FRAMES):
            mono.add(_scaled(samples[start : start + _READ_BLOCK_FRAMES]))
        return mono.finish()
    if sample_rate is not None:
        raise TypeError("sample_rate is only for arrays; encoded audio states its own rate")
    if isinstance(source, (bytes, bytearray, memoryview)):
        src, data = "<bytes>", bytes(source)
        if not data:
            raise EmptyAudioError(f"{src}: empty input (0 bytes)")
        _check_size(len(data), src, limits)
        return _decode(io.BytesIO(data), src, limits)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(source, str(os.fspath(source)), limits)
    raise TypeError(f"cannot load audio from {type(source).__name__}")


def wav_bytes(audio: np.ndarray) -> bytes:
    """16 kHz mono float samples, shape (n,), as a 16-bit PCM WAV file in memory (for an audio player)."""
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _from_path(path: str | os.PathLike[str], src: str, limits: AudioLimits) -> np.ndarray:
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


def _checked_array(array: np.ndarray, sample_rate: object, src: str, limits: AudioLimits) -> tuple[np.ndarray, int]:
    """Validate raw samples and their rate; the samples shaped (frames, channels), unscaled."""
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
    if array.dtype in _UNSCALED_DTYPES:
        raise InvalidSamplesError(
            f"{src}: dtype {array.dtype} has no PCM full scale (a list of ints becomes int64); pass "
            "int16 or int32 PCM, e.g. np.asarray(samples, dtype=np.int16), or floats in [-1, 1]"
        )
    if array.ndim == 1:
        array = array[:, np.newaxis]
    elif array.ndim != 2:
        raise ChannelError(f"{src}: {array.ndim}-D array; expected (frames,) or (frames, channels)")
    frames, channels = array.shape
    if channels > MAX_CHANNELS and frames <= MAX_CHANNELS:
        raise ChannelError(
            f"{src}: shape {array.shape} looks like (channels, frames); transpose it (array.T) to (frames, channels)"
        )
    _check_channels(channels, src)
    _check_size(array.nbytes, src, limits)
    _check_duration(frames / rate, src, limits)
    return array, rate


def _scaled(samples: np.ndarray) -> np.ndarray:
    """Checked samples, shape (frames, channels), as float32 with integer PCM scaled to [-1, 1)."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float32)
    full_scale = 2.0 ** (np.iinfo(samples.dtype).bits - 1)
    # Unsigned PCM (8-bit WAV's convention) is centred on mid-scale, not on zero.
    offset = full_scale if samples.dtype.kind == "u" else 0.0
    return ((samples.astype(np.float32) - offset) / full_scale).astype(np.float32, copy=False)


def _decode(f: BinaryIO, src: str, limits: AudioLimits) -> np.ndarray:
    """Decode an encoded file with libsndfile, or failing that FFmpeg, to mono at SAMPLE_RATE."""
    head = f.read(16)
    f.seek(0)
    # libsndfile reads an Ogg stream cut short as a shorter, intact one, and skips damaged pages.
    if head.startswith(b"OggS"):
        _check_ogg_pages(f, src)
    decoded = _decode_soundfile(f, src, limits)
    if decoded is None:
        f.seek(0)
        decoded = _decode_pyav(f, src, limits)
    if decoded is not None:
        return decoded
    if _looks_like_audio(head):
        raise CorruptAudioError(f"{src}: truncated or corrupt: looks like audio, will not decode")
    raise UnsupportedFormatError(f"{src}: not audio: no decoder recognises this format")


def _decode_soundfile(f: BinaryIO, src: str, limits: AudioLimits) -> np.ndarray | None:
    """Decode with libsndfile (WAV, FLAC, OGG, MP3, AIFF, ...); None if it cannot open ``f``, or
    cannot tell its length."""
    wav_frames = _wav_declared_frames(f)
    f.seek(0)
    try:
        sound = sf.SoundFile(f)
    except sf.LibsndfileError:
        return None
    with sound:
        if sound.frames == _SF_UNKNOWN_FRAMES:
            # libsndfile fails at the end of such a stream; FFmpeg decodes it whole
            return None
        mono = _Mono16k(rate=sound.samplerate, channels=sound.channels, src=src, limits=limits)
        _check_duration(sound.frames / sound.samplerate, src, limits)
        # Block by block: a single read() allocates whatever length the header claims.
        try:
            while len(block := sound.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                mono.add(block)
        except sf.LibsndfileError as e:
            raise CorruptAudioError(f"{src}: truncated or corrupt {sound.format} data ({e})") from e
        # libsndfile trims a WAV's stated length to the bytes present, hiding truncation.
        declared = sound.frames if wav_frames is None else wav_frames
        _check_complete(mono.frames, declared, sound.samplerate, src, lossy=sound.format == "MP3")
        return mono.finish()


def _decode_pyav(f: BinaryIO, src: str, limits: AudioLimits) -> np.ndarray | None:
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
        # Planar float for every frame, whatever sample format the codec decodes to; the rate and
        # layout are the first frame's, which the stream's header may not state.
        resampler = av.AudioResampler(format="fltp")
        mono: _Mono16k | None = None
        try:
            for frame in itertools.chain(container.decode(stream), [None]):  # None flushes
                for out in resampler.resample(frame):
                    if mono is None:
                        channels = len(out.layout.channels)
                        mono = _Mono16k(rate=out.sample_rate, channels=channels, src=src, limits=limits)
                    mono.add(out.to_ndarray().T)
        except av.error.FFmpegError as e:
            codec = stream.codec_context.name
            raise CorruptAudioError(f"{src}: truncated or corrupt {codec} data ({e})") from e
    frames, rate = (0, stream.sample_rate) if mono is None else (mono.frames, mono.rate)
    if declared_s is not None:
        _check_complete(frames, round(declared_s * rate), rate, src, lossy=True)
    if mono is None:
        raise EmptyAudioError(f"{src}: contains no audio samples")
    return mono.finish()


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


def to_mono(samples: np.ndarray, *, sample_rate: int, limits: AudioLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Validate raw samples and mix them to mono float32 in [-1, 1], keeping their rate.

    For audio that arrives in pieces (a microphone, a socket), where each piece must be checked
    but resampling belongs to a stateful resampler that sees the pieces in order.

    Parameters
    ----------
    samples : np.ndarray, shape (frames,) or (frames, channels)
        Integer samples (8, 16 or 32 bits) are scaled by their dtype's full scale; 64-bit integers,
        which include lists of ints, are refused, having no full scale. Raw bytes (``bytes``,
        ``bytearray``, ``memoryview``) are refused too: their sample type is unknown.
    sample_rate : int
        Their rate in Hz.

    Returns
    -------
    np.ndarray, shape (frames,), dtype float32
    """
    src = "<array>"
    if isinstance(samples, (bytes, bytearray, memoryview)):
        raise InvalidSamplesError(
            f"{src}: {type(samples).__name__} is raw bytes, not samples; decode it first, e.g. "
            "np.frombuffer(chunk, dtype=np.int16) for 16-bit PCM"
        )
    checked, _ = _checked_array(np.asarray(samples), sample_rate, src, limits)
    return _validated_mono(_scaled(checked), src)


class _Mono16k:
    """Mixes decoded blocks to mono and resamples them to SAMPLE_RATE as they come, counting frames
    against the duration limit, so that decoding holds the 16 kHz mono result, not the source."""

    def __init__(self, *, rate: int, channels: int, src: str, limits: AudioLimits) -> None:
        _check_rate(rate, src)
        _check_channels(channels, src)
        self.rate, self.src, self.limits = rate, src, limits
        # source frames taken so far
        self.frames = 0
        self._max_frames = limits.max_duration_s * rate
        self._pending: list[np.ndarray] = []  # source blocks not yet mixed, shape (frames, channels)
        self._pending_frames = 0
        self._resampler = (
            None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )
        self._out: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        """Take float32 samples, shape (frames, channels); AudioTooLongError past the limit."""
        if self.frames + len(block) > self._max_frames:
            limit = self.limits.max_duration_s
            raise AudioTooLongError(f"{self.src}: longer than the limit of {limit:g} s; decoding stopped there")
        self.frames += len(block)
        self._pending.append(block)
        self._pending_frames += len(block)
        if self._pending_frames >= _READ_BLOCK_FRAMES:
            self._mix(last=False)

    def finish(self) -> np.ndarray:
        """The whole input, shape (n_samples,), float32 at SAMPLE_RATE within [-1, 1]."""
        if not self.frames:
            raise EmptyAudioError(f"{self.src}: contains no audio samples")
        self._mix(last=True)
        audio = np.concatenate(self._out)
        if not len(audio):
            raise EmptyAudioError(
                f"{self.src}: {self.frames} frame(s) at {self.rate} Hz is shorter than one sample at {SAMPLE_RATE} Hz"
            )
        # Clipping also absorbs the slight overshoot band-limited resampling adds near full scale.
        return np.clip(audio, -1.0, 1.0, out=audio)

    def _mix(self, *, last: bool) -> None:
        # nothing may be pending at the end: the input filled its last block exactly
        block = np.concatenate(self._pending) if self._pending else np.zeros((0, 1), np.float32)
        self._pending, self._pending_frames = [], 0
        mono = _validated_mono(block, self.src) if len(block) else np.zeros(0, np.float32)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
        self._out.append(np.asarray(mono, dtype=np.float32))


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
        raise SampleRateError(f"{src}: sample rate {rate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz")


def _check_channels(channels: int, src: str) -> None:
    if channels == 0:
        raise ChannelError(f"{src}: has 0 channels")
    if channels > MAX_CHANNELS:
        raise ChannelError(f"{src}: has {channels} channels; at most {MAX_CHANNELS} are supported")


def _check_complete(got: int, declared: int, rate: int, src: str, *, lossy: bool) -> None:
    slack = max(_LOSSY_SLACK_S * rate, _LOSSY_SLACK_FRACTION * declared) if lossy else 0
    if declared - got > slack:
        raise CorruptAudioError(f"{src}: truncated or corrupt: header declares {declared} frames, only {got} decoded")


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


def _check_ogg_pages(f: BinaryIO, src: str) -> None:
    """Raise CorruptAudioError unless every Ogg page is whole, in sequence and passes its checksum,
    and the last one ends its stream."""
    offset, flags, cut = 0, 0, False
    next_sequence: dict[int, int] = {}  # per logical stream (serial number)
    while header := f.read(_OGG_HEADER_BYTES):
        if not (header.startswith(b"OggS") or b"OggS".startswith(header)):
            raise CorruptAudioError(f"{src}: corrupt: no Ogg page at byte {offset}")
        lacing = f.read(header[-1]) if len(header) == _OGG_HEADER_BYTES else b""
        body = f.read(sum(lacing))
        if len(header) < _OGG_HEADER_BYTES or len(lacing) < header[-1] or len(body) < sum(lacing):
            cut = True  # the file ends inside this page
            break
        page = header[:_OGG_CRC_AT] + bytes(4) + header[_OGG_CRC_AT + 4 :] + lacing + body
        if _ogg_crc(page) != int.from_bytes(header[_OGG_CRC_AT : _OGG_CRC_AT + 4], "little"):
            raise CorruptAudioError(f"{src}: corrupt: the Ogg page at byte {offset} fails its checksum")
        flags = header[5]
        serial, sequence = int.from_bytes(header[14:18], "little"), int.from_bytes(header[18:22], "little")
        expected = next_sequence.get(serial)
        if not flags & _OGG_FIRST_PAGE and expected is not None and sequence != expected:
            raise CorruptAudioError(
                f"{src}: corrupt: Ogg page {sequence} at byte {offset} follows page {expected - 1}; "
                "pages are missing or out of order"
            )
        next_sequence[serial] = sequence + 1
        offset += len(page)
    f.seek(0)
    if cut or not flags & _OGG_LAST_PAGE:
        raise CorruptAudioError(f"{src}: truncated or corrupt: Ogg stream's final page is missing")


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (unreflected, initial value 0) by zlib's reflected one on the bits reversed."""
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


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

"""Speed of the foundation's pieces, side by side in one run, as ratios to real time.

    .venv/bin/python benchmarks/bench_foundation.py [--clip ../shared/data/speech/fixtures/wav/jfk.flac]

Prints one table: decoding each audio format, log-mel features offline and streamed in 100 ms chunks,
and the default model transcribing one clip, a batch of clips, and through a BufferedStream. "x RT"
is seconds of audio processed per second of wall time (higher is faster); the stream ratio is
streamed time over offline time for the same audio.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from asrkit.audio import SAMPLE_RATE, load_audio
from asrkit.features import StreamingFeatureExtractor, log_mel
from asrkit.models import load_model

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared/data/speech/fixtures/wav/jfk.flac"
CHUNK = SAMPLE_RATE // 10


def best_of(fn, repeats: int = 5) -> float:
    """Fastest of several runs: the least disturbed by whatever else the machine is doing."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def encode(audio: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt in ("WAV", "FLAC", "OGG"):
        sf.write(buffer, audio, SAMPLE_RATE, format=fmt)
        return buffer.getvalue()
    container, codec = {"MP3": ("mp3", "libmp3lame"), "M4A": ("ipod", "aac"), "WEBM": ("webm", "libopus")}[fmt]
    rate = 48000 if codec == "libopus" else SAMPLE_RATE
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(audio[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(piece))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    args = parser.parse_args()
    audio = load_audio(args.clip)
    seconds = len(audio) / SAMPLE_RATE
    rows: list[tuple[str, float, str]] = []

    for fmt in ("WAV", "FLAC", "OGG", "MP3", "M4A", "WEBM"):
        data = encode(audio, fmt)
        t = best_of(lambda: load_audio(data))
        rows.append((f"load_audio {fmt} ({len(data) // 1024} KiB)", seconds / t, ""))

    offline = best_of(lambda: log_mel(audio))

    def streamed() -> None:
        extractor = StreamingFeatureExtractor()
        for start in range(0, len(audio), CHUNK):
            extractor.accept_waveform(audio[start : start + CHUNK])

    rows.append(("log-mel offline", seconds / offline, ""))

    model = load_model()
    model.transcribe(audio)  # trace the inference function once
    single = best_of(lambda: model.transcribe(audio), repeats=3)
    batch = best_of(lambda: model.transcribe_batch([audio] * 8), repeats=3)

    def stream_it() -> None:
        stream = model.create_stream()
        for start in range(0, len(audio), CHUNK):
            stream.accept_waveform(SAMPLE_RATE, audio[start : start + CHUNK])
            if start % SAMPLE_RATE == 0:
                stream.result()  # a UI refreshing once a second
        stream.finish()

    streaming = best_of(stream_it, repeats=3)
    streamed_s = best_of(streamed)
    rows.append(("log-mel streamed, 100 ms chunks", seconds / streamed_s, f"{streamed_s / offline:.2f}x offline"))
    rows.append((f"{model.name}: transcribe one clip", seconds / single, ""))
    rows.append((f"{model.name}: transcribe_batch of 8", 8 * seconds / batch, f"{8 * single / batch:.2f}x one by one"))
    rows.append(
        (
            f"{model.name}: BufferedStream, result() each second",
            seconds / streaming,
            f"{streaming / single:.2f}x offline",
        )
    )

    print(f"clip: {args.clip} ({seconds:.2f} s)")
    print(f"{'what':<55} {'x RT':>9}  note")
    for what, speed, note in rows:
        print(f"{what:<55} {speed:>9.1f}  {note}")


if __name__ == "__main__":
    main()

"""Keras vs LiteRT vs PocketSphinx on the same clips, side by side in one run.

    .venv/bin/python benchmarks/bench_backends.py [--manifest ../shared/data/splits/fixtures_dev.tsv]

Each backend runs in a fresh process on one thread, so its start-up (imports and loading) and peak
memory are its own. The Keras model is the first trained Keras CTC model in the registry, or else an
untrained network of CTCModelConfig()'s size (its speed and memory are real, its words are not); the
LiteRT model is that model exported with `asrkit export`. Prints one table: start-up seconds, peak RSS,
offline RTF (batch transcription), streaming RTF (100 ms chunks as fast as the model goes), WER, and
whether TensorFlow was imported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "shared/data/splits/fixtures_dev.tsv"
CHUNK_S = 0.1


def keras_model_dir(tmp: Path) -> tuple[Path, str]:
    """A Keras CTC model folder to measure, and how to describe it."""
    from asrkit.models import available_models

    trained = [e for e in available_models() if e.card.config.get("backend") == "keras-ctc" and e.card.trained]
    if trained:
        return trained[0].path, f"{trained[0].name} (trained)"
    import numpy as np

    from asrkit.contracts import ModelCard
    from asrkit.models.ctc import CTCModelConfig
    from asrkit.models.keras_ctc import KerasCTCModel, build_network

    config = CTCModelConfig()
    n = config.features.num_features
    network = build_network(config, feature_mean=np.full(n, -5.0), feature_std=np.full(n, 3.0))
    card = ModelCard(name="ctc-untrained", description="", trained=False, config=config.to_dict())
    KerasCTCModel(network, card).save(tmp / "ctc-untrained")
    return tmp / "ctc-untrained", f"UNTRAINED {network.count_params() / 1e6:.1f}M-param CTCModelConfig() net"


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not getrusage: Linux carries its maximum over from the
    parent that forked this process, while /proc's high-water mark starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(folder: str, manifest: str) -> dict:
    """Measure one model folder; runs in its own process."""
    began = time.perf_counter()
    from asrkit.models import load_model

    model = load_model(folder)
    from asrkit.audio import SAMPLE_RATE, load_audio
    from asrkit.manifest import read_manifest
    from asrkit.metrics import score_corpus

    utterances = read_manifest(manifest)
    audios = [load_audio(u.audio_path) for u in utterances]
    model.transcribe(audios[0][:SAMPLE_RATE])  # the first call compiles or warms up
    startup = time.perf_counter() - began
    audio_s = sum(len(a) for a in audios) / SAMPLE_RATE
    start = time.perf_counter()
    texts = [t.text for t in model.transcribe_batch(audios)]
    offline = time.perf_counter() - start
    size = round(CHUNK_S * SAMPLE_RATE)
    start = time.perf_counter()
    stream = model.create_stream()
    for audio in audios:
        for begin in range(0, len(audio), size):
            stream.accept_waveform(SAMPLE_RATE, audio[begin : begin + size])
            stream.result()
        stream.finish()
        stream.reset()
    streaming = time.perf_counter() - start
    return {
        "startup_s": startup,
        "rss_mb": peak_rss_mb(),
        "offline_rtf": offline / audio_s,
        "stream_rtf": streaming / audio_s,
        "wer": score_corpus([u.transcript for u in utterances], texts).wer,
        "audio_s": audio_s,
        "tensorflow": "tensorflow" in sys.modules,
        "clips": len(audios),
    }


def measure(folder: Path, manifest: Path) -> dict:
    # one thread for every runtime: TensorFlow, LiteRT (asrkit's THREADS) and the BLAS under NumPy
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", str(folder), "--manifest", str(manifest)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, str(args.manifest))))
        return
    from asrkit.models import load_model, resolve_model
    from asrkit.models.litert_ctc import export

    with tempfile.TemporaryDirectory() as tmp:
        keras_dir, described = keras_model_dir(Path(tmp))
        lite_dir = export(load_model(keras_dir), Path(tmp) / "litert")
        rows = [
            (f"Keras CTC: {described}", measure(keras_dir, args.manifest)),
            ("LiteRT export of the same model", measure(lite_dir, args.manifest)),
            ("pocketsphinx", measure(resolve_model("pocketsphinx"), args.manifest)),
        ]
    first = rows[0][1]
    print(
        f"{first['clips']} clips, {first['audio_s']:.1f} s of audio from {args.manifest.name}; one thread per process; "
        f"streams fed {CHUNK_S * 1000:.0f} ms chunks as fast as the model goes"
    )
    print(
        f"{'backend':<58} {'start s':>8} {'RSS MB':>7} {'offline RTF':>12} {'stream RTF':>11} {'WER %':>7} "
        f"{'TF loaded':>10}"
    )
    for name, r in rows:
        print(
            f"{name:<58} {r['startup_s']:>8.2f} {r['rss_mb']:>7.0f} {r['offline_rtf']:>12.4f} {r['stream_rtf']:>11.4f} "
            f"{100 * r['wer']:>7.2f} {'yes' if r['tensorflow'] else 'no':>10}"
        )
    keras, lite = rows[0][1], rows[1][1]
    print(
        f"LiteRT vs Keras: offline {keras['offline_rtf'] / lite['offline_rtf']:.1f}x faster, streaming "
        f"{keras['stream_rtf'] / lite['stream_rtf']:.1f}x faster, "
        f"{keras['rss_mb'] - lite['rss_mb']:.0f} MB less memory, "
        f"start-up {keras['startup_s'] - lite['startup_s']:.1f} s shorter"
    )


if __name__ == "__main__":
    main()

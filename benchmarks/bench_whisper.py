"""Whisper runtimes side by side in one run: asrkit's Keras/TensorFlow network, its LiteRT export,
faster-whisper (CTranslate2) in float32 and int8, and PocketSphinx for scale.

    .venv/bin/python benchmarks/bench_whisper.py --data ../shared/data [--threads 1 2] [--litert FOLDER]

Each runtime runs in a fresh process, so its start-up (imports, loading, the first call's compilation)
and peak memory are its own. Every Whisper runtime decodes the same way (faster-whisper's defaults:
beam 5, timestamps, temperature fallback). Sets: all of fixtures_dev and the first 50 of kathleen_dev.
Prints start-up seconds, peak RSS, offline RTF per set and WER per set, then the time ratios the
targets are stated in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_backends import peak_rss_mb

SETS = (("fixtures_dev", None), ("kathleen_dev", 50))


def load_runtime(kind: str, folder: str, threads: int):
    """A callable from a list of 16 kHz clips to their texts, for one runtime."""
    if kind.startswith("faster-whisper"):
        from faster_whisper import WhisperModel

        compute = kind.rsplit("-", 1)[1]
        fw = WhisperModel(folder, device="cpu", compute_type=compute, cpu_threads=threads)

        def run(audios):
            return ["".join(s.text for s in fw.transcribe(a, vad_filter=False)[0]) for a in audios]

        return run
    from asrkit.models import load_model

    model = load_model(folder)
    return lambda audios: [t.text for t in model.transcribe_batch(audios)]


def worker(kind: str, folder: str, data: Path, threads: int) -> dict:
    began = time.perf_counter()
    run = load_runtime(kind, folder, threads)
    from asrkit.audio import SAMPLE_RATE, load_audio
    from asrkit.manifest import read_manifest
    from asrkit.metrics import score_corpus

    run([load_audio(read_manifest(data / "splits" / "fixtures_dev.tsv")[0].audio_path)])  # compile, warm up
    result = {"startup_s": time.perf_counter() - began, "tensorflow": "tensorflow" in sys.modules}
    for name, limit in SETS:
        utterances = read_manifest(data / "splits" / f"{name}.tsv")[:limit]
        audios = [load_audio(u.audio_path) for u in utterances]
        start = time.perf_counter()
        texts = run(audios)
        seconds = time.perf_counter() - start
        audio_s = sum(len(a) for a in audios) / SAMPLE_RATE
        result[name] = {
            "rtf": seconds / audio_s,
            "seconds": seconds,
            "audio_s": audio_s,
            "wer": score_corpus([u.transcript for u in utterances], texts).wer,
        }
    result["rss_mb"] = peak_rss_mb()
    return result


def measure(kind: str, folder: Path, data: Path, threads: int) -> dict:
    n = str(threads)
    env = {
        **os.environ,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": n,
        "ASR_THREADS": n,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(folder), "--data", str(data), "--threads", n],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (holds splits/)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--litert", type=Path, help="a LiteRT export of the default model to measure too")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.data, args.threads[0])))
        return
    from asrkit.contracts import ModelCard
    from asrkit.models import resolve_model
    from asrkit.models.whisper.model import weights_folder

    keras_dir = resolve_model("whisper-tiny.en")
    weights = weights_folder(ModelCard.load(keras_dir), keras_dir)
    runtimes = [("Keras/TF Whisper (asrkit)", "asrkit", keras_dir)]
    if args.litert:
        runtimes.append(("LiteRT Whisper (asrkit)", "asrkit", args.litert))
    runtimes += [
        ("faster-whisper float32", "faster-whisper-float32", weights),
        ("faster-whisper int8", "faster-whisper-int8", weights),
        ("pocketsphinx", "asrkit", resolve_model("pocketsphinx")),
    ]
    rows = [
        (label, threads, measure(kind, folder, args.data, threads))
        for threads in args.threads
        for label, kind, folder in runtimes
    ]
    sets = " and ".join(f"{name}{f'[:{limit}]' if limit else ''}" for name, limit in SETS)
    print(f"offline transcription of {sets}; each runtime in its own process; Whisper: beam 5 with fallback")
    header = f"{'runtime':<28} {'thr':>3} {'start s':>8} {'RSS MB':>7}"
    for name, _ in SETS:
        header += f" {name + ' RTF':>17} {'WER %':>6}"
    print(header + f" {'TF loaded':>9}")
    for label, threads, r in rows:
        line = f"{label:<28} {threads:>3} {r['startup_s']:>8.2f} {r['rss_mb']:>7.0f}"
        for name, _ in SETS:
            line += f" {r[name]['rtf']:>17.3f} {100 * r[name]['wer']:>6.2f}"
        print(line + f" {'yes' if r['tensorflow'] else 'no':>9}")
    for threads in args.threads:
        by = {label: r for label, t, r in rows if t == threads}

        def seconds(label):
            return sum(by[label][name]["seconds"] for name, _ in SETS)

        keras = seconds("Keras/TF Whisper (asrkit)") / seconds("faster-whisper float32")
        line = f"{threads} thread(s): Keras/TF takes {keras:.2f}x faster-whisper float32's time"
        if args.litert:
            lite = seconds("LiteRT Whisper (asrkit)") / seconds("faster-whisper int8")
            line += f"; LiteRT takes {lite:.2f}x faster-whisper int8's"
        print(line)


if __name__ == "__main__":
    main()

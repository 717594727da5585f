"""Live transcription, side by side: PocketSphinx's own streaming decoder and our Keras CTC model.

    .venv/bin/python benchmarks/bench_streaming.py [--per-set 15] [--chunk-ms 100] [--long-s 600] [--session-s 3600]

Each model and thread count runs in a fresh process (so peak RSS is its own) over the same subset of
the shared dev sets: all of fixtures_dev and the first ``--per-set`` utterances of kathleen_dev and
fsdd_dev, streamed in ``--chunk-ms`` chunks as fast as the model goes. Per-word latency is from the
word's end to when a live listener would have seen it (audio time plus processing lag). The Keras
model is the trained one in models/ if there is one, else an untrained network of CTCModelConfig()'s
size: its speed and memory are real, its words are not. The last column streams one long utterance
(no endpoints) to show whether the cost per audio second stays flat as the utterance grows; the
Keras model also streams an hour-long session (speech with pauses, split at endpoints) and reports
how much its RSS grew after the first five minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
SETS = ("fixtures_dev", "kathleen_dev", "fsdd_dev")


def load_subset(per_set: int):
    from asrkit.audio import load_audio
    from asrkit.manifest import read_manifest

    clips = []
    for name in SETS:
        rows = read_manifest(SHARED / f"splits/{name}.tsv")
        for u in rows if name == "fixtures_dev" else rows[:per_set]:
            clips.append((load_audio(u.audio_path), u.transcript))
    return clips


def load(kind: str):
    from asrkit.models import available_models, load_model

    if kind == "pocketsphinx":
        return load_model("pocketsphinx"), "pocketsphinx (default model)"
    trained = [e for e in available_models() if e.card.config.get("backend") == "keras-ctc" and e.card.trained]
    if trained:
        return load_model(trained[0].path), f"{trained[0].name} (trained)"
    import numpy as np

    from asrkit.models.base import ModelCard
    from asrkit.models.ctc import CTCModelConfig
    from asrkit.models.keras_ctc import KerasCTCModel, build_network

    config = CTCModelConfig()
    n = config.features.num_features
    network = build_network(config, feature_mean=np.full(n, -5.0), feature_std=np.full(n, 3.0))
    card = ModelCard(name="ctc-untrained", description="", trained=False, config=config.to_dict())
    params = network.count_params() / 1e6
    return KerasCTCModel(network, card), f"Keras CTC, UNTRAINED {params:.1f}M-param CTCModelConfig() net"


def worker(
    kind: str, threads: int, per_set: int, chunk_ms: float, long_s: float, offline: bool, session_s: float
) -> dict:
    """Measure one model at one thread count; runs in its own process."""
    if kind == "keras":  # PocketSphinx is single-threaded, and should not pay for TensorFlow's memory
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
    import numpy as np

    from asrkit.metrics import score_corpus
    from asrkit.stream_metrics import measure, percentile, stream_audio
    from asrkit.streaming import EndpointRule

    model, label = load(kind)
    clips = load_subset(per_set)
    audio_s = sum(len(a) for a, _ in clips) / 16000
    stream = model.create_stream()  # one stream for the whole run, as one live user would have
    stream_audio(stream, clips[0][0], chunk_s=chunk_ms / 1000)  # warm-up: tracing, first allocations
    streamed, shown, committed = [], [], []
    compute = revisions = words = 0.0
    for audio, _ in clips:
        before = getattr(stream, "revisions", 0)
        session = stream_audio(stream, audio, chunk_s=chunk_ms / 1000)
        m = measure(session, revisions=getattr(stream, "revisions", 0) - before)
        streamed.append(session.result().committed)
        shown += m.shown_latency_s
        committed += m.commit_latency_s
        compute += m.compute_s
        revisions += m.revisions
        words += m.n_words
    refs = [t for _, t in clips]
    out = {
        "label": label, "threads": threads, "clips": len(clips), "audio_s": audio_s, "rtf": compute / audio_s,
        "shown_p50": percentile(shown, 50), "shown_p90": percentile(shown, 90),
        "commit_p50": percentile(committed, 50), "commit_p90": percentile(committed, 90),
        "flicker": revisions / max(words, 1), "streamed_wer": score_corpus(refs, streamed).wer,
    }
    if offline:
        start = time.perf_counter()
        texts = [t.text for t in model.transcribe_batch([a for a, _ in clips])]
        out["batch_x_rt"] = audio_s / (time.perf_counter() - start)
        out["offline_wer"] = score_corpus(refs, texts).wer
        out["streamed_vs_offline_wer"] = score_corpus(texts, streamed).wer
    if long_s:
        # one utterance that never ends: cost per audio second early on and at the end
        speech = np.concatenate([a for a, _ in clips])
        audio = np.tile(speech, int(np.ceil(long_s * 16000 / len(speech))))[: int(long_s * 16000)]
        never = EndpointRule(trailing_silence_s=1e9, silence_without_speech_s=1e9, max_utterance_s=1e9)
        long_stream = model.create_stream(endpoint=never)
        size = int(chunk_ms * 16)
        per_chunk = []
        for begin in range(0, len(audio), size):
            start = time.perf_counter()
            long_stream.accept_waveform(16000, audio[begin : begin + size])
            long_stream.result()
            per_chunk.append(time.perf_counter() - start)
        long_stream.finish()
        ten_s = int(10_000 / chunk_ms)
        out["long_s"] = long_s
        out["first_10s_rtf"] = sum(per_chunk[:ten_s]) / 10
        out["last_10s_rtf"] = sum(per_chunk[-ten_s:]) / 10
    if session_s:
        # a long live session: speech with pauses, split into utterances at endpoints
        from asrkit.streaming import Session

        pause = np.zeros(int(1.5 * 16000), np.float32)
        speech = np.concatenate([piece for a, _ in clips for piece in (a, pause)])
        session = Session(model.create_stream())
        size, fed, rss = int(chunk_ms * 16), 0, {}
        while fed < session_s * 16000:
            begin = fed % (len(speech) - size)
            session.accept_waveform(16000, speech[begin : begin + size])
            fed += size
            if fed % (300 * 16000) < size:
                rss[fed // 16000] = current_rss_mb()
        session.finish()
        out["session_s"] = session_s
        out["session_rss_growth_mb"] = rss[max(rss)] - rss[min(rss)]
        out["session_utterances"] = len(session.texts)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=15, help="utterances of kathleen_dev and of fsdd_dev")
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--long-s", type=float, default=600.0, help="length of the one-utterance cost test")
    parser.add_argument("--session-s", type=float, default=3600.0, help="length of the Keras model's memory test")
    parser.add_argument("--worker", choices=("pocketsphinx", "keras"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--offline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, args.threads, args.per_set, args.chunk_ms, args.long_s, args.offline, args.session_s)
        print(json.dumps(result))
        return
    rows = []
    for kind in ("pocketsphinx", "keras"):
        for threads in (1, 2):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3"}
            cmd = [sys.executable, __file__, "--worker", kind, "--threads", str(threads), "--per-set", str(args.per_set),
                   "--chunk-ms", str(args.chunk_ms)]
            # the offline and long-utterance figures do not depend on the thread count: once per model
            if threads == 1:
                cmd += ["--offline", "--long-s", str(args.long_s if kind == "keras" else 60)]
                cmd += ["--session-s", str(args.session_s if kind == "keras" else 0)]
            else:
                cmd += ["--long-s", "0", "--session-s", "0"]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = rows[0]
    print(f"subset: all of fixtures_dev + first {args.per_set} of kathleen_dev and fsdd_dev: {first['clips']} clips, "
          f"{first['audio_s']:.1f} s; {args.chunk_ms:g} ms chunks fed as fast as the model goes; "
          f"latencies in seconds after the word's end")
    header = (f"{'model':<48} {'thr':>3} {'RTF':>6} {'shown p50/p90':>13} {'commit p50/p90':>14} {'flicker':>7} "
              f"{'WER str/off':>11} {'str~off':>7} {'batch xRT':>9} {'RSS MB':>6}  long utterance RTF")
    print(header)
    for r in rows:
        offline = ("offline_wer" in r)
        print(
            f"{r['label']:<48} {r['threads']:>3} {r['rtf']:>6.3f} {r['shown_p50']:>6.2f}/{r['shown_p90']:<6.2f} "
            f"{r['commit_p50']:>7.2f}/{r['commit_p90']:<6.2f} {r['flicker']:>7.2f} "
            + (f"{r['streamed_wer']:>5.2f}/{r['offline_wer']:<5.2f} {r['streamed_vs_offline_wer']:>7.2f} "
               f"{r['batch_x_rt']:>9.1f}" if offline else f"{r['streamed_wer']:>5.2f}/{'':<5} {'':>7} {'':>9}")
            + f" {r['peak_rss_mb']:>6.0f}"
            + (f"  {r['long_s']:g} s: first 10 s {r['first_10s_rtf']:.3f}, last 10 s {r['last_10s_rtf']:.3f}" if "first_10s_rtf" in r else "")
        )
    for r in rows:
        if "session_s" in r:
            print(f"{r['label']}: a {r['session_s'] / 3600:g} h session ({r['session_utterances']} utterances) "
                  f"grew RSS by {r['session_rss_growth_mb']:.1f} MB after its first 5 minutes")
    ps, ctc = rows[0], rows[2]
    print(f"Keras CTC streaming is {ps['rtf'] / ctc['rtf']:.1f}x faster than PocketSphinx streaming (1 thread)")


if __name__ == "__main__":
    main()

"""Live transcription, side by side: Whisper (the default), our Keras CTC model and PocketSphinx.

    .venv/bin/python benchmarks/bench_streaming.py [--per-set 20] [--chunk-ms 100] [--realtime]
        [--session-s 3600] [--models whisper,ctc,pocketsphinx]
    .venv/bin/python benchmarks/bench_streaming.py --windows

Each model runs in a fresh process on one thread (so peak RSS is its own) over the same clips: all
of fixtures_dev and the first ``--per-set`` utterances of kathleen_dev, one stream for the whole run
as one live user would have. The clips are streamed in ``--chunk-ms`` chunks as fast as the model
goes, and with ``--realtime`` also paced at the speed of speech through a
:class:`~asrkit.stream_worker.StreamWorker` (a model slower than real time then loses audio, counted).
Per-word latency runs from the word's end to when a live listener would have seen it as it ends up
(shown) and committed. Flicker is shown partial words later changed per final word. The offline
WER is the same model's batch transcript; "str~off" is the streamed text's WER against it.

``--session-s`` streams a long session (the clips with 1.5-s pauses, looped, split at endpoints)
and reports RSS growth after its first 5 minutes, and RTF and commit latency in its first and last
10 minutes. The Keras CTC model is the trained one in models/ if there is one, else an untrained
network of CTCModelConfig()'s size (its speed and memory are real, its words are not).

``--windows`` measures what the live Whisper stream's encoder windows cost and how well each decodes:
every clip decoded greedily once, zero-padded to a window of its length plus some seconds of
silence, for several paddings and shortest windows (the choice behind StreamingOptions).
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
MODELS = ("whisper", "ctc", "pocketsphinx")
# minutes of a long session whose RTF and latency are compared, at its start and at its end
EDGE_S = 600.0


def load_clips(per_set: int):
    from asrkit.audio import load_audio
    from asrkit.manifest import read_manifest

    rows = (
        read_manifest(SHARED / "splits/fixtures_dev.tsv") + read_manifest(SHARED / "splits/kathleen_dev.tsv")[:per_set]
    )
    return [(load_audio(u.audio_path), u.transcript) for u in rows]


def load(kind: str):
    from asrkit.models import DEFAULT_MODEL, available_models, load_model

    if kind == "whisper":
        return load_model(DEFAULT_MODEL), f"{DEFAULT_MODEL} (default model)"
    if kind == "pocketsphinx":
        return load_model("pocketsphinx"), "pocketsphinx"
    trained = [e for e in available_models() if e.card.config.get("backend") == "keras-ctc" and e.card.trained]
    if trained:
        return load_model(trained[0].path), f"{trained[0].name} (Keras CTC)"
    import numpy as np

    from asrkit.contracts import ModelCard
    from asrkit.models.ctc import CTCModelConfig
    from asrkit.models.keras_ctc import KerasCTCModel, build_network

    config = CTCModelConfig()
    n = config.features.num_features
    network = build_network(config, feature_mean=np.full(n, -5.0), feature_std=np.full(n, 3.0))
    card = ModelCard(name="ctc-untrained", description="", trained=False, config=config.to_dict())
    return KerasCTCModel(network, card), "Keras CTC, UNTRAINED"


def one_thread() -> None:
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def run_clips(model, clips, *, chunk_s: float, realtime: bool) -> dict:
    from asrkit.metrics import score_corpus
    from asrkit.stream_metrics import measure, percentile, stream_audio

    stream = model.create_stream()
    streamed, shown, committed = [], [], []
    compute = audio = revisions = words = skipped = 0.0
    for clip, _ in clips:
        before = getattr(stream, "revisions", 0)
        session = stream_audio(stream, clip, chunk_s=chunk_s, realtime=realtime)
        m = measure(session, revisions=getattr(stream, "revisions", 0) - before)
        streamed.append(session.result().committed)
        shown += m.shown_latency_s
        committed += m.commit_latency_s
        compute += m.compute_s
        audio += m.audio_s
        revisions += m.revisions
        words += m.n_words
        skipped += session.skipped_s
    return {
        "rtf": compute / audio,
        "shown_p50": percentile(shown, 50),
        "shown_p90": percentile(shown, 90),
        "commit_p50": percentile(committed, 50),
        "commit_p90": percentile(committed, 90),
        "flicker": revisions / max(words, 1),
        "skipped_s": skipped,
        "streamed_wer": score_corpus([t for _, t in clips], streamed).wer,
        "streamed": streamed,
    }


def long_session(model, clips, *, seconds: float, chunk_s: float) -> dict:
    """A session of ``seconds`` of the clips with pauses: RSS growth, and RTF and commit latency at both ends."""
    import numpy as np

    from asrkit.stream_metrics import percentile, word_latencies
    from asrkit.streaming import Session

    pause = np.zeros(int(1.5 * 16000), np.float32)
    speech = np.concatenate([piece for a, _ in clips for piece in (a, pause)])
    session = Session(model.create_stream(), record=True)
    size, fed, rss = int(chunk_s * 16000), 0, {}
    measured_words = 0
    edges = {"first": ([], 0.0, 0.0), "last": ([], 0.0, 0.0)}
    total = int(seconds * 16000)
    while fed < total:
        begin = fed % (len(speech) - size)
        edge = "first" if fed < EDGE_S * 16000 else "last" if fed >= total - EDGE_S * 16000 else None
        compute = session.compute_s
        session.accept_waveform(16000, speech[begin : begin + size])
        fed += size
        if edge:
            latencies, spent, heard = edges[edge]
            edges[edge] = (latencies, spent + session.compute_s - compute, heard + size / 16000)
        if len(session.words) > measured_words:
            # words of finished utterances: their latencies, then forget the emissions that made them,
            # so that the log does not grow with the session
            _, latencies = word_latencies(session.emissions, session.words[measured_words:])
            if edge:
                edges[edge][0].extend(latencies)
            measured_words = len(session.words)
            session.emissions.clear()
        if fed % (300 * 16000) < size:
            rss[fed // 16000] = current_rss_mb()
    session.finish()
    out = {
        "session_s": seconds,
        "session_utterances": len(session.texts),
        "session_rss_growth_mb": rss[max(rss)] - rss[min(rss)],
    }
    for edge, (latencies, spent, heard) in edges.items():
        out[f"{edge}_rtf"] = spent / max(heard, 1e-9)
        out[f"{edge}_commit_p50"] = percentile(latencies, 50)
    return out


def worker(kind: str, args) -> dict:
    if kind != "pocketsphinx":  # PocketSphinx is single-threaded, and should not pay for TensorFlow
        one_thread()
    from asrkit.metrics import score_corpus

    model, label = load(kind)
    clips = load_clips(args.per_set)
    audio_s = sum(len(a) for a, _ in clips) / 16000
    out = {"label": label, "clips": len(clips), "audio_s": audio_s}
    fast = run_clips(model, clips, chunk_s=args.chunk_ms / 1000, realtime=False)
    texts = [t.text for t in model.transcribe_batch([a for a, _ in clips])]
    out["fast"] = {k: v for k, v in fast.items() if k != "streamed"}
    out["offline_wer"] = score_corpus([t for _, t in clips], texts).wer
    out["streamed_vs_offline_wer"] = score_corpus(texts, fast["streamed"]).wer
    if args.realtime:
        realtime = run_clips(model, clips, chunk_s=args.chunk_ms / 1000, realtime=True)
        out["realtime"] = {k: v for k, v in realtime.items() if k != "streamed"}
    if args.session_s:
        out.update(long_session(model, clips, seconds=args.session_s, chunk_s=args.chunk_ms / 1000))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def windows(args) -> None:
    """WER and cost of greedy Whisper decoding per encoder window rule (one thread)."""
    one_thread()
    from asrkit.metrics import score_corpus
    from asrkit.models import DEFAULT_MODEL, load_model
    from asrkit.models.whisper.streaming import StreamingOptions, WhisperStreamRecognizer

    model = load_model(DEFAULT_MODEL)
    clips = load_clips(args.per_set)
    print(
        f"{len(clips)} clips, {sum(len(a) for a, _ in clips) / 16000:.1f} s; greedy, one pass per clip in a window "
        f"of at least 'shortest' seconds holding the clip and 'padding' seconds of silence (from 10, 15, 20, 30 s)"
    )
    print(f"{'shortest':>8} {'padding':>7} {'WER %':>6} {'loops':>5} {'to 30 s':>7} {'encoder+decoder s':>17}")
    for shortest, padding in ((30, 0), (10, 8), (10, 6), (10, 4), (10, 2), (5, 8), (0, 4), (0, 8)):
        lengths = tuple(x for x in (5.0, 10.0, 15.0, 20.0, 30.0) if x >= shortest)
        options = StreamingOptions(window_lengths_s=lengths, min_padding_s=padding)
        hyps, spent, fallbacks, loops = [], 0.0, 0, 0
        for audio, reference in clips:
            recognizer = WhisperStreamRecognizer(model, options)
            start = time.perf_counter()
            recognizer.accept_waveform(audio)
            hypothesis = " ".join(w.text for w in recognizer.finish())
            spent += time.perf_counter() - start
            fallbacks += recognizer.status.fallbacks
            # a transcript over twice the reference's length repeats itself even in the 30-s window
            loops += len(hypothesis.split()) > 2 * len(reference.split()) + 4
            hyps.append(hypothesis)
        wer = score_corpus([t for _, t in clips], hyps).wer
        print(f"{shortest:>8g} {padding:>7g} {100 * wer:>6.2f} {loops:>5d} {fallbacks:>7d} {spent:>17.1f}")


def current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def row(label: str, r: dict, mode: dict, offline: dict | None) -> str:
    text = (
        f"{label:<38} {mode['rtf']:>6.3f} {mode['shown_p50']:>6.2f}/{mode['shown_p90']:<5.2f} "
        f"{mode['commit_p50']:>6.2f}/{mode['commit_p90']:<5.2f} {mode['flicker']:>7.2f} "
        f"{100 * mode['streamed_wer']:>6.2f}"
    )
    if offline is not None:
        text += f" {100 * offline['offline_wer']:>6.2f} {100 * offline['streamed_vs_offline_wer']:>7.2f}"
    else:
        text += f" {'':>6} {'':>7}"
    return text + f" {mode['skipped_s']:>7.1f} {r['peak_rss_mb']:>6.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=20, help="utterances of kathleen_dev")
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--realtime", action="store_true", help="also stream paced at the speed of speech")
    parser.add_argument("--session-s", type=float, default=0.0, help="length of the long-session test (0: none)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--windows", action="store_true", help="WER and cost per Whisper encoder window rule")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.windows:
        windows(args)
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    rows = []
    for kind in args.models.split(","):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--per-set",
            str(args.per_set),
            "--chunk-ms",
            str(args.chunk_ms),
            "--session-s",
            str(args.session_s),
        ]
        cmd += ["--realtime"] if args.realtime else []
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = rows[0]
    print(
        f"clips: all of fixtures_dev + first {args.per_set} of kathleen_dev: {first['clips']} clips, "
        f"{first['audio_s']:.1f} s; {args.chunk_ms:g} ms chunks; one thread; latencies in seconds after the word's end"
    )
    print(
        f"{'model / feeding':<38} {'RTF':>6} {'shown p50/p90':>12} {'commit p50/p90':>12} {'flicker':>7} "
        f"{'WER %':>6} {'offl %':>6} {'str~off':>7} {'lost s':>7} {'RSS MB':>6}"
    )
    for r in rows:
        print(row(f"{r['label']}, fast", r, r["fast"], r))
        if "realtime" in r:
            print(row(f"{r['label']}, real time", r, r["realtime"], None))
    for r in rows:
        if "session_s" in r:
            print(
                f"{r['label']}: a {r['session_s'] / 3600:g} h session ({r['session_utterances']} utterances) grew RSS "
                f"by {r['session_rss_growth_mb']:.1f} MB after its first 5 minutes; first/last {EDGE_S / 60:g} min: "
                f"RTF {r['first_rtf']:.3f}/{r['last_rtf']:.3f}, commit latency p50 "
                f"{r['first_commit_p50']:.2f}/{r['last_commit_p50']:.2f} s"
            )


if __name__ == "__main__":
    main()

"""Batch evaluation in one process vs on a local Ray cluster with 1 and with 2 workers.

    .venv/bin/python benchmarks/bench_distributed.py [--manifest ../shared/data/splits/kathleen_dev.tsv] [--limit 48]

The same utterances go through `asrkit.evaluate.evaluate` (no hypothesis cache) and through
`asrkit.distributed.evaluate_manifest` on a local cluster of 2 CPUs (`ray.init(num_cpus=2)`, started once,
its start-up reported apart, its workers at this process's priority), each Ray run into a fresh results
folder. Wall time includes loading the
model (once in process, once per actor on Ray), so the table is what a user waits for. Prints one table:
wall seconds, throughput in audio seconds per wall second, its ratio to the single process and to one
Ray worker, and the corpus WER of each (all equal when the model's output does not depend on the order
of the utterances).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "shared/data/splits/kathleen_dev.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--limit", type=int, default=48, help="first N utterances (default 48)")
    parser.add_argument("--model", default="pocketsphinx")
    parser.add_argument("--shard-size", type=int, default=4, help="utterances per shard (default 4)")
    args = parser.parse_args()

    import ray

    from asrkit.distributed import RayOptions, evaluate_manifest
    from asrkit.evaluate import evaluate
    from asrkit.manifest import read_manifest
    from asrkit.models import load_model

    utterances = read_manifest(args.manifest)[: args.limit]
    rows = []
    began = time.perf_counter()
    report = evaluate(load_model(args.model), utterances, progress=False)
    rows.append(("single process", 1, time.perf_counter() - began, report))
    audio_s = report.audio_s

    # Ray starts its workers at nice 15; at the single process's priority instead, so that on a shared
    # machine the engines compete alike with whatever else runs
    os.environ.setdefault("RAY_worker_niceness", str(os.nice(0)))
    began = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    startup = time.perf_counter() - began
    try:
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as results:
                began = time.perf_counter()
                report, _ = evaluate_manifest(
                    utterances,
                    model=args.model,
                    results=results,
                    progress=False,
                    options=RayOptions(workers=workers, shard_size=args.shard_size),
                )
                rows.append(
                    (f"ray, {workers} worker" + "s" * (workers > 1), workers, time.perf_counter() - began, report)
                )
    finally:
        ray.shutdown()

    load = os.getloadavg()[0]
    print(
        f"{len(utterances)} utterances, {audio_s:.1f} s of audio from {args.manifest.name}; model {args.model}; "
        f"shards of {args.shard_size}; {os.cpu_count()} CPUs, load average {load:.1f} before the Ray runs ended; "
        f"local Ray cluster start-up {startup:.1f} s (not in the table)"
    )
    print(f"{'engine':<18} {'wall s':>7} {'audio s/s':>10} {'x single':>9} {'x ray-1':>8} {'WER %':>7}")
    single, ray_one = rows[0][2], rows[1][2]
    for name, _, wall, report in rows:
        print(
            f"{name:<18} {wall:>7.1f} {audio_s / wall:>10.2f} {single / wall:>9.2f} {ray_one / wall:>8.2f} "
            f"{100 * report.corpus.wer:>7.2f}"
        )


if __name__ == "__main__":
    main()

"""Evaluation at scale: 1,000 utterances through the default model, the cache, and the explorer.

    .venv/bin/python benchmarks/bench_evaluation.py [--manifest ../shared/data/splits/fsdd_train.tsv] [--n 1000]

Prints one table: evaluating N utterances from scratch and again from the hypothesis cache (x RT is
seconds of audio per second of wall time), then the explorer's operations on that report in
milliseconds (building it, a filter change, a page turn and a row click, each the median of several).
A click redraws one utterance's pane; nothing else is re-rendered.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from asrkit.evaluate import HypothesisCache, evaluate
from asrkit.manifest import read_manifest
from asrkit.models import load_model, resolve_model
from asrkit.widgets.explorer import Explorer

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "shared/data/splits/fsdd_train.tsv"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ms(fn, repeats: int = 5) -> float:
    return 1000 * statistics.median(timed(fn) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    utterances = read_manifest(args.manifest)[: args.n]
    model = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        cache = HypothesisCache.for_model(resolve_model(args.model), cache_dir=tmp)
        cold = timed(lambda: evaluate(model, utterances, cache=cache))
        reports = []
        warm = timed(lambda: reports.append(evaluate(model, utterances, cache=HypothesisCache(cache.path))))
    report = reports[0]
    audio_s = report.audio_s
    explorer: list[Explorer] = []
    build = 1000 * timed(lambda: explorer.append(Explorer(report)))
    ex = explorer[0]
    ranges = iter([(10.0, 100.0), (0.0, 100.0)] * 10)
    filter_ms = median_ms(lambda: setattr(ex.wer_range, "value", next(ranges)))
    page_ms = median_ms(lambda: ex._turn(1))
    rows = iter(range(100))
    click_ms = median_ms(lambda: setattr(ex.table, "index", next(rows) % len(ex.shown)))
    print(
        f"model {report.model}, {len(report.rows)} utterances ({audio_s / 60:.1f} min of audio) "
        f"from {args.manifest.name}; "
        f"WER {100 * report.corpus.wer:.2f}%"
    )
    print(f"{'step':<34} {'seconds':>9} {'x RT':>9}")
    print(f"{'evaluate, nothing cached':<34} {cold:>9.2f} {audio_s / cold:>9.1f}")
    print(f"{'evaluate again, all cached':<34} {warm:>9.2f} {audio_s / warm:>9.0f}")
    print(f"{'step':<34} {'ms':>9}")
    for name, ms in (
        ("explorer: build", build),
        ("explorer: change the WER filter", filter_ms),
        ("explorer: next page", page_ms),
        ("explorer: click a row (load + plot)", click_ms),
    ):
        print(f"{name:<34} {ms:>9.1f}")


if __name__ == "__main__":
    main()

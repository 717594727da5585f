"""Recognition: ``asrkit transcribe``, ``eval``, ``compare`` and ``stream``, here or (transcribe, eval) on a Ray
cluster."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from asrkit.audio import AudioError, load_audio
from asrkit.cli.common import (
    CONTROL_ESCAPES,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    MODEL_HELP,
    at_least_one,
    plain_warnings,
    printable,
)
from asrkit.config import Config
from asrkit.contracts import PromptError
from asrkit.distributed import DistributedError, RayOptions
from asrkit.evaluate import EvalReport, HypothesisCache, evaluate, format_report, record_in_card
from asrkit.formats import FORMATS, render
from asrkit.manifest import read_manifest
from asrkit.models import UnknownModelError, load_model, resolve_model

SUFFIXES = {"text": ".txt", "json": ".json", "srt": ".srt", "vtt": ".vtt"}
# Longest --chunk-ms: live chunks are tens to hundreds of milliseconds; a minute is past any live use.
MAX_CHUNK_MS = 60_000.0
# How 'transcribe' writes a backslash, tab, newline, carriage return or other control character in a
# FILE<TAB>transcript line, so that one line stays one file whatever its name holds.
LINE_ESCAPES = CONTROL_ESCAPES | str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
PROMPT_HELP = "words to expect, e.g. 'Dashwood, Voila, Kaldi' (names and terms, at most about 20; Whisper models only)"


def _warn_untrained(model) -> None:
    if not model.card.trained:
        _untrained(model.name)


def _untrained(name: str) -> None:
    print(f"WARNING: model {name!r} is UNTRAINED (random weights): its transcripts are meaningless.", file=sys.stderr)


def _emit(args: argparse.Namespace, path: Path, transcript, *, trained: bool, many: bool) -> None:
    text = render(transcript, args.format, file=str(path), model_trained=trained)
    if args.output_dir:
        (args.output_dir / (path.stem + SUFFIXES[args.format])).write_text(text, encoding="utf-8")
    elif many and args.format == "text":
        print(f"{str(path).translate(LINE_ESCAPES)}\t{transcript.text.translate(LINE_ESCAPES)}")
    else:
        print(text, end="")


def _prompted_model(args: argparse.Namespace, config: Config):
    """The --model, expecting the words of --prompt when one is given; None, the error said, when it
    takes no prompt or not that one."""
    model = load_model(args.model, config=config)
    if args.prompt is None:
        return model
    try:
        return model.with_prompt(args.prompt)
    except PromptError as err:
        print(f"error: --prompt: {err}", file=sys.stderr)
        return None


def _clashes(files: list[Path], suffix: str) -> list[str]:
    """'A and B' for each two inputs whose outputs would have the same name in --output-dir."""
    first: dict[str, Path] = {}
    clashes = []
    for path in files:
        name = path.stem + suffix
        if name in first:
            clashes.append(f"{first[name]} and {path} (both {name})")
        else:
            first[name] = path
    return clashes


def _cache_options(p: argparse.ArgumentParser) -> None:
    """The hypothesis cache's options, of the commands that evaluate a model on a manifest."""
    p.add_argument(
        "--cache-dir",
        type=Path,
        help="hypotheses kept between runs (default $ASR_CACHE_DIR or ~/.cache/asrkit/hypotheses)",
    )
    p.add_argument("--no-cache", action="store_true", help="transcribe everything again, keeping nothing")


def _engine_options(p: argparse.ArgumentParser) -> None:
    """--engine and the Ray options, of the commands that can run a manifest on a Ray cluster."""
    g = p.add_argument_group("engine", "where the model runs; --engine ray needs the extra: pip install 'asrkit[ray]'")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: in this process (default); ray: shards on a Ray cluster, written as they finish "
        "and skipped when run again (the results folder stands in for the hypothesis cache)",
    )
    g.add_argument(
        "--address",
        help="Ray cluster: 'auto' joins the one 'ray start --head' made here, or "
        "ray://HOST:10001; default $RAY_ADDRESS, else a local cluster for this run",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=RayOptions.workers,
        help="Ray actors, each holding the model (default %(default)s)",
    )
    g.add_argument(
        "--shard-size",
        type=int,
        default=RayOptions.shard_size,
        help="utterances per shard: the unit of retry and resume (default %(default)s)",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=RayOptions.max_retries,
        help="times a failed shard is run again (default %(default)s)",
    )
    g.add_argument(
        "--results",
        type=Path,
        help="results folder; the same one again resumes (default asrkit-runs/<manifest>-<run digest>)",
    )


@plain_warnings
def _transcribe(args: argparse.Namespace, config: Config) -> int:
    if bool(args.files) == (args.manifest is not None):
        print("error: give audio FILEs or --manifest, one of the two", file=sys.stderr)
        return EXIT_USAGE
    if args.engine == "ray" and args.manifest is None:
        print("error: --engine ray transcribes a --manifest (its shards are what resumes)", file=sys.stderr)
        return EXIT_USAGE
    if args.engine == "ray" and args.prompt is not None:
        # Ray's actors load the model by name, and their results are resumed by it
        print("error: --prompt runs on --engine local only", file=sys.stderr)
        return EXIT_USAGE
    files = args.files or [u.audio_path for u in read_manifest(args.manifest)]
    clashes = _clashes(files, SUFFIXES[args.format]) if args.output_dir else []
    if clashes:
        print(
            f"error: --output-dir {args.output_dir} would get one file for two inputs: {'; '.join(clashes)}; "
            "transcribe them into different folders",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.engine == "ray":
        return _transcribe_on_ray(args, config)
    model = _prompted_model(args, config)
    if model is None:
        return EXIT_USAGE
    _warn_untrained(model)
    status = EXIT_OK
    many = len(files) > 1
    for path in tqdm(files, unit="file", disable=not many):
        try:
            audio = load_audio(path, limits=config.limits)
        except AudioError as err:
            print(f"error: {printable(str(err))}", file=sys.stderr)
            status = EXIT_PARTIAL
            continue
        _emit(args, path, model.transcribe(audio), trained=model.card.trained, many=many)
    return status


def _on_ray(args: argparse.Namespace, config: Config) -> dict:
    """The arguments of :func:`asrkit.distributed.run_manifest` and ``evaluate_manifest`` besides the utterances:
    the model, results folder, manifest and Ray options of the command line."""
    try:
        options = RayOptions(
            address=args.address, workers=args.workers, shard_size=args.shard_size, max_retries=args.retries
        )
    except ValueError as err:
        raise DistributedError(str(err).replace("_", "-")) from None
    return {
        "model": args.model,
        "results": args.results,
        "manifest": args.manifest,
        "options": options,
        "config": config,
    }


def _transcribe_on_ray(args: argparse.Namespace, config: Config) -> int:
    from asrkit.distributed import run_manifest

    utterances = read_manifest(args.manifest)
    run = run_manifest(utterances, **_on_ray(args, config))
    if not run.trained:
        _untrained(run.model)
    status = EXIT_OK
    for utt, outcome in zip(utterances, run.outcomes):
        if outcome.error is not None:
            print(f"error: {printable(outcome.error)}", file=sys.stderr)
            status = EXIT_PARTIAL
            continue
        _emit(args, utt.audio_path, outcome.transcript, trained=run.trained, many=True)
    print(f"ray: {run.describe()}", file=sys.stderr)
    return status


def add_transcribe(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio files. Several FILEs in text format print one 'FILE<TAB>transcript' line "
        "each, a backslash, tab, newline or carriage return in either written as \\\\, \\t, \\n or \\r.",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE")
    p.add_argument("--manifest", type=Path, help="transcribe a manifest's audio files instead of FILEs")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument(
        "--output-dir",
        type=Path,
        help="write FILE's stem + .txt/.json/.srt/.vtt here; inputs with the same stem are refused",
    )
    p.add_argument("--prompt", metavar="TEXT", help=PROMPT_HELP)
    _engine_options(p)
    p.set_defaults(run=_transcribe)


def cache_for(model_name: str | None, *, config: Config, cache_dir: Path | None) -> HypothesisCache | None:
    """The model's hypothesis cache, in ``cache_dir`` or ``config.paths.cache_dir``; none for a hub name, which
    has no folder whose files say its version."""
    try:
        return HypothesisCache.for_model(
            resolve_model(model_name, config=config), cache_dir=cache_dir or config.paths.cache_dir
        )
    except UnknownModelError:
        return None


def _evaluated(args: argparse.Namespace, config: Config, model_name: str | None, utterances) -> EvalReport:
    model = load_model(model_name, config=config)
    _warn_untrained(model)
    cache = None if args.no_cache else cache_for(model_name, config=config, cache_dir=args.cache_dir)
    return evaluate(model, utterances, batch_size=config.model.batch_size, limits=config.limits, cache=cache)


def _evaluated_on_ray(args: argparse.Namespace, config: Config, utterances) -> EvalReport:
    from asrkit.distributed import evaluate_manifest

    report, run = evaluate_manifest(utterances, **_on_ray(args, config))
    if not run.trained:
        _untrained(run.model)
    print(f"ray: {run.describe()}", file=sys.stderr)
    return report


@plain_warnings
def _eval(args: argparse.Namespace, config: Config) -> int:
    from asrkit import report as files

    utterances = read_manifest(args.manifest)[: args.limit]
    if args.prompt is not None and (args.engine == "ray" or args.record):
        # Ray's actors load the model by name; a card records the model as it is, without a prompt
        print(
            "error: --prompt runs on --engine local only, and is never --record-ed in the model's card", file=sys.stderr
        )
        return EXIT_USAGE
    if args.engine == "ray":
        report = _evaluated_on_ray(args, config, utterances)
    elif args.prompt is not None:
        model = _prompted_model(args, config)
        if model is None:
            return EXIT_USAGE
        _warn_untrained(model)
        # the hypothesis cache is the model's, without a prompt
        report = evaluate(model, utterances, batch_size=config.model.batch_size, limits=config.limits)
    else:
        report = _evaluated(args, config, args.model, utterances)
    print(printable(format_report(report)))
    if args.json:
        files.write_json(report, args.json, manifest=str(args.manifest), command=args.command_line)
    if args.csv:
        files.write_csv(report, args.csv)
    if args.report:
        files.write_html(report, args.report, title=f"{report.model} on {args.manifest.name}")
    for written in (args.json, args.csv, args.report):
        if written:
            print(f"wrote {written}")
    if args.record:
        folder = resolve_model(args.model, config=config)
        card = record_in_card(report, folder, set_name=args.manifest.stem, command=args.command_line)
        print(f"recorded in {card}")
    return EXIT_PARTIAL if report.failed else EXIT_OK


def add_eval(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", help="word and character error rates on a manifest")
    p.add_argument("manifest", type=Path, metavar="MANIFEST", help=".tsv or NeMo .jsonl manifest")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument("--limit", type=at_least_one, help="only the first N utterances")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--csv", type=Path, help="also write the per-utterance table as CSV here")
    p.add_argument("--report", type=Path, help="also write a self-contained HTML report here")
    p.add_argument("--record", action="store_true", help="store WER/CER/RTF in the model's card.json")
    p.add_argument("--prompt", metavar="TEXT", help=PROMPT_HELP + "; transcribes without the hypothesis cache")
    _cache_options(p)
    _engine_options(p)
    p.set_defaults(run=_eval)


@plain_warnings
def _compare(args: argparse.Namespace, config: Config) -> int:
    from asrkit.analysis import compare

    utterances = read_manifest(args.manifest)[: args.limit]
    a, b = (_evaluated(args, config, name, utterances) for name in args.models)
    c = compare(a, b)
    print(f"{len(c.differences)} of {len(a.rows)} utterances transcribed differently")
    for d in c.differences[: args.show]:
        print(
            printable(
                f"{d.row_a.utterance.id}  WER {100 * d.row_a.score.wer:.0f}% -> {100 * d.row_b.score.wer:.0f}%\n"
                f"  reference: {d.row_a.score.reference}\n"
                f"  {a.model}: {d.row_a.score.hypothesis}\n"
                f"  {b.model}: {d.row_b.score.hypothesis}"
            )
        )
    print(
        f"\nWER {a.model} {100 * a.corpus.wer:.2f}%, {b.model} {100 * b.corpus.wer:.2f}%: "
        f"difference {100 * c.wer_delta:+.2f} points (95% paired bootstrap {100 * c.delta_interval.low:+.2f} to "
        f"{100 * c.delta_interval.high:+.2f}); text normalised by {a.normalizer}"
    )
    for model, words in ((a.model, c.only_a_right), (b.model, c.only_b_right)):
        print(f"only {model} right: " + (", ".join(f"{w} ({n})" for w, n in words[:15]) or "none"))
    return EXIT_PARTIAL if a.failed or b.failed else EXIT_OK


def add_compare(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("compare", help="two models on one manifest: where and how they differ")
    p.add_argument(
        "manifest", type=Path, metavar="MANIFEST", help=".tsv or NeMo .jsonl manifest, or a LibriSpeech folder"
    )
    p.add_argument("--models", nargs=2, required=True, metavar=("A", "B"), help="registry names or model folders")
    p.add_argument("--limit", type=at_least_one, help="only the first N utterances")
    p.add_argument("--show", type=int, default=10, help="differing utterances to print (default 10)")
    _cache_options(p)
    p.set_defaults(run=_compare)


def _chunk_ms(text: str) -> float:
    """--chunk-ms: a finite number of milliseconds in (0, MAX_CHUNK_MS] (nan and inf parse as floats)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_CHUNK_MS:  # False for nan
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_CHUNK_MS:.0f} milliseconds, got {text}")
    return value


class LiveTranscript:
    """What ``asrkit stream`` prints as a session goes: each newly committed piece once, on a line of its own,
    so the output grows with the transcript rather than with the number of updates. On a terminal the
    partial is shown too, below the committed lines, rewritten in place (cut to the terminal's width so
    that a carriage return can reach its start); elsewhere (a file, a pipe) only committed text is written.
    """

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        # committed words printed so far; the session never changes a committed word
        self._printed = 0
        # the partial now on screen (terminal only)
        self._partial = ""

    def __call__(self, result) -> None:
        words = result.committed.split()
        partial = result.partial if self.tty else ""
        if len(words) <= self._printed and partial == self._partial:
            return
        self._clear()
        if len(words) > self._printed:
            self.out.write(" ".join(words[self._printed :]) + "\n")
            self._printed = len(words)
        if partial:
            width = shutil.get_terminal_size().columns - 1
            shown = f"[{partial}]"
            self.out.write(shown if len(shown) <= width else shown[: width - 1] + "…")
        self._partial = partial
        self.out.flush()

    def close(self) -> None:
        """Take the partial off the screen: the session is over."""
        self._clear()
        self._partial = ""
        self.out.flush()

    def _clear(self) -> None:
        if self._partial:
            # back to the line's start, then erase to its end (ANSI EL)
            self.out.write("\r\x1b[K")


def _stream(args: argparse.Namespace, config: Config) -> int:
    from asrkit.metrics import score
    from asrkit.stream_metrics import measure, percentile, stream_audio, summary

    model = _prompted_model(args, config)
    if model is None:
        return EXIT_USAGE
    _warn_untrained(model)
    try:
        audio = load_audio(args.file, limits=config.limits)
    except AudioError as err:
        print(f"error: {printable(str(err))}", file=sys.stderr)
        return EXIT_PARTIAL
    stream = model.create_stream()
    live = LiveTranscript(sys.stdout, tty=sys.stdout.isatty())
    session = stream_audio(
        stream, audio, chunk_s=args.chunk_ms / 1000, realtime=args.realtime, on_result=None if args.json else live
    )
    live.close()
    metrics = measure(session, revisions=getattr(stream, "revisions", 0))
    streamed = session.result().committed
    offline = model.transcribe(audio).text
    versus_offline = score(offline, streamed).wer
    if args.json:
        report = {
            "model": model.name,
            "prompt": args.prompt,
            "file": str(args.file),
            "mode": "realtime" if args.realtime else "fast",
            "chunk_ms": args.chunk_ms,
            "text": streamed,
            "offline_text": offline,
            "wer_vs_offline": versus_offline,
            "rtf": metrics.rtf,
            "flicker": metrics.flicker,
            "revisions": metrics.revisions,
            "skipped_s": session.skipped_s,
            "shown_latency_s": {
                "median": percentile(metrics.shown_latency_s, 50),
                "p90": percentile(metrics.shown_latency_s, 90),
            },
            "commit_latency_s": {
                "median": percentile(metrics.commit_latency_s, 50),
                "p90": percentile(metrics.commit_latency_s, 90),
            },
            "emissions": [{k: v for k, v in vars(e).items() if k != "words"} for e in session.emissions or []],
        }
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"--\nstreamed: {streamed}\noffline:  {offline}\nWER of streamed against offline: {versus_offline:.3f}")
    print(summary(metrics))
    if session.skipped_s:
        print(f"the model fell behind: {session.skipped_s:.2f} s of audio dropped")
    return EXIT_OK


def add_stream(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "stream",
        help="stream a file as if live: the evolving transcript and latency metrics",
        description="Stream a file as if live. Each committed piece of the transcript is printed once, on a line of "
        "its own; on a terminal the partial (words that may still change) is shown below it in [brackets] "
        "and rewritten in place.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--model", help=MODEL_HELP)
    p.add_argument(
        "--chunk-ms",
        type=_chunk_ms,
        default=100.0,
        help=f"audio per chunk, milliseconds, above 0 and at most {MAX_CHUNK_MS:.0f} (default 100)",
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="deliver chunks at the speed of speech")
    pace.add_argument("--fast", dest="realtime", action="store_false", help="as fast as the model goes (default)")
    p.add_argument("--json", action="store_true", help="print a JSON report (metrics and every emission) instead")
    p.add_argument("--prompt", metavar="TEXT", help=PROMPT_HELP + "; the offline transcript uses it too")
    p.set_defaults(run=_stream)

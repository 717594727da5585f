"""Fine-tuning a pretrained Whisper model on labelled clips, with a before/after report and a
forgetting check: what ``asrkit finetune`` runs.

:func:`finetune_model` reads manifests, leaves out excluded texts, holds part of the clips out (early
stopping chooses the best weights on them), encodes the rest once (see
:mod:`asrkit.models.whisper.finetune`), trains, saves the result as a registered model and measures
the base and the new model on the ``dev`` sets (the target) and on the ``general`` set (everything
else the model should still do). When the general WER got worse by more than
:data:`FORGETTING_POINTS` points, the report and the card say so.

Usage
-----
::

    report = finetune_model(["digits_train.tsv"], name="whisper-digits", dev=["digits_dev.tsv"],
                            general="strangers.tsv")
    print(report.table())
"""

from __future__ import annotations

import math
import random
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from asrkit.config import Config
from asrkit.evaluate import card_metrics
from asrkit.manifest import Utterance, read_manifest
from asrkit.models.whisper.finetune import FinetuneOptions, FinetuneResult, Progress
from asrkit.text import normalize_text

# A general-set WER worse by more than this many percentage points is reported as forgetting.
FORGETTING_POINTS = 1.0
# Model names: a folder name that is also safe on a command line.
MODEL_NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,79}"
# The run folder's picture of the training loss and the held-out WER.
CURVE_FILE = "curve.png"
# the held-out clips' encoder features in the run folder (the training clips' are FEATURES_FILE)
HELD_OUT_FILE = "held_out.npy"
# The Whisper windows fine-tuning takes: longer clips are left out.
MAX_CLIP_S = 30.0


@dataclass(frozen=True)
class SetComparison:
    """The base and the fine-tuned model on one manifest."""

    # the manifest's file stem, the key of the card's metrics
    name: str
    manifest: Path
    utterances: int
    base_wer: float
    wer: float
    # "dev" (a target) or "general" (the forgetting check)
    role: str

    @property
    def change_points(self) -> float:
        return 100 * (self.wer - self.base_wer)


@dataclass(frozen=True)
class FinetuneReport:
    """What :func:`finetune_model` did and measured."""

    name: str
    # the saved model folder; None when cancelled
    folder: Path | None
    base_model: str
    # the run folder: features, checkpoint, history.jsonl and curve.png (loss and held-out WER)
    run_dir: Path
    result: FinetuneResult
    sets: tuple[SetComparison, ...]
    # clips trained on (before augmentation), held out for early stopping, and left out
    train_clips: int
    held_out_clips: int
    excluded_clips: int
    # seconds encoding clips, training, and in all; peak resident memory of the process in MB
    encode_s: float
    train_s: float
    total_s: float
    peak_rss_mb: float

    @property
    def forgetting(self) -> str | None:
        """A warning when the general set got worse by more than FORGETTING_POINTS, else None."""
        worse = [s for s in self.sets if s.role == "general" and s.change_points > FORGETTING_POINTS]
        if not worse:
            return None
        return "; ".join(
            f"forgetting: {s.name} WER {100 * s.base_wer:.2f}% -> {100 * s.wer:.2f}% "
            f"(+{s.change_points:.2f} points, more than {FORGETTING_POINTS:g})"
            for s in worse
        )

    def table(self) -> str:
        lines = [f"{'set':<24}{'role':<9}{'utts':>6}{'base WER %':>12}{'tuned WER %':>13}{'change':>9}"]
        for s in self.sets:
            lines.append(
                f"{s.name:<24}{s.role:<9}{s.utterances:>6}{100 * s.base_wer:>12.2f}{100 * s.wer:>13.2f}"
                f"{s.change_points:>+9.2f}"
            )
        if not any(s.role == "general" for s in self.sets):
            lines.append("no general set given: forgetting was not checked")
        elif self.forgetting:
            lines.append(self.forgetting)
        else:
            lines.append(f"no forgetting: every general set within {FORGETTING_POINTS:g} point of the base")
        return "\n".join(lines)


def check_model_name(name: str) -> str:
    """A new model's name: lower-case, folder-safe, and not a shipped model's (the registry looks at the
    shipped models first, so a model of that name could never be loaded by it)."""
    import re

    from asrkit import models

    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ValueError(f"model name {name!r} must be lower-case letters, digits, '.', '-' or '_' (at most 80)")
    if models.is_shipped(name):
        raise ValueError(f"{name!r} is a shipped model's name; the new model needs another")
    return name


def select_clips(
    utterances: Sequence[Utterance], *, exclude: Sequence[str] = (), max_clips: int | None = None
) -> tuple[list[Utterance], int]:
    """The clips to learn from: excluded texts (compared normalised) and clips over 30 s left out,
    then at most ``max_clips`` spread evenly over the rest. Returns them and how many were left out."""
    banned = {normalize_text(t) for t in exclude}
    kept = [
        u
        for u in utterances
        if normalize_text(u.transcript) not in banned and (u.duration_s is None or u.duration_s <= MAX_CLIP_S)
    ]
    left_out = len(utterances) - len(kept)
    if max_clips is not None and len(kept) > max_clips:
        kept = [kept[int(i * len(kept) / max_clips)] for i in range(max_clips)]
    return kept, left_out


def hold_out(utterances: Sequence[Utterance], *, fraction: float, seed: int) -> tuple[list[Utterance], list[Utterance]]:
    """(train, held out): a seeded share of the clips, at least one, for early stopping."""
    if not 0 <= fraction < 1:
        raise ValueError(f"held-out fraction must lie in [0, 1), got {fraction}")
    order = list(utterances)
    random.Random(seed).shuffle(order)
    n = math.ceil(fraction * len(order)) if fraction > 0 else 0
    return order[n:], order[:n]


def _evaluate(model, folder: Path, manifest: Path, progress: bool):
    from asrkit.evaluate import HypothesisCache, evaluate

    return evaluate(model, read_manifest(manifest), cache=HypothesisCache.for_model(folder), progress=progress)


def finetune_model(
    manifests: Sequence[str | Path],
    *,
    name: str,
    base: str = "default",
    options: FinetuneOptions = FinetuneOptions(),
    dev: Sequence[str | Path] = (),
    general: Sequence[str | Path] = (),
    held_out_fraction: float = 0.1,
    max_clips: int | None = None,
    exclude: Sequence[str] = (),
    noise_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    models_dir: str | Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    progress: bool = True,
) -> FinetuneReport:
    """Fine-tune the ``base`` Whisper model on the clips of ``manifests`` and save it as ``name``.

    Parameters
    ----------
    dev : manifests of the target (measured before and after, never learned from)
    general : manifests of what the model must keep doing (the forgetting check)
    exclude : transcripts never learned from (e.g. every evaluation sentence)
    noise_dir : a folder of noise clips with a ``rir_simulated/`` folder of room responses for the
        augmented copies (see :class:`asrkit.data.augment.Augmenter`); None perturbs copies by speed,
        gain and SpecAugment only
    run_dir : the run folder (features, checkpoints, history); running again with it resumes.
        Default: ``<models_dir>/<name>.run``
    models_dir : where the model is saved (default ``Config.from_env().paths.user_models_dir``,
        ``ASR_USER_MODELS_DIR``)
    """
    from asrkit import models
    from asrkit.audio import load_audio
    from asrkit.data.augment import AugmentConfig, Augmenter
    from asrkit.models.whisper.finetune import FEATURES_FILE, HISTORY_FILE, encode_examples, finetune, save_finetuned
    from asrkit.models.whisper.model import WhisperModel
    from asrkit.plotting import plot_training

    began = time.monotonic()
    models_root = Path(models_dir) if models_dir is not None else Config.from_env().paths.user_models_dir
    check_model_name(name)
    run_dir = Path(run_dir) if run_dir is not None else models_root / f"{name}.run"
    utterances = [u for m in manifests for u in read_manifest(Path(m))]
    clips, excluded = select_clips(utterances, exclude=exclude, max_clips=max_clips)
    train_utts, held_utts = hold_out(clips, fraction=held_out_fraction, seed=options.seed)
    if not train_utts:
        raise ValueError(f"no clips left to learn from in {', '.join(map(str, manifests))}")
    base_folder = models.resolve_model(base)
    model = models.load_model(base)
    if not isinstance(model, WhisperModel) or type(model) is not WhisperModel:
        raise ValueError(
            f"{base} is not a Keras Whisper model: fine-tuning starts from one, such as {models.DEFAULT_MODEL}"
        )
    comparisons = [(Path(m), "dev") for m in dev] + [(Path(m), "general") for m in general]
    before = {path: _evaluate(model, base_folder, path, progress) for path, _ in comparisons}

    augmenter = None
    if options.copies:
        noise = Path(noise_dir) if noise_dir is not None else None
        augmenter = Augmenter(noise, config=AugmentConfig(reverb_prob=0.3, noise_prob=0.5, snr_db=(10.0, 30.0)))
    run_dir.mkdir(parents=True, exist_ok=True)
    encode_began = time.monotonic()
    train_set = encode_examples(
        model,
        [load_audio(u.audio_path) for u in train_utts],
        [u.transcript for u in train_utts],
        copies=options.copies,
        augmenter=augmenter,
        seed=options.seed,
        path=run_dir / FEATURES_FILE,
        on_progress=on_progress,
        cancel=cancel,
    )
    held_set = None
    if held_utts and train_set is not None:
        held_set = encode_examples(
            model,
            [load_audio(u.audio_path) for u in held_utts],
            [u.transcript for u in held_utts],
            path=run_dir / HELD_OUT_FILE,
            on_progress=on_progress,
            cancel=cancel,
        )
    encode_s = time.monotonic() - encode_began

    def report(
        result: FinetuneResult, folder: Path | None = None, sets: tuple[SetComparison, ...] = ()
    ) -> FinetuneReport:
        return FinetuneReport(
            name,
            folder,
            model.name,
            run_dir,
            result,
            sets,
            len(train_utts),
            len(held_utts),
            excluded,
            encode_s,
            result.train_s,
            time.monotonic() - began,
            _peak_rss_mb(),
        )

    if train_set is None or (held_utts and held_set is None):
        return report(FinetuneResult(0, 0, (), (), 0.0, True, "cancelled", options))
    result = finetune(
        model, train_set, held_set, run_dir=run_dir, options=options, on_progress=on_progress, cancel=cancel
    )
    if result.cancelled:
        return report(result)
    plot_training(run_dir / HISTORY_FILE).figure.savefig(run_dir / CURVE_FILE, dpi=100)
    # the encoded clips (gigabytes for an hour of audio) only serve a resumed run
    for features in (FEATURES_FILE, HELD_OUT_FILE):
        (run_dir / features).unlink(missing_ok=True)
    minutes = sum(u.duration_s or 0.0 for u in train_utts) / 60
    card = replace(
        model.card,
        name=name,
        description=f"{model.card.description}; fine-tuned ({options.trainable}) by asrkit",
        training_data=f"{model.name}: {model.card.training_data}. Fine-tuned for {result.best_step} of "
        f"{result.steps} steps on {len(train_utts)} clips ({minutes:.1f} min) of "
        f"{', '.join(Path(m).name for m in manifests)}"
        f" with {options.copies} augmented copies each; {len(held_utts)} clips held out for early stopping",
        metrics={},
    )
    run = {"encode_s": round(encode_s, 1), "train_s": round(result.train_s, 1), "peak_rss_mb": round(_peak_rss_mb())}
    folder = save_finetuned(model, result, folder=models_root / name, card=card, run=run)
    tuned = WhisperModel.load(folder)
    sets = []
    metrics = {}
    for path, role in comparisons:
        after = _evaluate(tuned, folder, path, progress)
        sets.append(SetComparison(path.stem, path, len(after.rows), before[path].corpus.wer, after.corpus.wer, role))
        # a forgetting-check set is general speech: the model's headline (see headline_metric)
        entry = card_metrics(after, command=f"asrkit eval {path} --model {name}", general=role == "general")
        metrics[path.stem] = {**entry, "base_wer": round(before[path].corpus.wer, 4)}
    done = report(result, folder, tuple(sets))
    if any(role == "general" for _, role in comparisons):
        # recorded with the metrics, which a model's identity (and its cached transcripts) leaves out
        metrics["forgetting"] = done.forgetting or f"none (general sets within {FORGETTING_POINTS:g} point)"
    replace(tuned.card, metrics=metrics).save(folder)
    return done


def _peak_rss_mb() -> float:
    # Linux reports kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

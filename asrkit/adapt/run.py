"""Adapting: hold out part of a session's takes, fine-tune a copy of the base model on the rest, and measure
both models on the held-out part."""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asrkit.adapt.prompts import PROMPT_SETS
from asrkit.adapt.session import AdaptSession, Take
from asrkit.config import AdaptSettings, Config
from asrkit.data.augment import AugmentConfig, Augmenter
from asrkit.evaluate import EvalReport, evaluate
from asrkit.finetune import check_model_name
from asrkit.manifest import Utterance
from asrkit.models import DEFAULT_MODEL
from asrkit.models.whisper.finetune import FinetuneOptions

# Fewer takes than this cannot be split into a useful adaptation part and a held-out part.
MIN_TAKES = 5
# The model that is adapted unless told otherwise: the default one, a Keras Whisper model whose decoder
# fine-tunes on a CPU (see asrkit.models.whisper.finetune).
BASE_MODEL = DEFAULT_MODEL
# Fine-tuning's stages under the names an adaptation reports them by.
_STAGES = {"encoding": "features", "training": "training"}


def split_takes(
    takes: Sequence[Take], *, held_out_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Take], list[Take]]:
    """(adaptation, held-out) parts of the takes, disjoint and the same for the same takes and seed.

    At least one take, and ``held_out_fraction`` of them rounded up, is held out.
    """
    if len(takes) < MIN_TAKES:
        raise ValueError(
            f"record at least {MIN_TAKES} prompts to adapt (there are {len(takes)}): "
            "some are held out to measure the model before and after"
        )
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must lie between 0 and 1, got {held_out_fraction}")
    order = sorted(takes, key=lambda t: t.index)
    random.Random(seed).shuffle(order)
    n_held = max(1, math.ceil(held_out_fraction * len(order)))
    held, kept = order[:n_held], order[n_held:]
    return sorted(kept, key=lambda t: t.index), sorted(held, key=lambda t: t.index)


def evaluate_takes(model, takes: Sequence[Take], *, speaker: str = "") -> EvalReport:
    """The model's transcripts of the takes, scored against their prompts."""
    utterances = [Utterance(t.path, t.prompt, t.duration_s, speaker) for t in takes]
    return evaluate(model, utterances, batch_size=8, progress=False)


@dataclass(frozen=True)
class AdaptOptions:
    """What is adapted and how; :meth:`from_config` starts from ``Config.adapt`` (the ``ASR_ADAPT_*`` variables)."""

    # registry name of the model to adapt; it must be a Keras Whisper model (see AdaptSettings for this
    # field and the next four)
    base_model: str = AdaptSettings.base_model
    # "digits" or "sentences"
    prompt_set: str = AdaptSettings.prompt_set
    # prompts in a new session
    prompts: int = AdaptSettings.prompts
    # optimiser steps of fine-tuning, all taken (the held-out takes only measure)
    steps: int = AdaptSettings.steps
    # what learns: "lora" (low-rank adapters) or "decoder" (all its blocks)
    trainable: str = AdaptSettings.trainable
    # adapter rank with trainable="lora"
    lora_rank: int = 8
    # learning rate after warm-up; None takes asrkit.models.whisper.finetune.PEAK_LR's for ``trainable``
    # (1e-3 for LoRA, 1e-5 for the whole decoder)
    peak_lr: float | None = None
    # steps of linear warm-up, then a cosine decay to a tenth of the peak
    warmup_steps: int = 10
    # augmented copies of each take besides the clean one (speed, light noise and reverberation, SpecAugment)
    copies: int = 2
    # takes per step: small batches give more updates from a few takes
    batch_size: int = 8
    # share of the takes held out to measure before and after
    held_out_fraction: float = 0.2
    # seeds the prompts, the split, the augmentation, the batch order and the adapters
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompt_set not in PROMPT_SETS:
            raise ValueError(f"prompt set {self.prompt_set!r} is not one of {', '.join(PROMPT_SETS)}")
        if self.prompts < MIN_TAKES:
            raise ValueError(f"need prompts >= {MIN_TAKES}, got {self.prompts}")
        self.finetune_options()  # checks what fine-tuning is asked for (trainable, steps, batch size, ...)

    def finetune_options(self) -> FinetuneOptions:
        """The fine-tuning these options ask for."""
        return FinetuneOptions(
            trainable=self.trainable,
            lora_rank=self.lora_rank,
            steps=self.steps,
            batch_size=self.batch_size,
            peak_lr=self.peak_lr,
            warmup_steps=self.warmup_steps,
            copies=self.copies,
            seed=self.seed,
            # the run folder is thrown away: a checkpoint before the last step would only cost time
            checkpoint_every=self.steps,
        )

    @classmethod
    def from_config(cls, config: Config | None = None) -> AdaptOptions:
        """Defaults, with ``config.adapt``'s settings (default ``Config.from_env()``: the ``ASR_ADAPT_*``
        variables).

        Examples
        --------
        >>> AdaptOptions.from_config(Config.from_env({"ASR_ADAPT_STEPS": "30"})).steps
        30
        """
        return cls(**dataclasses.asdict((config or Config.from_env()).adapt))


# The augmentation of adaptation takes: lighter than training from scratch, whose noisy copies would
# drown a few minutes of one voice.
LIGHT_AUGMENT = AugmentConfig(speeds=(0.9, 1.0, 1.1), reverb_prob=0.2, noise_prob=0.3, snr_db=(15.0, 30.0))


@dataclass(frozen=True)
class Progress:
    """Where an adaptation is: ``stage`` is "before", "features", "training", "after", "saving" or "done"."""

    stage: str
    # clips encoded (features: the takes and their copies), steps taken (training) or takes transcribed
    # (before, after), of ``total``
    done: int
    total: int
    # the last training batch's mean loss per token (nan outside training)
    loss: float = math.nan
    # seconds since the stage began (features, training; 0 otherwise)
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class AdaptResult:
    """Before and after on the held-out takes, and where the adapted model went."""

    # registry name of the adapted model
    name: str
    base_model: str
    adapt_takes: tuple[Take, ...]
    held_out: tuple[Take, ...]
    # the base model on the held-out takes
    before: EvalReport
    # the adapted model on them; None when cancelled
    after: EvalReport | None
    # the saved model folder; None when cancelled
    folder: Path | None
    # optimiser steps taken
    steps: int
    # seconds encoding the takes and their copies, training, and the whole adaptation (loading and
    # measuring both models included)
    encode_s: float
    train_s: float
    total_s: float
    cancelled: bool


def adapt(
    session: AdaptSession,
    *,
    options: AdaptOptions = AdaptOptions(),
    name: str | None = None,
    noise_dir: Path | None = None,
    models_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    config: Config | None = None,
) -> AdaptResult:
    """Hold out part of the session's takes, fine-tune a copy of the base Whisper model on the rest, and
    measure both models on the held-out part.

    The takes (and ``options.copies`` augmented copies of each) go through the encoder once, then the
    decoder learns for ``options.steps`` steps (see :mod:`asrkit.models.whisper.finetune`). The held-out
    takes choose nothing: they are only transcribed, by the base before and by the adapted model after.

    Parameters
    ----------
    name : str, optional
        Registry name of the adapted model (default ``<base model's name>-<user>``); a shipped model's
        name is refused.
    noise_dir : Path, optional
        Noise clips and ``rir_simulated/`` room responses for the augmentation (without it, copies are only
        sped up or slowed down, their gain varied and SpecAugment masked); see :attr:`AdaptData.noise_dir`.
    models_dir : Path, optional
        Where the adapted model is saved (default ``config.paths.user_models_dir``, ``ASR_USER_MODELS_DIR``).
    on_progress : callable, optional
        Called with a :class:`Progress` at each stage, encoded batch and training step, on the calling thread.
    cancel : threading.Event, optional
        Set from another thread to stop within an encoded batch or a training step; nothing is saved then
        (fine-tuning's run folder is a temporary one in the session's folder).
    config : Config, optional
        The device and folders to use (default ``Config.from_env()``).

    Raises
    ------
    ValueError
        Too few takes, a base that is not a Keras Whisper model or is itself fine-tuned, or a bad name.
    """
    from asrkit import models
    from asrkit.audio import load_audio
    from asrkit.models.whisper.finetune import Progress as TuningProgress
    from asrkit.models.whisper.finetune import encode_examples, finetune, save_finetuned
    from asrkit.models.whisper.model import WhisperModel

    began = time.monotonic()
    tell = on_progress or (lambda _: None)
    cancel = cancel or threading.Event()
    adapt_takes, held_out = split_takes(
        list(session.takes.values()), held_out_fraction=options.held_out_fraction, seed=options.seed
    )
    # a given name is checked before the seconds that loading the base takes
    name = check_model_name(name) if name is not None else None
    config = config or Config.from_env()
    base = models.load_model(options.base_model, config=config)
    # exactly WhisperModel: its LiteRT export (a subclass) has no Keras decoder to train
    if type(base) is not WhisperModel:
        raise ValueError(
            f"{options.base_model} ({type(base).__name__}) cannot be fine-tuned: adapt a Keras Whisper "
            f"model such as {BASE_MODEL}"
        )
    if "finetuned" in base.card.config:
        # its learned weights would be lost: a fine-tuned card names the original weights and one learned file
        raise ValueError(
            f"{options.base_model} is itself fine-tuned from "
            f"{base.card.config['finetuned'].get('base_model')}: adapt that model instead"
        )
    name = name or check_model_name(f"{base.name}-{session.user}")
    models_root = Path(models_dir) if models_dir is not None else config.paths.user_models_dir
    encode_s = train_s = 0.0
    steps = 0

    def result(after: EvalReport | None = None, folder: Path | None = None) -> AdaptResult:
        return AdaptResult(
            name,
            base.name,
            tuple(adapt_takes),
            tuple(held_out),
            before,
            after,
            folder,
            steps,
            encode_s,
            train_s,
            time.monotonic() - began,
            cancelled=after is None,
        )

    def relay(p: TuningProgress) -> None:
        if p.stage in _STAGES:
            tell(Progress(_STAGES[p.stage], p.done, p.total, p.loss, p.elapsed_s))

    tell(Progress("before", 0, len(held_out)))
    before = evaluate_takes(base, held_out, speaker=session.user)
    tell(Progress("before", len(held_out), len(held_out)))
    if cancel.is_set():
        return result()

    session.write_manifest(session.folder / "adapt.tsv", adapt_takes)
    session.write_manifest(session.folder / "held_out.tsv", held_out)
    augmenter = None
    if options.copies:
        augmenter = Augmenter(noise_dir if noise_dir is not None and noise_dir.is_dir() else None, config=LIGHT_AUGMENT)
    encode_began = time.monotonic()
    data = encode_examples(
        base,
        [load_audio(t.path) for t in adapt_takes],
        [t.prompt for t in adapt_takes],
        copies=options.copies,
        augmenter=augmenter,
        seed=options.seed,
        on_progress=relay,
        cancel=cancel,
    )
    encode_s = time.monotonic() - encode_began
    if data is None:
        return result()

    tuning = options.finetune_options()
    minutes = sum(t.duration_s for t in adapt_takes) / 60
    with tempfile.TemporaryDirectory(prefix="run-", dir=session.folder) as run:
        tuned = finetune(base, data, None, run_dir=Path(run) / "run", options=tuning, on_progress=relay, cancel=cancel)
        steps, train_s = tuned.steps, tuned.train_s
        if tuned.cancelled:
            return result()
        card = dataclasses.replace(
            base.card,
            name=name,
            description=f"{base.card.description}, adapted to {session.user}'s voice",
            training_data=f"{base.name}: {base.card.training_data}. Then {steps} fine-tuning steps "
            f"({tuning.trainable}) on {len(adapt_takes)} takes of {session.user} ({minutes:.1f} min, "
            f"{session.folder / 'adapt.tsv'}) with {options.copies} augmented copies each",
            metrics={},
        )
        tell(Progress("after", 0, len(held_out)))
        # the adapters reach the compiled decoding functions only through a saved model loaded again:
        # a copy in the run folder, measured before anything appears among the user's models
        adapted = models.load_model(save_finetuned(base, tuned, folder=Path(run) / name, card=card), config=config)
        after = evaluate_takes(adapted, held_out, speaker=session.user)
        tell(Progress("after", len(held_out), len(held_out)))
    if cancel.is_set():  # pressed while the adapted model was measured
        return result()
    tell(Progress("saving", 0, 1))
    metrics = {
        "base_model": base.name,
        "adapt_steps": steps,
        "adapt_seconds": round(train_s, 1),
        "held_out": {
            "utterances": len(held_out),
            "wer_before": round(before.corpus.wer, 4),
            "wer_after": round(after.corpus.wer, 4),
            "manifest": str(session.folder / "held_out.tsv"),
        },
    }
    folder = save_finetuned(
        base,
        tuned,
        folder=models_root / name,
        card=dataclasses.replace(card, metrics=metrics),
        run={"encode_s": round(encode_s, 1), "train_s": round(train_s, 1)},
    )
    tell(Progress("done", 1, 1))
    return result(after, folder)

"""Training a Keras CTC model: AdamW with warm-up and cosine decay, clipping, checkpoints, resume.

A run directory holds ``checkpoint.npz`` (network, optimiser, step, and position in the pass over
the data, every ``checkpoint_every`` steps), ``snapshots/`` (the network weights of the latest
checkpoints, for :func:`average_snapshots`), ``history.jsonl`` (one line per logged step) and
``best/`` (a model folder, rewritten whenever the dev WER improves). Running again on the same
directory resumes where the last checkpoint stopped, with the batches that would have come next,
so a run may be interrupted at any moment.
"""

from __future__ import annotations

import dataclasses
import json
import math
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
from asrkit.audio import load_audio
from asrkit.contracts import ModelCard
from asrkit.data.augment import Augmenter
from asrkit.data.dataset import MAX_BATCH_FRAMES, MAX_BATCH_SIZE, SHAPE_BUCKETS, FeatureCache, Source, batches
from asrkit.decoding import DecoderConfig, beam_search
from asrkit.features import FRAMES_PER_SECOND
from asrkit.lm import NGramLM
from asrkit.manifest import read_manifest
from asrkit.metrics import score_corpus
from asrkit.models.ctc import CTCModelConfig
from asrkit.models.keras_ctc import WEIGHTS_FILE, KerasCTCModel, build_network
from asrkit.text import BLANK_ID, CharTokenizer

LM_FILE = "lm.arpa.gz"
# utterances of each dev manifest that choose checkpoints: enough for a stable WER, few enough to score in seconds
DEV_PER_MANIFEST = 100
CHECKPOINT_FILE = "checkpoint.npz"
# network weights saved with each checkpoint, for averaging (see average_snapshots)
SNAPSHOT_DIR = "snapshots"
# What `asrkit train --strategy` accepts (see distribution()).
STRATEGIES = ("none", "mirrored")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings, saved with every run."""

    # optimiser steps in all; a resumed run continues towards this count
    steps: int = 3000
    # learning rate after warm-up
    peak_lr: float = 1e-3
    # steps of linear warm-up from 0
    warmup_steps: int = 300
    # the cosine decay ends at peak_lr times this
    final_lr_fraction: float = 0.05
    # AdamW's decoupled weight decay
    weight_decay: float = 1e-3
    # global gradient norm limit
    clip_norm: float = 5.0
    # padded feature frames per batch
    max_batch_frames: int = MAX_BATCH_FRAMES
    # utterances per batch at most
    max_batch_size: int = MAX_BATCH_SIZE
    # steps between progress records in history.jsonl
    log_every: int = 50
    # steps between checkpoints
    checkpoint_every: int = 200
    # network weights of this many latest checkpoints kept in snapshots/ for averaging
    keep_snapshots: int = 5
    # steps between dev evaluations (and best-model saves)
    eval_every: int = 300
    # evaluations without dev improvement before stopping early
    patience: int = 6
    # seed for initialisation and batch order
    seed: int = 0
    # compute in float16 with float32 weights (faster on GPUs, not on CPUs)
    mixed_precision: bool = False


class LearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then cosine decay to ``final_fraction`` of the peak."""

    def __init__(self, peak: float, warmup: int, total: int, final_fraction: float) -> None:
        self.peak, self.warmup, self.total, self.final_fraction = peak, warmup, total, final_fraction

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        warm = step / max(self.warmup, 1)
        progress = ops.clip((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
        cosine = self.final_fraction + (1 - self.final_fraction) * 0.5 * (1 + ops.cos(math.pi * progress))
        return self.peak * ops.where(step < self.warmup, warm, cosine)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total, "final_fraction": self.final_fraction}


def ctc_loss(y_true, logits):
    """Per-utterance CTC loss divided by its label count.

    ``y_true`` (batch, 1 + max_labels) packs each utterance's output frame count in column 0 and its
    zero-padded label ids after it (ids start at 1: 0 is the blank), so Keras's own train step can
    fit the network on any backend.
    """
    ops = keras.ops
    # Keras hands y_true over as float, with a trailing axis when its rank differs from the logits'
    y_true = ops.cast(ops.reshape(y_true, (ops.shape(y_true)[0], -1)), "int32")
    out_len, labels = y_true[:, 0], y_true[:, 1:]
    label_len = ops.sum(ops.cast(ops.not_equal(labels, 0), "int32"), axis=1)
    loss = ops.ctc_loss(labels, ops.cast(logits, "float32"), label_len, out_len, mask_index=BLANK_ID)
    return loss / ops.cast(label_len, "float32")


def distribution(name: str):
    """The ``tf.distribute`` strategy that ``--strategy`` names; :func:`run` trains under its scope.

    "none" is TensorFlow's default strategy (one device). "mirrored" is a ``MirroredStrategy`` with a
    replica of the network on every GPU, or on every logical CPU device where there is no GPU: one,
    unless ``tf.config.set_logical_device_configuration`` split the CPU before TensorFlow started.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "none":
        return tf.distribute.get_strategy()
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"strategy {name!r} needs Keras's TensorFlow backend, not {keras.backend.backend()!r}")
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _replicas() -> int:
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def for_replicas(config: TrainConfig, replicas: int) -> TrainConfig:
    """The settings for ``replicas`` devices: each replica keeps the single-device batch, so the global
    batch limits and the peak learning rate grow by the replica count (the linear scaling rule; the
    warm-up, unchanged in steps, keeps the larger rate stable). Steps stay: each sees ``replicas`` times
    the audio."""
    if replicas == 1:
        return config
    return dataclasses.replace(
        config,
        peak_lr=config.peak_lr * replicas,
        max_batch_frames=config.max_batch_frames * replicas,
        max_batch_size=config.max_batch_size * replicas,
    )


def replicated_step(network: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """One optimiser step under the current strategy, the batch split into one slice per replica; its loss.

    Each slice's utterances are weighted by replicas x slice size / batch size, so the gradients the
    replicas sum are those of the mean loss over the whole batch, as on one device, also when the batch
    does not divide evenly. A batch smaller than the replica count goes whole to every replica, whose
    identical gradients Keras averages.
    """
    replicas = _replicas()
    if replicas == 1 or len(x) < replicas:
        return float(network.train_on_batch(x, y))
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    parts = np.array_split(np.arange(len(x)), replicas)

    def replica_batch(context):
        part = parts[context.replica_id_in_sync_group]
        weight = np.full(len(part), replicas * len(part) / len(x), np.float32)
        with tf.device(strategy.extended.worker_devices[context.replica_id_in_sync_group]):
            return tf.constant(x[part]), tf.constant(y[part]), tf.constant(weight)

    network.make_train_function()
    network.reset_metrics()
    logs = network.train_function(iter([strategy.experimental_distribute_values_from_function(replica_batch)]))
    return float(keras.ops.convert_to_numpy(logs["loss"]))


def _prefetched(items: Iterator, depth: int = 4) -> Iterator:
    """``items`` produced by a background thread up to ``depth`` ahead, so SpecAugment and padding
    overlap the training step instead of following it. Closing the iterator stops the thread."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stopped.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        pass
                if stopped.is_set():
                    return
            item = end
        except Exception as error:  # handed to the consumer, which raises it
            item = error
        while not stopped.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    threading.Thread(target=produce, daemon=True).start()
    try:
        while (item := buffer.get()) is not end:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stopped.set()


def _network_arrays(network: keras.Model) -> dict[str, np.ndarray]:
    """The network's weights as ``network_0``, ``network_1``, ... in a checkpoint or snapshot file."""
    return {f"network_{i}": w for i, w in enumerate(network.get_weights())}


def _save_npz(path: Path, **arrays) -> None:
    """``np.savez`` under a temporary name first, so an interruption never leaves half a file at ``path``."""
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


class _Checkpoint:
    """Network and optimiser variables plus loop counters in one ``.npz``, written atomically.

    Plain arrays rather than a framework checkpoint, so a run started on one Keras backend (JAX
    on a GPU machine) resumes on another (TensorFlow here).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, network: keras.Model, optimizer: keras.optimizers.Optimizer, counters: dict) -> None:
        arrays = _network_arrays(network)
        arrays |= {f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)}
        _save_npz(self.path, counters=json.dumps(counters), **arrays)

    def restore(self, network: keras.Model, optimizer: keras.optimizers.Optimizer) -> dict:
        with np.load(self.path) as data:
            network.set_weights([data[f"network_{i}"] for i in range(len(network.weights))])
            for i, variable in enumerate(optimizer.variables):
                variable.assign(data[f"optimizer_{i}"])
            return json.loads(str(data["counters"]))


def _save_snapshot(run_dir: Path, network: keras.Model, step: int, keep: int) -> None:
    folder = run_dir / SNAPSHOT_DIR
    folder.mkdir(exist_ok=True)
    _save_npz(folder / f"step-{step:07d}.npz", **_network_arrays(network))
    for old in sorted(folder.glob("step-???????.npz"))[:-keep]:
        old.unlink()


def train(
    run_dir: str | Path,
    *,
    cache: FeatureCache,
    dev: Sequence[tuple[np.ndarray, str]],
    model_config: CTCModelConfig,
    config: TrainConfig = TrainConfig(),
    name: str = "asrkit-ctc",
    training_data: str = "",
    max_minutes: float | None = None,
    init_from: str | Path | None = None,
    trainable_layers: Collection[str] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    cancel: threading.Event | None = None,
    progress: bool = True,
) -> Path:
    """Train (or resume) a model in ``run_dir``; returns the folder of the best model so far.

    Runs on whichever Keras backend is active: TensorFlow by default, JAX on a GPU machine
    (``KERAS_BACKEND=jax``); a run's checkpoint resumes on either.

    Parameters
    ----------
    cache : FeatureCache
        Training examples.
    dev : sequence of (audio, reference text)
        Held-out utterances scored with greedy decoding every ``eval_every`` steps.
    max_minutes : float, optional
        Stop (after a checkpoint) once this much wall time has passed; run again to continue.
    init_from : path, optional
        A model folder with the same architecture whose weights a fresh run starts from (a
        committed model continues training on a machine that has lost the run's checkpoints). Its
        input normalisation is kept, since its weights were learned for it.
    trainable_layers : collection of str, optional
        Names of the layers to train (None: all); the others keep their weights (fine-tuning the last
        layers on a little data, as personal adaptation does).
    on_step : callable, optional
        ``on_step(step, loss)`` after every optimiser step, on the training thread.
    cancel : threading.Event, optional
        Set from another thread to stop after the current step, checkpointed and saved as ``last``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # under a strategy's scope (run(strategy="mirrored")), every step is split across its replicas
    config = for_replicas(config, _replicas())
    (run_dir / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")

    start = (
        keras.saving.load_model(Path(init_from) / WEIGHTS_FILE, compile=False, safe_mode=True) if init_from else None
    )
    if start is not None:
        normalize = start.get_layer("normalize").get_config()
        mean, std = np.asarray(normalize["mean"], np.float32), np.sqrt(np.asarray(normalize["variance"], np.float32))
    else:
        sample = cache.features[:: max(1, len(cache.features) // 200_000)].astype(np.float32)
        mean, std = sample.mean(axis=0), sample.std(axis=0) + 1e-5
    network = build_network(model_config, feature_mean=mean, feature_std=std)
    if trainable_layers is not None:
        unknown = set(trainable_layers) - {layer.name for layer in network.layers}
        if unknown:
            raise ValueError(
                f"no layer named {', '.join(sorted(unknown))}; "
                f"the network has {', '.join(layer.name for layer in network.layers)}"
            )
        for layer in network.layers:
            layer.trainable = layer.name in trainable_layers
    optimizer = keras.optimizers.AdamW(
        LearningRate(config.peak_lr, config.warmup_steps, config.steps, config.final_lr_fraction),
        weight_decay=config.weight_decay,
        global_clipnorm=config.clip_norm,
    )
    # XLA compiles one program per shape: worth it for JAX's fixed-shape batches, while TensorFlow's
    # own graph runs any batch shape without recompiling
    network.compile(optimizer=optimizer, loss=ctc_loss, jit_compile=keras.backend.backend() == "jax")
    optimizer.build(network.trainable_variables)
    checkpoint = _Checkpoint(run_dir / CHECKPOINT_FILE)
    # epoch_batches: batches of the current pass already trained on, skipped when resuming
    counters = {"epoch": 0, "epoch_batches": 0, "best_wer": math.inf, "stale_evals": 0}
    if checkpoint.path.exists():
        # checkpoints written before epoch_batches existed resume at the start of their pass
        counters |= checkpoint.restore(network, optimizer)
    elif start is not None:
        network.set_weights(start.get_weights())

    def card(metrics: dict) -> ModelCard:
        return ModelCard(
            name=name,
            description=f"{network.count_params():,}-parameter causal conv + GRU character CTC model "
            f"({model_config.lookahead_frames * model_config.frame_duration_s * 1000:.0f} ms look-ahead)",
            trained=True,
            training_data=training_data,
            metrics=metrics,
            config=model_config.to_dict(),
        )

    def evaluate_dev() -> float:
        model = KerasCTCModel(network, card({}), batch_size=16)
        hyps = [t.text for t in model.transcribe_batch([a for a, _ in dev])]
        return score_corpus([r for _, r in dev], hyps).wer

    # XLA (the JAX backend) compiles one program per batch shape: a few fixed shapes keep that to
    # a handful of compilations; TensorFlow's graph takes any shape, so nothing is padded there
    buckets = SHAPE_BUCKETS if keras.backend.backend() == "jax" else None
    history = (run_dir / "history.jsonl").open("a")
    fill = mean.astype(np.float32)  # SpecAugment's masks take the mean, which normalises to 0
    started = time.monotonic()
    step = int(keras.ops.convert_to_numpy(optimizer.iterations))
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="training", disable=not progress)
    audio_s, window_start, losses = 0.0, time.monotonic(), []
    stop = step >= config.steps or counters["stale_evals"] >= config.patience
    while not stop:
        rng = np.random.default_rng(config.seed * 1000 + counters["epoch"])
        skipped = counters["epoch_batches"]
        epoch = batches(
            cache,
            rng=rng,
            max_frames=config.max_batch_frames,
            max_size=config.max_batch_size,
            fill=fill,
            buckets=buckets,
            start=skipped,
        )
        trained = step
        for x, x_len, y, _y_len in _prefetched(epoch):
            out_len = np.array([model_config.output_length(n) for n in x_len], np.int32)
            losses.append(replicated_step(network, x, np.concatenate([out_len[:, None], y], axis=1)))
            audio_s += float(x_len.sum()) / FRAMES_PER_SECOND
            step += 1
            counters["epoch_batches"] += 1
            bar.update(1)
            if on_step is not None:
                on_step(step, losses[-1])
            if step % config.log_every == 0:
                speed = audio_s / (time.monotonic() - window_start)
                lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
                record = {
                    "step": step,
                    "epoch": counters["epoch"],
                    "loss": float(np.mean(losses)),
                    "lr": lr,
                    "x_realtime": speed,
                    "minutes": (time.monotonic() - started) / 60,
                }
                bar.set_postfix(loss=f"{record['loss']:.3f}", xRT=f"{speed:.0f}")
                history.write(json.dumps(record) + "\n")
                history.flush()
                audio_s, window_start, losses = 0.0, time.monotonic(), []
            if step % config.eval_every == 0:
                wer = evaluate_dev()
                history.write(json.dumps({"step": step, "dev_wer": wer}) + "\n")
                history.flush()
                if wer < counters["best_wer"]:
                    counters["best_wer"], counters["stale_evals"] = wer, 0
                    KerasCTCModel(network, card({"dev_wer_greedy": round(wer, 4), "step": step})).save(run_dir / "best")
                else:
                    counters["stale_evals"] += 1
            out_of_time = max_minutes is not None and time.monotonic() - started > max_minutes * 60
            interrupted = out_of_time or (cancel is not None and cancel.is_set())
            if step % config.checkpoint_every == 0 or interrupted or step >= config.steps:
                checkpoint.save(network, optimizer, counters)
                if config.keep_snapshots:
                    _save_snapshot(run_dir, network, step, config.keep_snapshots)
            if interrupted or step >= config.steps or counters["stale_evals"] >= config.patience:
                stop = True
                break
        else:
            if step == trained and not skipped:
                raise ValueError(
                    f"a pass over the {len(cache)} training utterances made no batch: fixed-shape batches "
                    f"(backend {keras.backend.backend()}) need at least one full batch per length bucket; "
                    "lower max_batch_frames or max_batch_size"
                )
            counters["epoch"] += 1
            counters["epoch_batches"] = 0
    bar.close()
    history.close()
    KerasCTCModel(network, card({"step": step})).save(run_dir / "last")
    return run_dir / "best"


def source_cache(
    source: Source,
    cache_dir: Path,
    *,
    model_config: CTCModelConfig,
    noise_dir: Path | None,
    seed: int = 0,
    jobs: int = 1,
) -> FeatureCache:
    """One source's features: loaded from ``cache_dir/<source.key>`` or computed and saved there."""
    folder = cache_dir / source.key
    if (folder / "offsets.npy").exists():
        return FeatureCache.load(folder)
    cache = FeatureCache.build(
        [source],
        features=model_config.features,
        tokenizer=CharTokenizer(model_config.alphabet),
        output_length=model_config.output_length,
        augment=Augmenter(noise_dir),
        seed=seed,
        jobs=jobs,
    )
    cache.save(folder)
    return cache


def dev_set(
    manifests: Sequence[str | Path], *, per_manifest: int | None = DEV_PER_MANIFEST
) -> list[tuple[np.ndarray, str]]:
    """Held-out utterances for early stopping: the first ``per_manifest`` of each manifest (None: all).

    Keep the set a model is finally judged on out of them: choosing checkpoints on it would tune to it.
    """
    return [
        (load_audio(utt.audio_path), utt.transcript)
        for manifest in manifests
        for utt in read_manifest(manifest)[:per_manifest]
    ]


def run(
    run_dir: str | Path,
    *,
    sources: Sequence[Source],
    dev: Sequence[str | Path],
    noise_dir: str | Path | None = None,
    dev_per_manifest: int | None = DEV_PER_MANIFEST,
    model_config: CTCModelConfig = CTCModelConfig(),
    config: TrainConfig = TrainConfig(),
    name: str = "asrkit-ctc",
    max_minutes: float | None = None,
    cache_dir: str | Path | None = None,
    init_from: str | Path | None = None,
    jobs: int = 1,
    strategy: str = "none",
) -> Path:
    """Build (once, in ``jobs`` processes) the feature caches of ``sources``, then train or resume in ``run_dir``.

    ``dev`` are the manifests whose first ``dev_per_manifest`` utterances choose the best checkpoint (see
    :func:`dev_set`). ``noise_dir`` (noise clips and ``rir_simulated/``) feeds the augmented copies; without it
    they are only sped up or slowed down and their gain varied.
    ``cache_dir`` (default ``run_dir/features``) can be shared by runs with the same features.
    ``strategy`` (see :func:`distribution`) trains on several devices, scaled by :func:`for_replicas`.
    """
    if not sources:
        raise ValueError("no training sources: give at least one manifest to learn from")
    if not dev:
        raise ValueError("no dev manifest: give at least one to choose the best checkpoint on")
    run_dir = Path(run_dir)
    cache = FeatureCache.concat(
        [
            source_cache(
                source,
                Path(cache_dir) if cache_dir else run_dir / "features",
                model_config=model_config,
                noise_dir=Path(noise_dir) if noise_dir is not None else None,
                seed=config.seed,
                jobs=jobs,
            )
            for source in sources
        ]
    )
    described = "; ".join(
        f"{s.manifest.parent.name}/{s.manifest.name}"
        + (" clean" if s.clean else "")
        + (f" + {s.copies} augmented" if s.copies else "")
        for s in sources
    )
    augmentation = f"noise and RIRs from {Path(noise_dir).name}/" if noise_dir is not None else "no noise or RIRs"
    training_data = f"{described} ({cache.hours:.1f} h of features in all, {augmentation})"
    with distribution(strategy).scope():
        return train(
            run_dir,
            cache=cache,
            dev=dev_set(dev, per_manifest=dev_per_manifest),
            model_config=model_config,
            config=config,
            name=name,
            training_data=training_data,
            max_minutes=max_minutes,
            init_from=init_from,
        )


def tune_decoder(
    model: KerasCTCModel,
    lm: NGramLM,
    dev: Sequence[tuple[np.ndarray, str]],
    *,
    alphas: Sequence[float] = (0.3, 0.5, 0.8, 1.2),
    betas: Sequence[float] = (0.0, 1.0, 2.0),
    closed_vocabulary: Sequence[bool] = (False, True),
    beam_width: int = 16,
    progress: bool = True,
) -> tuple[DecoderConfig, list[dict]]:
    """Grid-search the language model's weight, the word bonus and whether words are limited to the
    LM's vocabulary, on held-out utterances.

    The network runs once per utterance; only decoding repeats. Returns the best setting (its
    ``lm`` names the file the model folder will hold) and every setting's dev WER.
    """
    logits = [model.logits([model.features(audio)])[0] for audio, _ in dev]
    refs = [text for _, text in dev]
    grid = [
        DecoderConfig(lm=LM_FILE, alpha=a, beta=b, beam_width=beam_width, closed_vocabulary=c)
        for c in closed_vocabulary
        for a in alphas
        for b in betas
    ]
    results = []
    for config in tqdm(grid, desc="tuning decoder", disable=not progress):
        hyps = [
            beam_search(
                l, tokenizer=model.tokenizer, frame_duration_s=model.config.frame_duration_s, lm=lm, config=config
            )[0]
            for l in logits
        ]
        results.append({"config": config, "wer": score_corpus(refs, hyps).wer})
    best = min(results, key=lambda r: r["wer"])
    return best["config"], results


def with_decoder(model: KerasCTCModel, lm: NGramLM | None, decoder: DecoderConfig, *, name: str) -> KerasCTCModel:
    """The same network under a new name, decoding as ``decoder`` says."""
    config = dataclasses.replace(model.config, decoder=decoder)
    card = dataclasses.replace(model.card, name=name, config=config.to_dict())
    return KerasCTCModel(model.network, card, lm=lm)


def average_snapshots(run_dir: str | Path, out: str | Path, *, last: int = 5, name: str | None = None) -> Path:
    """Save a model folder whose weights are the mean of the run's ``last`` latest snapshots.

    Averaging the weights of nearby checkpoints smooths the noise of the last updates, as in
    Vaswani et al. (2017); the architecture and card come from the run's ``best/`` model.

    Usage
    -----
    ::

        average_snapshots("runs/ctc", "models/ctc-avg", last=3)
        # PosixPath('models/ctc-avg')
    """
    run_dir = Path(run_dir)
    files = sorted((run_dir / SNAPSHOT_DIR).glob("step-???????.npz"))[-last:]
    if last < 1 or not files:
        raise ValueError(f"{run_dir / SNAPSHOT_DIR} has no snapshots to average (last={last})")
    if not (run_dir / "best" / WEIGHTS_FILE).exists():
        raise FileNotFoundError(f"{run_dir / 'best'} holds no model: a run saves one at its first dev evaluation")
    model = KerasCTCModel.load(run_dir / "best", device="cpu")
    count = len(model.network.weights)
    total = [np.zeros(w.shape, np.float64) for w in model.network.get_weights()]
    for file in files:
        with np.load(file) as data:
            if len(data.files) != count:
                raise ValueError(f"{file} holds {len(data.files)} arrays, the network {count}: not this run's")
            for i in range(count):
                total[i] += data[f"network_{i}"]
    model.network.set_weights([(t / len(files)).astype(w.dtype) for t, w in zip(total, model.network.get_weights())])
    steps = [int(f.stem.removeprefix("step-")) for f in files]
    card = dataclasses.replace(
        model.card, name=name or Path(out).name, metrics={"step": steps[-1], "averaged_steps": steps}
    )
    return KerasCTCModel(model.network, card).save(out)

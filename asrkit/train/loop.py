"""The training loop of a Keras CTC model: AdamW with warm-up and cosine decay, clipping, checkpoints, resume."""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)

import keras
import numpy as np
from tqdm.auto import tqdm

from asrkit.contracts import ModelCard
from asrkit.data.dataset import SHAPE_BUCKETS, FeatureCache, batches
from asrkit.features import FRAMES_PER_SECOND
from asrkit.metrics import score_corpus
from asrkit.models.ctc import CTCModelConfig
from asrkit.models.keras_ctc import WEIGHTS_FILE, KerasCTCModel, build_network
from asrkit.text import BLANK_ID
from asrkit.train.checkpoints import CHECKPOINT_FILE, Checkpoint, save_snapshot
from asrkit.train.config import LearningRate, TrainConfig
from asrkit.train.replicas import for_replicas, replica_count, replicated_step


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


def _normalisation(cache: FeatureCache, start: keras.Model | None) -> tuple[np.ndarray, np.ndarray]:
    """Feature mean and standard deviation for the input layer: the starting model's, since its weights
    were learned for them, else those of a sample of the training features."""
    if start is not None:
        normalize = start.get_layer("normalize").get_config()
        return np.asarray(normalize["mean"], np.float32), np.sqrt(np.asarray(normalize["variance"], np.float32))
    sample = cache.features[:: max(1, len(cache.features) // 200_000)].astype(np.float32)
    return sample.mean(axis=0), sample.std(axis=0) + 1e-5


def _train_only(network: keras.Model, layers: Collection[str]) -> None:
    """Freeze every layer of ``network`` but those named in ``layers``."""
    unknown = set(layers) - {layer.name for layer in network.layers}
    if unknown:
        raise ValueError(
            f"no layer named {', '.join(sorted(unknown))}; "
            f"the network has {', '.join(layer.name for layer in network.layers)}"
        )
    for layer in network.layers:
        layer.trainable = layer.name in layers


def _compile(network: keras.Model, config: TrainConfig) -> keras.optimizers.Optimizer:
    """Compile ``network`` with the CTC loss and a built AdamW optimiser (built, so a checkpoint can restore it)."""
    optimizer = keras.optimizers.AdamW(
        LearningRate(config.peak_lr, config.warmup_steps, config.steps, config.final_lr_fraction),
        weight_decay=config.weight_decay,
        global_clipnorm=config.clip_norm,
    )
    # XLA compiles one program per shape: worth it for JAX's fixed-shape batches, while TensorFlow's
    # own graph runs any batch shape without recompiling
    network.compile(optimizer=optimizer, loss=ctc_loss, jit_compile=keras.backend.backend() == "jax")
    optimizer.build(network.trainable_variables)
    return optimizer


class _History:
    """``history.jsonl``: the mean loss and speed over every ``log_every`` steps, and each dev WER."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a")
        self.started = time.monotonic()
        self._window()

    def _window(self) -> None:
        self.audio_s, self.window_start, self.losses = 0.0, time.monotonic(), []

    def add(self, loss: float, audio_s: float) -> None:
        self.losses.append(loss)
        self.audio_s += audio_s

    def log(self, *, step: int, epoch: int, lr: float) -> dict:
        """Write the window's record and start the next window; returns the record."""
        record = {
            "step": step,
            "epoch": epoch,
            "loss": float(np.mean(self.losses)),
            "lr": lr,
            "x_realtime": self.audio_s / (time.monotonic() - self.window_start),
            "minutes": self.minutes(),
        }
        self._write(record)
        self._window()
        return record

    def dev(self, *, step: int, wer: float) -> None:
        self._write({"step": step, "dev_wer": wer})

    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def _write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


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
    config = for_replicas(config, replica_count())
    (run_dir / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")

    start = (
        keras.saving.load_model(Path(init_from) / WEIGHTS_FILE, compile=False, safe_mode=True) if init_from else None
    )
    mean, std = _normalisation(cache, start)
    network = build_network(model_config, feature_mean=mean, feature_std=std)
    if trainable_layers is not None:
        _train_only(network, trainable_layers)
    optimizer = _compile(network, config)
    checkpoint = Checkpoint(run_dir / CHECKPOINT_FILE)
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
    history = _History(run_dir / "history.jsonl")
    fill = mean.astype(np.float32)  # SpecAugment's masks take the mean, which normalises to 0
    step = int(keras.ops.convert_to_numpy(optimizer.iterations))
    bar = tqdm(total=config.steps, initial=step, unit="step", desc="training", disable=not progress)
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
            loss = replicated_step(network, x, np.concatenate([out_len[:, None], y], axis=1))
            history.add(loss, float(x_len.sum()) / FRAMES_PER_SECOND)
            step += 1
            counters["epoch_batches"] += 1
            bar.update(1)
            if on_step is not None:
                on_step(step, loss)
            if step % config.log_every == 0:
                lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
                record = history.log(step=step, epoch=counters["epoch"], lr=lr)
                bar.set_postfix(loss=f"{record['loss']:.3f}", xRT=f"{record['x_realtime']:.0f}")
            if step % config.eval_every == 0:
                wer = evaluate_dev()
                history.dev(step=step, wer=wer)
                if wer < counters["best_wer"]:
                    counters["best_wer"], counters["stale_evals"] = wer, 0
                    KerasCTCModel(network, card({"dev_wer_greedy": round(wer, 4), "step": step})).save(run_dir / "best")
                else:
                    counters["stale_evals"] += 1
            out_of_time = max_minutes is not None and history.minutes() > max_minutes
            interrupted = out_of_time or (cancel is not None and cancel.is_set())
            if step % config.checkpoint_every == 0 or interrupted or step >= config.steps:
                checkpoint.save(network, optimizer, counters)
                if config.keep_snapshots:
                    save_snapshot(run_dir, network, step, config.keep_snapshots)
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

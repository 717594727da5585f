"""A training run's optimisation settings and learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)

import keras

from asrkit.data.dataset import MAX_BATCH_FRAMES, MAX_BATCH_SIZE


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

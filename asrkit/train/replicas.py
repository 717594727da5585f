"""Training on several devices: ``tf.distribute`` strategies and the settings and steps that scale with them."""

from __future__ import annotations

import dataclasses

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)

import keras
import numpy as np

from asrkit.train.config import TrainConfig

# What `asrkit train --strategy` accepts (see distribution()).
STRATEGIES = ("none", "mirrored")


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


def replica_count() -> int:
    """Replicas of the current strategy (1 outside TensorFlow)."""
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
    replicas = replica_count()
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

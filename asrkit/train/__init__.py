"""Training a Keras CTC model: AdamW with warm-up and cosine decay, clipping, checkpoints, resume.

A run directory holds ``checkpoint.npz`` (network, optimiser, step, and position in the pass over
the data, every ``checkpoint_every`` steps), ``snapshots/`` (the network weights of the latest
checkpoints, for :func:`average_snapshots`), ``history.jsonl`` (one line per logged step) and
``best/`` (a model folder, rewritten whenever the dev WER improves). Running again on the same
directory resumes where the last checkpoint stopped, with the batches that would have come next,
so a run may be interrupted at any moment.

Modules: ``config`` (settings and schedule), ``loop`` (:func:`train`), ``runs`` (:func:`run`, from
manifests), ``checkpoints`` (and :func:`average_snapshots`), ``replicas`` (several devices) and
``decoder`` (:func:`tune_decoder` of a language model's weight).
"""

from asrkit.train.checkpoints import CHECKPOINT_FILE, SNAPSHOT_DIR, average_snapshots
from asrkit.train.config import LearningRate, TrainConfig
from asrkit.train.decoder import LM_FILE, tune_decoder, with_decoder
from asrkit.train.loop import ctc_loss, train
from asrkit.train.replicas import STRATEGIES, distribution, for_replicas, replica_count, replicated_step
from asrkit.train.runs import DEV_PER_MANIFEST, dev_set, run, source_cache

__all__ = [
    "CHECKPOINT_FILE",
    "DEV_PER_MANIFEST",
    "LM_FILE",
    "SNAPSHOT_DIR",
    "STRATEGIES",
    "LearningRate",
    "TrainConfig",
    "average_snapshots",
    "ctc_loss",
    "dev_set",
    "distribution",
    "for_replicas",
    "replica_count",
    "replicated_step",
    "run",
    "source_cache",
    "train",
    "tune_decoder",
    "with_decoder",
]

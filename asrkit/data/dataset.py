"""Training examples: features computed once (with augmented copies), then length-bucketed batches."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from asrkit.audio import AudioError, load_audio
from asrkit.data.augment import spec_augment
from asrkit.features import FRAMES_PER_SECOND, FeatureConfig, compute_features
from asrkit.manifest import read_manifest
from asrkit.text import CharTokenizer, normalize_text

# Batches are padded to their longest member; a budget in padded frames keeps memory flat whatever
# the lengths (32 utterances of 10 s = 32,000 frames).
MAX_BATCH_FRAMES = 32_000
MAX_BATCH_SIZE = 64
# Padded lengths (feature frames) when batches must come in a few fixed shapes (XLA compiles one
# program per shape); longer utterances are left out of such batches.
SHAPE_BUCKETS = (256, 384, 512, 768, 1024, 1536, 2048, 3072)


@dataclass(frozen=True)
class Source:
    """A manifest and how many times each of its utterances enters the training set."""

    manifest: Path
    # also include each utterance unaugmented
    clean: bool = True
    # augmented copies of each utterance
    copies: int = 0
    # only the manifest's first utterances (None: all), for quick experiments
    limit: int | None = None

    @property
    def key(self) -> str:
        """A folder name for this source's cached features."""
        first = f"-first{self.limit}" if self.limit is not None else ""
        clean = "clean" if self.clean else "noclean"
        return f"{self.manifest.parent.name}-{self.manifest.stem}{first}-{clean}-{self.copies}aug"


def ctc_feasible(n_out: int, labels: np.ndarray) -> bool:
    """Whether CTC can align ``labels`` to ``n_out`` frames: repeats need a blank between them."""
    repeats = int(np.sum(labels[1:] == labels[:-1])) if len(labels) > 1 else 0
    return 0 < len(labels) and len(labels) + repeats <= n_out


class FeatureCache:
    """Features (float16) and label ids of many utterances, held as two flat arrays plus offsets."""

    def __init__(self, features: np.ndarray, offsets: np.ndarray, labels: np.ndarray, label_offsets: np.ndarray):
        self.features, self.offsets = features, offsets
        self.labels, self.label_offsets = labels, label_offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def hours(self) -> float:
        return len(self.features) / FRAMES_PER_SECOND / 3600

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Features (n_frames, n_features) float32 and label ids (n_labels,) of example ``i``."""
        return (
            self.features[self.offsets[i] : self.offsets[i + 1]].astype(np.float32),
            self.labels[self.label_offsets[i] : self.label_offsets[i + 1]],
        )

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("features", "offsets", "labels", "label_offsets"):
            np.save(folder / f"{name}.npy", getattr(self, name))

    @classmethod
    def concat(cls, caches: Sequence[FeatureCache]) -> FeatureCache:
        """All examples of several caches in one."""
        offsets = [caches[0].offsets[:1]] + [
            c.offsets[1:] + sum(len(p.features) for p in caches[:i]) for i, c in enumerate(caches)
        ]
        label_offsets = [caches[0].label_offsets[:1]] + [
            c.label_offsets[1:] + sum(len(p.labels) for p in caches[:i]) for i, c in enumerate(caches)
        ]
        return cls(
            np.concatenate([c.features for c in caches]),
            np.concatenate(offsets),
            np.concatenate([c.labels for c in caches]),
            np.concatenate(label_offsets),
        )

    @classmethod
    def load(cls, folder: str | Path) -> FeatureCache:
        folder = Path(folder)
        return cls(*(np.load(folder / f"{n}.npy") for n in ("features", "offsets", "labels", "label_offsets")))

    @classmethod
    def build(
        cls,
        sources: Sequence[Source],
        *,
        features: FeatureConfig,
        tokenizer: CharTokenizer,
        output_length: Callable[[int], int],
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        seed: int = 0,
        jobs: int = 1,
        progress: bool = True,
    ) -> FeatureCache:
        """Compute features of every source utterance (and its augmented copies) in ``jobs`` processes.

        Utterances that cannot be read, or whose transcript CTC cannot fit into their output
        frames, are skipped. Utterance ``i`` is augmented with a generator seeded by ``(seed, i)``,
        so the cache is the same for any ``jobs``.
        """
        tasks = [
            (utt.audio_path, utt.transcript, source.clean, source.copies if augment else 0)
            for source in sources
            for utt in read_manifest(source.manifest)[: source.limit]
        ]
        work = _Featurizer(features, tokenizer, output_length, augment, seed)
        feats: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        # forked workers share the augmenter's noise clips instead of unpickling a copy each
        workers = (
            ProcessPoolExecutor(
                jobs, mp_context=multiprocessing.get_context("fork"), initializer=_install, initargs=(work,)
            )
            if jobs > 1
            else contextlib.nullcontext()
        )
        with workers as pool:
            done = pool.map(_featurize, enumerate(tasks), chunksize=16) if pool else map(work, enumerate(tasks))
            for versions in tqdm(done, total=len(tasks), desc="features", unit="utt", disable=not progress):
                for f, ids in versions:
                    feats.append(f)
                    labels.append(ids)
        offsets = np.concatenate([[0], np.cumsum([len(f) for f in feats])]).astype(np.int64)
        label_offsets = np.concatenate([[0], np.cumsum([len(l) for l in labels])]).astype(np.int64)
        return cls(np.concatenate(feats), offsets, np.concatenate(labels), label_offsets)


_worker_featurizer: _Featurizer | None = None


def _install(work: _Featurizer) -> None:
    global _worker_featurizer
    _worker_featurizer = work


def _featurize(task):
    return _worker_featurizer(task)


@dataclass(frozen=True)
class _Featurizer:
    """One utterance's feature versions (clean and augmented), as a picklable function for workers."""

    features: FeatureConfig
    tokenizer: CharTokenizer
    output_length: Callable[[int], int]
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None
    seed: int

    def __call__(self, task: tuple[int, tuple[Path, str, bool, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        index, (path, transcript, clean, copies) = task
        try:
            audio = load_audio(path)
        except AudioError:
            return []
        ids = np.asarray(self.tokenizer.encode(normalize_text(transcript)), np.int16)
        rng = np.random.default_rng([self.seed, index])
        versions = ([audio] if clean else []) + [self.augment(audio, rng) for _ in range(copies)]
        out = []
        for version in versions:
            f = compute_features(version, config=self.features)
            if ctc_feasible(self.output_length(len(f)), ids):
                out.append((f.astype(np.float16), ids))
        return out


def batches(
    cache: FeatureCache,
    *,
    rng: np.random.Generator,
    max_frames: int = MAX_BATCH_FRAMES,
    max_size: int = MAX_BATCH_SIZE,
    fill: np.ndarray | float = 0.0,
    augment: bool = True,
    buckets: Sequence[int] | None = None,
    start: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """One pass over the cache in random order of length-bucketed batches.

    ``start`` skips the pass's first batches without computing them: a resumed run continues the
    pass it was interrupted in, with the same batches and masks it would have had.

    With ``buckets`` (ascending padded lengths), every batch is padded to a bucket's length, holds
    exactly ``min(max_size, max_frames // length)`` utterances and ``length // 2`` label columns,
    so only ``len(buckets)`` shapes occur; each pass leaves out the remainder of each bucket.

    Yields
    ------
    features : (batch, n_frames, n_features) float32, zero-padded
    feature_lengths : (batch,) int32
    labels : (batch, n_labels) int32, zero-padded
    label_lengths : (batch,) int32
    """
    # sorting by length with a little noise mixes similar lengths differently each pass
    lengths = cache.lengths
    order = np.argsort(lengths + rng.uniform(0, 50, len(cache)))
    groups: list[tuple[list[int], int | None]] = []
    if buckets is None:
        current, longest = [], 0
        for i in order:
            if current and (max(longest, lengths[i]) * (len(current) + 1) > max_frames or len(current) >= max_size):
                groups.append((current, None))
                current, longest = [], 0
            current.append(i)
            longest = max(longest, lengths[i])
        groups.append((current, None))
    else:
        bucket_of = np.searchsorted(np.asarray(buckets), lengths[order])
        for b, length in enumerate(buckets):
            members = order[bucket_of == b]
            size = max(1, min(max_size, max_frames // length))
            groups += [(list(members[k : k + size]), length) for k in range(0, len(members) - size + 1, size)]
    permutation = rng.permutation(len(groups))
    # one seed per batch, so a batch's masks do not depend on the batches skipped before it
    seeds = rng.integers(0, 2**63, len(groups))
    for g, seed in zip(permutation[start:], seeds[start:]):
        members, padded = groups[g]
        items = [cache.example(i) for i in members]
        if augment:
            batch_rng = np.random.default_rng(seed)
            items = [(spec_augment(f, batch_rng, fill=fill), y) for f, y in items]
        x_len = np.array([len(f) for f, _ in items], np.int32)
        y_len = np.array([len(y) for _, y in items], np.int32)
        x = np.zeros((len(items), padded or x_len.max(), items[0][0].shape[1]), np.float32)
        y = np.zeros((len(items), padded // 2 if padded else y_len.max()), np.int32)
        for row, (f, labels) in enumerate(items):
            x[row, : len(f)] = f
            y[row, : len(labels)] = labels
        yield x, x_len, y, y_len

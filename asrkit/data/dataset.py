"""Training examples: features computed once (with augmented copies), then length-bucketed batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
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
        return f"{self.manifest.parent.name}-{self.manifest.stem}{first}-{'clean' if self.clean else 'noclean'}-{self.copies}aug"


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
        offsets = [caches[0].offsets[:1]] + [c.offsets[1:] + sum(len(p.features) for p in caches[:i]) for i, c in enumerate(caches)]
        label_offsets = [caches[0].label_offsets[:1]] + [
            c.label_offsets[1:] + sum(len(p.labels) for p in caches[:i]) for i, c in enumerate(caches)
        ]
        return cls(
            np.concatenate([c.features for c in caches]), np.concatenate(offsets),
            np.concatenate([c.labels for c in caches]), np.concatenate(label_offsets),
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
        augment: Callable[[np.ndarray], np.ndarray] | None = None,
        progress: bool = True,
    ) -> FeatureCache:
        """Compute features of every source utterance (and its augmented copies).

        Utterances that cannot be read, or whose transcript CTC cannot fit into their output
        frames, are skipped.
        """
        feats: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for source in sources:
            utterances = read_manifest(source.manifest)[: source.limit]
            for utt in tqdm(utterances, desc=source.manifest.name, unit="utt", disable=not progress):
                try:
                    audio = load_audio(utt.audio_path)
                except AudioError:
                    continue
                ids = np.asarray(tokenizer.encode(normalize_text(utt.transcript)), np.int16)
                versions = ([audio] if source.clean else []) + [augment(audio) for _ in range(source.copies if augment else 0)]
                for version in versions:
                    f = compute_features(version, config=features)
                    if ctc_feasible(output_length(len(f)), ids):
                        feats.append(f.astype(np.float16))
                        labels.append(ids)
        offsets = np.concatenate([[0], np.cumsum([len(f) for f in feats])]).astype(np.int64)
        label_offsets = np.concatenate([[0], np.cumsum([len(l) for l in labels])]).astype(np.int64)
        return cls(np.concatenate(feats), offsets, np.concatenate(labels), label_offsets)


def batches(
    cache: FeatureCache,
    *,
    rng: np.random.Generator,
    max_frames: int = MAX_BATCH_FRAMES,
    max_size: int = MAX_BATCH_SIZE,
    fill: np.ndarray | float = 0.0,
    augment: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """One pass over the cache in random order of length-bucketed batches.

    Yields
    ------
    features : (batch, max_frames_in_batch, n_features) float32, zero-padded
    feature_lengths : (batch,) int32
    labels : (batch, max_labels_in_batch) int32, zero-padded
    label_lengths : (batch,) int32
    """
    # sorting by length with a little noise mixes similar lengths differently each pass
    lengths = cache.lengths
    order = np.argsort(lengths + rng.uniform(0, 50, len(cache)))
    groups, current, longest = [], [], 0
    for i in order:
        if current and (max(longest, lengths[i]) * (len(current) + 1) > max_frames or len(current) >= max_size):
            groups.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    groups.append(current)
    for g in rng.permutation(len(groups)):
        items = [cache.example(i) for i in groups[g]]
        if augment:
            items = [(spec_augment(f, rng, fill=fill), y) for f, y in items]
        x_len = np.array([len(f) for f, _ in items], np.int32)
        y_len = np.array([len(y) for _, y in items], np.int32)
        x = np.zeros((len(items), x_len.max(), items[0][0].shape[1]), np.float32)
        y = np.zeros((len(items), y_len.max()), np.int32)
        for row, (f, labels) in enumerate(items):
            x[row, : len(f)] = f
            y[row, : len(labels)] = labels
        yield x, x_len, y, y_len

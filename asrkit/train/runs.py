"""A run from manifests: feature caches of the training sources, the dev set, then :func:`~asrkit.train.loop.train`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asrkit.audio import load_audio
from asrkit.data.augment import Augmenter
from asrkit.data.dataset import FeatureCache, Source
from asrkit.manifest import read_manifest
from asrkit.models.ctc import CTCModelConfig
from asrkit.text import CharTokenizer
from asrkit.train.config import TrainConfig
from asrkit.train.loop import train
from asrkit.train.replicas import distribution

# utterances of each dev manifest that choose checkpoints: enough for a stable WER, few enough to score in seconds
DEV_PER_MANIFEST = 100


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

"""Choosing a CTC model's beam-search decoder settings with a language model, on held-out speech."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from asrkit.decoding import DecoderConfig, beam_search
from asrkit.lm import NGramLM
from asrkit.metrics import score_corpus
from asrkit.models.keras_ctc import KerasCTCModel

LM_FILE = "lm.arpa.gz"


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

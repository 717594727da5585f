"""Fine-tuning Whisper's decoder on a CPU: the encoder runs once per clip, its features are kept, and
only the decoder learns.

The encoder is most of Whisper's compute (a 30-s window costs it ~0.25 s on two CPU cores, a decoder
training step on 16 clips ~0.9 s), so each clip (and each augmented copy) is encoded once, into a
float16 features file in the run folder, and the decoder is trained with teacher forcing on those
features. Two ways to learn are offered (:data:`TRAINABLE`):

* ``"decoder"``: every weight of the decoder's blocks and final norm (9.5M for tiny); the token and
  position embeddings stay, so the vocabulary and the output projection are the base's;
* ``"lora"``: low-rank adapters on every dense layer of the decoder (0.28M for tiny at rank 8), saved as
  their two factors and merged into the base's kernels when the model loads: a file small enough to
  ship in a repository.

A run folder holds the encoded features, a checkpoint (the learning weights, the optimiser's state
and the loop's counters), the loss and WER history and the best weights on the held-out part; each is
written under a temporary name and renamed, so an interruption never leaves half a file, and a run
started again with the same folder continues where its last checkpoint left it.

Usage
-----
::

    model = load_model("whisper-tiny.en")
    data = encode_examples(model, audios, texts)
    result = finetune(model, data, held_out, run_dir="runs/digits")
    save_finetuned(model, result, folder="models/whisper-digits", card=card)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL for the TensorFlow imported below)

import numpy as np

from asrkit.audio import SAMPLE_RATE
from asrkit.contracts import ModelCard
from asrkit.models.whisper.checkpoint import CheckpointError, sha256_file
from asrkit.models.whisper.frontend import N_FRAMES, log_mel_spectrogram, pad_or_trim
from asrkit.models.whisper.tokenizer import TIMESTAMP_STEP_S

# What learns (see the module's docstring).
TRAINABLE = ("decoder", "lora")
# Their learning rates after warm-up: 1e-5 is what Whisper's published fine-tuning recipes use for
# the whole network; adapters start from zero and need a far larger one.
PEAK_LR = {"decoder": 1e-5, "lora": 1e-3}
# The learned weights beside a fine-tuned model's card: full arrays under their checkpoint names, or
# LoRA factors under "<kernel name>.lora_a" / ".lora_b" (the scale already in b).
FINETUNED_FILE = "finetuned.safetensors"
FEATURES_FILE = "features.npy"
CHECKPOINT_FILE = "checkpoint.npz"
BEST_FILE = "best.safetensors"
HISTORY_FILE = "history.jsonl"
OPTIONS_FILE = "options.json"
_LORA_SUFFIXES = (".lora_a", ".lora_b")


@dataclass(frozen=True)
class FinetuneOptions:
    """How the decoder learns; saved in the run folder and the model's card."""

    # "decoder" or "lora" (see TRAINABLE)
    trainable: str = "decoder"
    # adapter rank with trainable="lora"
    lora_rank: int = 8
    # optimiser steps at most; a resumed run continues towards this count
    steps: int = 300
    # clips per step
    batch_size: int = 16
    # learning rate after warm-up; None takes PEAK_LR's for ``trainable``
    peak_lr: float | None = None
    # steps of linear warm-up from 0, then a cosine decay to a tenth of the peak
    warmup_steps: int = 30
    # AdamW's decoupled weight decay
    weight_decay: float = 0.01
    # global gradient norm limit
    clip_norm: float = 1.0
    # augmented copies of each clip besides the clean one (speed, noise, reverberation, SpecAugment)
    copies: int = 1
    # share of the clips whose target carries timestamps (Whisper's default output); the rest are
    # trained after <|notimestamps|>, so both ways of decoding learn
    timestamp_fraction: float = 0.5
    # steps between held-out evaluations (loss and greedy WER); the best weights are kept
    eval_every: int = 50
    # evaluations without a better held-out loss before stopping early
    patience: int = 3
    # steps between checkpoints
    checkpoint_every: int = 50
    # seeds the augmentation, the timestamp draw, the batch order and the adapters' initialisation
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable {self.trainable!r} is not one of {', '.join(TRAINABLE)}")
        if self.steps < 1 or self.batch_size < 1 or self.lora_rank < 1 or self.copies < 0:
            raise ValueError(
                f"need steps, batch_size and lora_rank >= 1 and copies >= 0; got {self.steps}, "
                f"{self.batch_size}, {self.lora_rank}, {self.copies}"
            )
        if (self.peak_lr is not None and not self.peak_lr > 0) or not 0 <= self.timestamp_fraction <= 1:
            raise ValueError(
                f"peak_lr must be positive and timestamp_fraction within [0, 1]; got {self.peak_lr}, "
                f"{self.timestamp_fraction}"
            )
        if self.eval_every < 1 or self.checkpoint_every < 1 or self.patience < 1:
            raise ValueError("eval_every, checkpoint_every and patience must be at least 1")

    @property
    def learning_rate(self) -> float:
        """The peak learning rate in effect."""
        return self.peak_lr if self.peak_lr is not None else PEAK_LR[self.trainable]


@dataclass(frozen=True)
class EncodedSet:
    """Clips run through the encoder once: what the decoder trains on."""

    # float16 encoder outputs (N, A, D), possibly a read-only memory map of the run folder's file
    features: np.ndarray
    # the written target of each row (copies of a clip repeat its text)
    texts: tuple[str, ...]
    # each row's audio length in seconds, for the closing timestamp
    durations_s: tuple[float, ...]


@dataclass(frozen=True)
class Progress:
    """Where a fine-tuning is: ``stage`` is "encoding", "training" or "done"."""

    stage: str
    # clips encoded or steps taken, of ``total``
    done: int
    total: int
    # the last training batch's mean loss per token (nan outside training)
    loss: float = math.nan
    # seconds since the stage began
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Evaluation:
    """One held-out evaluation during training."""

    step: int
    # mean loss per target token, teacher forced
    loss: float
    # word error rate of greedy transcripts (no timestamps) against the targets, normalised
    wer: float


@dataclass(frozen=True)
class FinetuneResult:
    """What a run did; the network holds the weights to save (the best on the held-out part)."""

    # steps taken in all (resumed runs included)
    steps: int
    # the step whose weights the network now holds
    best_step: int
    # (step, training loss) every few steps
    losses: tuple[tuple[int, float], ...]
    evaluations: tuple[Evaluation, ...]
    # wall time of this call's training loop, encoding not included
    train_s: float
    cancelled: bool
    # why training ended: "steps", "early stop" or "cancelled"
    stopped: str
    options: FinetuneOptions = field(default_factory=FinetuneOptions)


def written_form(text: str) -> str:
    """The text as Whisper writes it: a normalised reference ("zero") becomes a sentence ("Zero."), so
    a fine-tuned model keeps the base's capitals and punctuation; written text is kept as it is."""
    text = " ".join(text.split())
    if text and text == text.lower() and not re.search(r"[.,!?;:'\"]", text):
        text = text[0].upper() + text[1:] + "."
    return text


def target_tokens(tokenizer, text: str, *, duration_s: float, timestamps: bool) -> tuple[list[int], int]:
    """The decoder's whole sequence for one clip and the index of its first token that is learned.

    Without timestamps: start of transcript, <|notimestamps|>, the text, end of text. With them, the
    text sits between <|0.00|> and a timestamp at the clip's end, as Whisper writes one segment.
    """
    text_ids = tokenizer.encode(" " + written_form(text))
    start = list(tokenizer.sot_sequence)
    if timestamps:
        end = min(round(duration_s / TIMESTAMP_STEP_S), round(N_FRAMES / 100 / TIMESTAMP_STEP_S))
        body = [tokenizer.timestamp_begin, *text_ids, tokenizer.timestamp_begin + max(end, 1)]
        # the first timestamp is learned too: it is the model's choice of mode
        return [*start, *body, tokenizer.eot], len(start)
    return [*start, tokenizer.no_timestamps, *text_ids, tokenizer.eot], len(start) + 1


def _augmented_mel(audio: np.ndarray, n_mels: int, rng: np.random.Generator, augmenter) -> np.ndarray:
    from asrkit.data.augment import spec_augment

    audio = augmenter(audio, rng) if augmenter is not None else audio
    mel = log_mel_spectrogram(audio, n_mels=n_mels, padding=160)
    content = min(mel.shape[-1] - 1, N_FRAMES)
    mel = pad_or_trim(mel)
    # masks only where there is speech; the padding's silence stays what the encoder knows
    masked = spec_augment(mel[:, :content].T, rng, fill=mel[:, :content].mean(axis=1)).T
    mel[:, :content] = masked
    return mel


def encode_examples(
    model,
    audios: Sequence[np.ndarray],
    texts: Sequence[str],
    *,
    copies: int = 0,
    augmenter=None,
    seed: int = 0,
    path: str | Path | None = None,
    batch_size: int = 8,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> EncodedSet | None:
    """Run the clips (and ``copies`` augmented copies of each) through the model's encoder once.

    Parameters
    ----------
    model : WhisperModel
    audios : 16-kHz mono clips of at most 30 s; ``texts`` their transcripts
    augmenter : callable ``(audio, rng) -> audio`` for the copies, e.g. :class:`asrkit.data.augment.Augmenter`
        (SpecAugment is added on top); None perturbs the copies by SpecAugment alone
    path : where to keep the features (a ``.npy`` file, reused by a later call with the same clips);
        None keeps them in memory

    Returns
    -------
    An :class:`EncodedSet` of ``len(audios) * (1 + copies)`` rows, or None when cancelled.
    """
    if len(audios) != len(texts) or not audios:
        raise ValueError(
            f"need one transcript per clip and at least one clip; got {len(audios)} clips and {len(texts)} transcripts"
        )
    for i, audio in enumerate(audios):
        if len(audio) > N_FRAMES * 160:
            raise ValueError(
                f"clip {i} lasts {len(audio) / SAMPLE_RATE:.1f} s: fine-tuning takes clips of at most 30 s"
            )
    inference = model.transcriber.inference
    config = inference.config
    rows = [(i, c) for c in range(1 + copies) for i in range(len(audios))]
    out_texts = tuple(texts[i] for i, _ in rows)
    durations = tuple(len(audios[i]) / SAMPLE_RATE for i, _ in rows)
    shape = (len(rows), config.n_audio_ctx, config.n_audio_state)
    # what the stored features were made from: other clips, copies or seed make them stale
    digest = _digest(
        {
            "texts": out_texts,
            "durations": durations,
            "copies": copies,
            "seed": seed,
            "samples": [int(a.size) for a in audios],
            "model": model.name,
        }
    )
    stamp = Path(path).with_suffix(".json") if path is not None else None
    if path is not None and Path(path).is_file() and stamp.is_file() and json.loads(stamp.read_text()) == digest:
        cached = np.load(path, mmap_mode="r")
        if cached.shape == shape:
            return EncodedSet(cached, out_texts, durations)
    tell = on_progress or (lambda _: None)
    began = time.monotonic()
    partial = None
    if path is not None:
        partial = Path(path).with_suffix(".partial.npy")
        features = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
    else:
        features = np.empty(shape, np.float16)
    tell(Progress("encoding", 0, len(rows)))
    for start in range(0, len(rows), batch_size):
        if cancel is not None and cancel.is_set():
            del features
            if partial is not None:
                partial.unlink(missing_ok=True)
            return None
        mels = []
        for i, copy in rows[start : start + batch_size]:
            if copy == 0:
                mels.append(pad_or_trim(log_mel_spectrogram(audios[i], n_mels=config.n_mels, padding=160)))
            else:
                rng = np.random.default_rng((seed, i, copy))
                mels.append(_augmented_mel(audios[i], config.n_mels, rng, augmenter))
        with model.lock:
            encoded = inference.encode(np.stack(mels))
        features[start : start + len(mels)] = np.asarray(encoded, np.float16)
        tell(Progress("encoding", start + len(mels), len(rows), elapsed_s=time.monotonic() - began))
    if partial is not None:
        features.flush()
        del features
        partial.replace(path)
        _write_atomically(stamp, lambda p: p.write_text(json.dumps(digest)))
        features = np.load(path, mmap_mode="r")
    return EncodedSet(features, out_texts, durations)


# --- which weights learn ---


def _decoder_denses(decoder) -> dict[str, object]:
    """The decoder's dense layers by the checkpoint name of their kernel."""
    found = {}
    for i, block in enumerate(decoder.blocks):
        for part, layers in (("attn", ("qkv", "out")), ("cross", ("q", "kv", "out")), ("mlp", ("fc1", "fc2"))):
            owner = getattr(block, part)
            for name in layers:
                found[f"decoder/block_{i}/{part}/{name}/kernel"] = getattr(owner, name)
    return found


def trainable_variables(network, options: FinetuneOptions) -> dict[str, object]:
    """The variables that learn, by name; for LoRA, the adapters are added to the network here."""
    import keras

    decoder = network.decoder
    if options.trainable == "decoder":
        named = network.named_variables()
        return {
            name: v
            for name, v in named.items()
            if name.startswith("decoder/block_") or name.startswith("decoder/ln_post")
        }
    keras.utils.set_random_seed(options.seed)
    variables = {}
    for name, dense in _decoder_denses(decoder).items():
        if not dense.lora_enabled:
            dense.enable_lora(options.lora_rank)
        variables[name + ".lora_a"] = dense.lora_kernel_a
        variables[name + ".lora_b"] = dense.lora_kernel_b
    return variables


def learned_arrays(network, options: FinetuneOptions) -> dict[str, np.ndarray]:
    """What a fine-tuned model saves: the learned weights, or the LoRA factors with the scale in b."""
    import keras

    if options.trainable == "decoder":
        return {
            name: keras.ops.convert_to_numpy(v).astype(np.float32)
            for name, v in trainable_variables(network, options).items()
        }
    arrays = {}
    for name, dense in _decoder_denses(network.decoder).items():
        scale = dense.lora_alpha / dense.lora_rank
        arrays[name + ".lora_a"] = keras.ops.convert_to_numpy(dense.lora_kernel_a).astype(np.float32)
        arrays[name + ".lora_b"] = (scale * keras.ops.convert_to_numpy(dense.lora_kernel_b)).astype(np.float32)
    return arrays


def apply_learned(
    weights: dict[str, np.ndarray], learned: dict[str, np.ndarray], *, source: Path
) -> dict[str, np.ndarray]:
    """A checkpoint's weights with a fine-tuned model's learned arrays put in (full arrays replace, LoRA
    factors add their product); names and shapes are checked against the base."""
    out = dict(weights)
    for name, array in learned.items():
        if name.endswith(".lora_b"):
            continue
        if name.endswith(".lora_a"):
            base = name[: -len(".lora_a")]
            b = learned.get(base + ".lora_b")
            if base not in weights or b is None or (array.shape[0], b.shape[1]) != weights[base].shape:
                raise CheckpointError(f"{source}: adapter {base} does not fit the base model")
            out[base] = weights[base] + array @ b
        elif name not in weights or weights[name].shape != array.shape:
            raise CheckpointError(f"{source}: {name} {array.shape} does not fit the base model")
        else:
            out[name] = array
    return out


# --- training ---


def _batches(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The rows of training step ``step``: epochs of seeded permutations, so a resumed run draws the
    same batches it would have drawn."""
    per_epoch = max(1, n // batch_size) if n >= batch_size else 1
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng((seed, epoch)).permutation(n)
    rows = order[index * batch_size : (index + 1) * batch_size]
    return rows if len(rows) else order[:batch_size]


class _Targets:
    """Every row's token sequence (with and without timestamps, drawn per row and epoch)."""

    def __init__(self, tokenizer, data: EncodedSet, options: FinetuneOptions) -> None:
        self.plain = [
            target_tokens(tokenizer, t, duration_s=d, timestamps=False) for t, d in zip(data.texts, data.durations_s)
        ]
        self.timed = [
            target_tokens(tokenizer, t, duration_s=d, timestamps=True) for t, d in zip(data.texts, data.durations_s)
        ]
        self.fraction, self.seed, self.eot = options.timestamp_fraction, options.seed, tokenizer.eot

    def batch(self, rows: np.ndarray, step: int, *, timestamps: bool | None = None):
        """Decoder inputs (B, T), labels (B, T) and the mask (B, T) of learned positions."""
        draw = np.random.default_rng((self.seed, step, 1)).random(len(rows))
        picked = []
        for row, r in zip(rows, draw):
            timed = r < self.fraction if timestamps is None else timestamps
            picked.append((self.timed if timed else self.plain)[row])
        length = max(len(seq) for seq, _ in picked) - 1
        inputs = np.full((len(rows), length), self.eot, np.int32)
        labels = np.full((len(rows), length), self.eot, np.int32)
        mask = np.zeros((len(rows), length), np.float32)
        for j, (seq, first) in enumerate(picked):
            inputs[j, : len(seq) - 1] = seq[:-1]
            labels[j, : len(seq) - 1] = seq[1:]
            mask[j, first - 1 : len(seq) - 1] = 1.0
        return inputs, labels, mask


class _Steps:
    """The compiled loss, training step and greedy logits over the decoder."""

    def __init__(self, network, variables: list, optimizer) -> None:
        import tensorflow as tf

        decoder = network.decoder
        c = network.config
        features = tf.TensorSpec([None, None, c.n_audio_state], tf.float16)
        ints, floats = tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.float32)

        def loss_of(feats, inputs, labels, mask):
            cross = decoder.cross_keys_values(tf.cast(feats, tf.float32))
            logits, _ = decoder(inputs, cross)
            per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            return tf.reduce_sum(per_token * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

        def train(feats, inputs, labels, mask):
            with tf.GradientTape() as tape:
                loss = loss_of(feats, inputs, labels, mask)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        self.loss = tf.function(loss_of, input_signature=[features, ints, ints, floats])
        self.train = tf.function(train, input_signature=[features, ints, ints, floats])
        self.cross = tf.function(
            lambda feats: decoder.cross_keys_values(tf.cast(feats, tf.float32)), input_signature=[features]
        )
        kv = tf.TensorSpec([None, c.n_text_head, None, c.n_text_state // c.n_text_head], tf.float32)
        self.last_logits = tf.function(
            lambda tokens, cross: decoder(tokens, cross)[0][:, -1], input_signature=[ints, [(kv, kv)] * c.n_text_layer]
        )


def _greedy_texts(steps: _Steps, tokenizer, features: np.ndarray, *, max_tokens: int = 64) -> list[str]:
    """Greedy transcripts without timestamps, recomputing the whole prefix each step (fine for the
    short held-out clips; the decoders of the LoRA network are traced here, after the adapters exist)."""
    cross = steps.cross(features)
    n = len(features)
    tokens = np.array([[*tokenizer.sot_sequence, tokenizer.no_timestamps]] * n, np.int32)
    done = np.zeros(n, bool)
    out: list[list[int]] = [[] for _ in range(n)]
    for _ in range(max_tokens):
        logits = np.asarray(steps.last_logits(tokens, cross))
        choice = np.argmax(logits[:, : tokenizer.eot + 1], axis=-1)
        for j in np.flatnonzero(~done):
            if choice[j] == tokenizer.eot:
                done[j] = True
            else:
                out[j].append(int(choice[j]))
        if done.all():
            break
        tokens = np.concatenate([tokens, choice[:, None].astype(np.int32)], axis=1)
    return [tokenizer.decode(t) for t in out]


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    partial.replace(path)


def _save_arrays(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    from safetensors.numpy import save_file

    _write_atomically(
        path, lambda p: save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(p), metadata=metadata)
    )


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """A safetensors file's arrays (no code runs while reading it)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error


def finetune(
    model,
    data: EncodedSet,
    held_out: EncodedSet | None = None,
    *,
    run_dir: str | Path,
    options: FinetuneOptions = FinetuneOptions(),
    on_progress: Callable[[Progress], None] | None = None,
    on_evaluation: Callable[[Evaluation], None] | None = None,
    cancel: threading.Event | None = None,
) -> FinetuneResult:
    """Train the model's decoder on encoded clips, in place, keeping the weights best on ``held_out``.

    Parameters
    ----------
    model : WhisperModel
        Changed in place: afterwards its network holds the fine-tuned weights (with LoRA, adapters
        that only :func:`save_finetuned` and a reload put into the compiled decoding functions).
    data, held_out : from :func:`encode_examples`; without ``held_out`` the last step's weights are kept
    run_dir : the run folder; a run started again with the same folder and options resumes
    cancel : set from another thread to stop after the current step; the run folder keeps the last
        checkpoint, and nothing else is written

    Returns
    -------
    FinetuneResult
    """
    import keras

    from asrkit.metrics import score_corpus
    from asrkit.text import normalize_text
    from asrkit.train import LearningRate

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / OPTIONS_FILE
    # a checkpoint resumes only the run it came from: the same options on the same clips
    run = {"options": asdict(options), "data": _digest({"texts": data.texts, "durations": data.durations_s})}
    if saved.is_file() and json.loads(saved.read_text()) != run:
        raise ValueError(
            f"{run_dir} holds a run with other options or clips ({saved}); use a new folder to start afresh"
        )
    _write_atomically(saved, lambda p: p.write_text(json.dumps(run, indent=1)))
    tell = on_progress or (lambda _: None)
    cancel = cancel or threading.Event()
    network = model.transcriber.inference.network
    tokenizer = model.transcriber.tokenizer
    variables = trainable_variables(network, options)
    names, weights = list(variables), list(variables.values())
    schedule = LearningRate(options.learning_rate, options.warmup_steps, options.steps, 0.1)
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=options.weight_decay, global_clipnorm=options.clip_norm
    )
    optimizer.build(weights)
    steps = _Steps(network, weights, optimizer)
    targets = _Targets(tokenizer, data, options)
    held_targets = _Targets(tokenizer, held_out, options) if held_out is not None else None

    state = {"step": 0, "best_loss": math.inf, "best_step": 0, "bad_evals": 0, "losses": [], "evaluations": []}
    checkpoint = run_dir / CHECKPOINT_FILE
    if checkpoint.is_file():
        with np.load(checkpoint) as stored:
            for i, v in enumerate(weights):
                v.assign(stored[f"weight_{i}"])
            for i, v in enumerate(optimizer.variables):
                v.assign(stored[f"optimizer_{i}"])
            state = json.loads(str(stored["state"]))

    def save_checkpoint() -> None:
        arrays = {f"weight_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(weights)}
        arrays |= {f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables)}
        _write_atomically(checkpoint, lambda p: np.savez(open(p, "wb"), state=json.dumps(state), **arrays))

    def evaluate(step: int) -> Evaluation:
        losses, hypotheses = [], []
        for start in range(0, len(held_out.texts), options.batch_size):
            rows = np.arange(start, min(start + options.batch_size, len(held_out.texts)))
            feats = np.asarray(held_out.features[rows])
            inputs, labels, mask = held_targets.batch(rows, 0, timestamps=False)
            losses.append((float(steps.loss(feats, inputs, labels, mask)), float(mask.sum())))
            hypotheses += _greedy_texts(steps, tokenizer, feats)
        loss = sum(l * n for l, n in losses) / sum(n for _, n in losses)
        refs = [normalize_text(t) for t in held_out.texts]
        wer = score_corpus(refs, [normalize_text(h) for h in hypotheses]).wer
        return Evaluation(step, loss, wer)

    best_file = run_dir / BEST_FILE

    def keep_best() -> None:
        _save_arrays(best_file, {n: keras.ops.convert_to_numpy(v) for n, v in zip(names, weights)})

    if held_out is not None and not state["evaluations"]:
        first = evaluate(0)
        state["evaluations"].append(asdict(first))
        state["best_loss"] = first.loss
        # the base itself is the best until a step beats it
        keep_best()
        if on_evaluation:
            on_evaluation(first)
    began = time.monotonic()
    stopped = "steps"
    tell(Progress("training", state["step"], options.steps))
    while state["step"] < options.steps:
        if cancel.is_set():
            stopped = "cancelled"
            break
        step = state["step"]
        rows = np.sort(_batches(len(data.texts), options.batch_size, options.seed, step))
        inputs, labels, mask = targets.batch(rows, step)
        loss = float(steps.train(np.asarray(data.features[rows]), inputs, labels, mask))
        if not math.isfinite(loss):
            raise FloatingPointError(f"step {step + 1}: the training loss is {loss}; lower peak_lr")
        state["step"] = step + 1
        if state["step"] % 5 == 0 or state["step"] == options.steps:
            state["losses"].append((state["step"], loss))
        tell(Progress("training", state["step"], options.steps, loss, time.monotonic() - began))
        if held_out is not None and (state["step"] % options.eval_every == 0 or state["step"] == options.steps):
            result = evaluate(state["step"])
            state["evaluations"].append(asdict(result))
            if on_evaluation:
                on_evaluation(result)
            if result.loss < state["best_loss"]:
                state.update(best_loss=result.loss, best_step=result.step, bad_evals=0)
                keep_best()
            else:
                state["bad_evals"] += 1
        if state["step"] % options.checkpoint_every == 0 or state["step"] == options.steps:
            save_checkpoint()
        if held_out is not None and state["bad_evals"] >= options.patience and state["step"] < options.steps:
            stopped = "early stop"
            save_checkpoint()
            break
    train_s = time.monotonic() - began
    best_step = state["step"]
    if held_out is not None and stopped != "cancelled":
        best_step = state["best_step"]
        best = load_arrays(best_file)
        for name, v in zip(names, weights):
            v.assign(best[name])
    history = run_dir / HISTORY_FILE
    _write_atomically(
        history,
        lambda p: p.write_text(
            "".join(json.dumps({"step": s, "loss": l}) + "\n" for s, l in state["losses"])
            + "".join(
                json.dumps({"step": e["step"], "dev_loss": e["loss"], "dev_wer": e["wer"]}) + "\n"
                for e in state["evaluations"]
            )
        ),
    )
    tell(Progress("done", state["step"], options.steps, elapsed_s=train_s))
    return FinetuneResult(
        steps=state["step"],
        best_step=best_step,
        losses=tuple(tuple(x) for x in state["losses"]),
        evaluations=tuple(Evaluation(**e) for e in state["evaluations"]),
        train_s=train_s,
        cancelled=stopped == "cancelled",
        stopped=stopped,
        options=options,
    )


def save_finetuned(
    model, result: FinetuneResult, *, folder: str | Path, card: ModelCard, run: dict | None = None
) -> Path:
    """Write a fine-tuned model: its card (which names the base's weights and the learned file with
    both SHA-256s, the options and steps, and ``run``'s figures) and the learned arrays. The folder
    appears whole or not at all."""
    from asrkit.models.whisper.model import weights_folder

    if result.cancelled:
        raise ValueError("a cancelled fine-tuning is not saved")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(folder.name + ".partial")
    old = folder.with_name(folder.name + ".old")
    for leftover in (partial, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    partial.mkdir()
    arrays = learned_arrays(model.transcriber.inference.network, result.options)
    _save_arrays(partial / FINETUNED_FILE, arrays, {"trainable": result.options.trainable})
    base_spec = dict(model.card.config.get("weights", {}))
    if "package" not in base_spec:
        base_spec["path"] = str(weights_folder(model.card, model.folder))
    config = {
        **model.card.config,
        "weights": base_spec,
        "finetuned": {
            "file": FINETUNED_FILE,
            "sha256": sha256_file(partial / FINETUNED_FILE),
            "base_model": model.card.name,
            "options": asdict(result.options),
            "steps": result.steps,
            "best_step": result.best_step,
            **(run or {}),
        },
    }
    replace(card, config=config).save(partial)
    if folder.exists():
        folder.replace(old)
    partial.replace(folder)
    if old.exists():
        shutil.rmtree(old)
    return folder

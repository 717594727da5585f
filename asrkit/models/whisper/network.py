"""Whisper's encoder and decoder as Keras 3 layers, with a key/value cache for decoding.

The layout follows the released checkpoints: pre-norm transformer blocks with exact GELU, a fused
query/key/value projection in self-attention and a fused key/value projection in cross-attention
(the key halves have no bias), a decoder whose output projection is its token embedding. Shapes use
B for batch, T for new tokens, S for cached tokens, F for mel frames, A for encoder positions and D
for the model width.
"""

from __future__ import annotations

import math

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)

import keras
import numpy as np
from keras import ops

from asrkit.models.whisper.config import WhisperConfig

LAYER_NORM_EPSILON = 1e-5


def _gelu(x):
    return keras.activations.gelu(x, approximate=False)


def split_heads(x, n_head: int):
    """(B, N, D) -> (B, n_head, N, D / n_head)."""
    batch, length, d = ops.shape(x)[0], ops.shape(x)[1], x.shape[-1]
    return ops.transpose(ops.reshape(x, (batch, length, n_head, d // n_head)), (0, 2, 1, 3))


def merge_heads(x):
    """(B, n_head, N, D / n_head) -> (B, N, D)."""
    batch, n_head, length, head = ops.shape(x)[0], x.shape[1], ops.shape(x)[2], x.shape[-1]
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch, length, n_head * head))


def attend(q, k, v, *, causal_offset=None, return_weights: bool = False):
    """Scaled dot-product attention, heads already split.

    Keys and values stay in the (B, H, S, D / H) layout they are cached in, and einsum contracts
    them without transposing: copying the audio's keys every decoding step would cost more than
    the attention itself.

    Parameters
    ----------
    q : tensor, shape (B, H, T, D / H)
    k, v : tensor, shape (B, H, S, D / H)
    causal_offset : scalar tensor or None
        Position of q's first row among k's rows: row i may see keys 0 .. causal_offset + i. None
        lets every row see every key (the encoder, cross-attention).

    Returns
    -------
    tensor (B, H, T, D / H), and the weights (B, H, T, S) with ``return_weights``.
    """
    scores = ops.einsum("bhtd,bhsd->bhts", q, k) * (1.0 / math.sqrt(q.shape[-1]))
    if causal_offset is not None:
        t, s = ops.shape(q)[2], ops.shape(k)[2]
        rows = ops.expand_dims(ops.arange(t) + causal_offset, 1)
        allowed = ops.expand_dims(ops.arange(s), 0) <= rows
        scores = ops.where(allowed, scores, ops.full_like(scores, -np.inf))
    weights = ops.softmax(scores, axis=-1)
    out = ops.einsum("bhts,bhsd->bhtd", weights, v)
    return (out, weights) if return_weights else out


class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention with one fused query/key/value projection."""

    def __init__(self, n_state: int, n_head: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_head = n_head
        self.qkv = keras.layers.Dense(3 * n_state, name="qkv")
        self.out = keras.layers.Dense(n_state, name="out")

    def build(self, input_shape) -> None:
        self.qkv.build(input_shape)
        self.out.build(input_shape)

    def call(self, x, cache=None, offset=None):
        """x: (B, T, D); cache: (keys, values) of earlier tokens, each (B, H, S, D / H), or None.
        Returns the output (B, T, D) and the (keys, values) of all S + T tokens."""
        q, k, v = (split_heads(part, self.n_head) for part in ops.split(self.qkv(x), 3, axis=-1))
        if cache is not None:
            k = ops.concatenate([cache[0], k], axis=2)
            v = ops.concatenate([cache[1], v], axis=2)
        return self.out(merge_heads(attend(q, k, v, causal_offset=offset))), (k, v)


class CrossAttention(keras.layers.Layer):
    """Multi-head attention from the text to the audio; the audio's keys and values are computed once."""

    def __init__(self, n_state: int, n_head: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_head = n_head
        self.q = keras.layers.Dense(n_state, name="q")
        self.kv = keras.layers.Dense(2 * n_state, name="kv")
        self.out = keras.layers.Dense(n_state, name="out")

    def build(self, input_shape) -> None:
        for layer in (self.q, self.kv, self.out):
            layer.build(input_shape)

    def keys_values(self, audio_features):
        """(keys, values) of the encoder output (B, A, D), each (B, H, A, D / H)."""
        return tuple(split_heads(part, self.n_head) for part in ops.split(self.kv(audio_features), 2, axis=-1))

    def call(self, x, keys_values, return_weights: bool = False):
        q = split_heads(self.q(x), self.n_head)
        result = attend(q, keys_values[0], keys_values[1], return_weights=return_weights)
        if return_weights:
            return self.out(merge_heads(result[0])), result[1]
        return self.out(merge_heads(result))


class MLP(keras.layers.Layer):
    def __init__(self, n_state: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fc1 = keras.layers.Dense(4 * n_state, name="fc1")
        self.fc2 = keras.layers.Dense(n_state, name="fc2")

    def build(self, input_shape) -> None:
        self.fc1.build(input_shape)
        self.fc2.build((*input_shape[:-1], 4 * input_shape[-1]))

    def call(self, x):
        return self.fc2(_gelu(self.fc1(x)))


def _norm(name: str) -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=name)


class EncoderBlock(keras.layers.Layer):
    def __init__(self, n_state: int, n_head: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attn_ln, self.attn = _norm("attn_ln"), SelfAttention(n_state, n_head, name="attn")
        self.mlp_ln, self.mlp = _norm("mlp_ln"), MLP(n_state, name="mlp")

    def build(self, input_shape) -> None:
        for layer in (self.attn_ln, self.attn, self.mlp_ln, self.mlp):
            layer.build(input_shape)

    def call(self, x):
        x = x + self.attn(self.attn_ln(x))[0]
        return x + self.mlp(self.mlp_ln(x))


class DecoderBlock(keras.layers.Layer):
    def __init__(self, n_state: int, n_head: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.attn_ln, self.attn = _norm("attn_ln"), SelfAttention(n_state, n_head, name="attn")
        self.cross_ln, self.cross = _norm("cross_ln"), CrossAttention(n_state, n_head, name="cross")
        self.mlp_ln, self.mlp = _norm("mlp_ln"), MLP(n_state, name="mlp")

    def build(self, input_shape) -> None:
        for layer in (self.attn_ln, self.attn, self.cross_ln, self.cross, self.mlp_ln, self.mlp):
            layer.build(input_shape)

    def call(self, x, cross_kv, cache=None, offset=None, return_weights: bool = False):
        attended, new_cache = self.attn(self.attn_ln(x), cache=cache, offset=offset)
        x = x + attended
        crossed = self.cross(self.cross_ln(x), cross_kv, return_weights=return_weights)
        weights = None
        if return_weights:
            crossed, weights = crossed
        x = x + crossed
        return x + self.mlp(self.mlp_ln(x)), new_cache, weights


class AudioEncoder(keras.layers.Layer):
    """Log-mel frames (B, F, n_mels) -> audio features (B, F // 2, D)."""

    def __init__(self, config: WhisperConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        d = config.n_audio_state
        self.conv1 = keras.layers.Conv1D(d, 3, padding="same", name="conv1")
        # Whisper pads one frame on both sides before the strided convolution; Keras's "same"
        # would pad only on the right
        self.conv2 = keras.layers.Conv1D(d, 3, strides=2, padding="valid", name="conv2")
        self.blocks = [EncoderBlock(d, config.n_audio_head, name=f"block_{i}") for i in range(config.n_audio_layer)]
        self.ln_post = _norm("ln_post")

    def build(self, input_shape=None) -> None:
        c = self.config
        self.conv1.build((None, None, c.n_mels))
        self.conv2.build((None, None, c.n_audio_state))
        # sinusoids in every released checkpoint, but read from it rather than recomputed
        self.positions = self.add_weight(
            shape=(c.n_audio_ctx, c.n_audio_state), name="positions", trainable=False, initializer="zeros"
        )
        for layer in (*self.blocks, self.ln_post):
            layer.build((None, None, c.n_audio_state))

    def call(self, mel):
        x = _gelu(self.conv1(mel))
        x = _gelu(self.conv2(ops.pad(x, ((0, 0), (1, 1), (0, 0)))))
        x = x + self.positions[: ops.shape(x)[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(keras.layers.Layer):
    """Tokens and audio features -> next-token logits, one step at a time with a key/value cache."""

    def __init__(self, config: WhisperConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        d = config.n_text_state
        self.blocks = [DecoderBlock(d, config.n_text_head, name=f"block_{i}") for i in range(config.n_text_layer)]
        self.ln_post = _norm("ln_post")

    def build(self, input_shape=None) -> None:
        c = self.config
        # the token embedding, stored as the output projection's (D, n_vocab) kernel: each step
        # multiplies by it (reading it transposed costs twice the time), while looking up a few
        # tokens' columns is cheap either way
        self.embedding = self.add_weight(shape=(c.n_text_state, c.n_vocab), name="embedding", initializer="zeros")
        self.positions = self.add_weight(shape=(c.n_text_ctx, c.n_text_state), name="positions", initializer="zeros")
        for layer in (*self.blocks, self.ln_post):
            layer.build((None, None, c.n_text_state))

    def cross_keys_values(self, audio_features) -> list:
        """Per block, the (keys, values) of the audio features (B, A, D), each (B, H, A, D / H)."""
        return [block.cross.keys_values(audio_features) for block in self.blocks]

    def call(self, tokens, cross_kv, cache=None, return_weights: bool = False):
        """Logits for ``tokens`` (B, T) following the ``cache`` of earlier tokens.

        Parameters
        ----------
        tokens : int tensor, shape (B, T)
        cross_kv : list of (keys, values) per block, from :meth:`cross_keys_values`
        cache : list of (keys, values) per block, each (B, H, S, D / H), or None for no earlier tokens

        Returns
        -------
        logits (B, T, n_vocab), the new cache (each (B, H, S + T, D / H)) and, with ``return_weights``, the
        cross-attention weights per block (B, n_head, T, A).
        """
        offset = 0 if cache is None else ops.shape(cache[0][0])[2]
        t = ops.shape(tokens)[1]
        x = ops.transpose(ops.take(self.embedding, tokens, axis=1), (1, 2, 0)) + ops.slice(
            self.positions, (offset, 0), (t, self.config.n_text_state)
        )
        new_cache, weights = [], []
        for i, block in enumerate(self.blocks):
            x, kv, w = block(
                x, cross_kv[i], cache=None if cache is None else cache[i], offset=offset, return_weights=return_weights
            )
            new_cache.append(kv)
            weights.append(w)
        logits = ops.matmul(self.ln_post(x), self.embedding)
        return (logits, new_cache, weights) if return_weights else (logits, new_cache)


class WhisperNetwork(keras.layers.Layer):
    """The whole network; weights in asrkit's names (see :mod:`asrkit.models.whisper.checkpoint`)."""

    def __init__(self, config: WhisperConfig, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.encoder = AudioEncoder(config, name="encoder")
        self.decoder = TextDecoder(config, name="decoder")
        self.encoder.build()
        self.decoder.build()
        self.built = True

    def named_variables(self) -> dict[str, keras.Variable]:
        """Every weight by its checkpoint name, e.g. ``decoder/block_0/cross/kv/kernel``."""
        named: dict[str, keras.Variable] = {}

        def walk(layer, prefix: str) -> None:
            for attr in ("kernel", "bias", "gamma", "beta", "positions", "embedding"):
                variable = getattr(layer, attr, None)
                if isinstance(variable, keras.Variable):
                    named[f"{prefix}/{attr}"] = variable
            for child in layer._layers:
                walk(child, f"{prefix}/{child.name}")

        for side in (self.encoder, self.decoder):
            walk(side, side.name)
        return named

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Assign every weight from ``arrays``; names and shapes must match exactly."""
        named = self.named_variables()
        missing, extra = sorted(set(named) - set(arrays)), sorted(set(arrays) - set(named))
        if missing or extra:
            raise ValueError(f"checkpoint does not fit the network: missing {missing[:5]}, unexpected {extra[:5]}")
        for name, variable in named.items():
            if tuple(variable.shape) != arrays[name].shape:
                raise ValueError(
                    f"{name}: the network has shape {tuple(variable.shape)}, the checkpoint {arrays[name].shape}"
                )
            variable.assign(arrays[name])

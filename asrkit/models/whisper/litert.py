"""Whisper on LiteRT (TensorFlow Lite): the Keras network exported to two flatbuffers, run without TensorFlow.

A Whisper LiteRT folder holds ``encoder.tflite``, ``decoder.tflite``, the checkpoint's ``tokenizer.json``
and a ``card.json`` whose config names the ``whisper-litert`` backend, the network's sizes, what the
checkpoint says about decoding (suppressed tokens, alignment heads) and the SHA-256 of both flatbuffers.
:func:`export_whisper_litert` writes such a folder from a loaded :class:`~asrkit.models.whisper.model.WhisperModel`;
only exporting needs TensorFlow. Loading and transcribing import numpy and ``ai_edge_litert``, never
TensorFlow or Keras.

The two graphs (one signature, one subgraph each; builtin ops only, exact GELU included):

``encoder.tflite``
    ``mel`` (1, n_frames, n_mels) -> ``cross_k{i}``, ``cross_v{i}`` (1, H, A, D / H) for every decoder
    block i: the encoder and the cross-attention keys/values at once, already split into heads. Static
    shapes, one window per call (a batch would not run faster on one CPU thread).
``decoder.tflite``
    ``tokens`` (B, T), ``offset`` (), ``cache_k{i}``, ``cache_v{i}`` (B, H, C, D / H), ``cross_k{i}``,
    ``cross_v{i}`` (N, H, A, D / H) -> ``logits`` (B, T, n_vocab), ``new_k{i}``, ``new_v{i}``
    (B, H, T, D / H) and the cross-attention weights ``weights{i}`` (N, H, G * T, A). The first
    ``offset`` of the C cache positions hold the tokens so far, the rest are masked; the B rows are N
    groups of G consecutive rows that share an audio window (the beams, or the samples, of a window),
    whose keys/values are given, and read, once per window. The same graph runs a prompt (T tokens,
    offset 0), each step (T = 1) and the alignment's scoring.

The runtime (:class:`WhisperLiteRTInference`) sizes the cache in capacities that double from 32 to
n_text_ctx, so a step reads little more cache than there are tokens while the decoder's input shapes
(and so the interpreter's allocation) change only a few times per window. Between steps the
interpreter's inputs keep the audio keys/values and the cache: a step writes its new keys/values
into them in place and copies in only its tokens. (A cache exactly as long as its tokens, the
Keras model's way, resizes the inputs, so reallocates the interpreter and copies every input in
again, at every step: measured up to 1.6x slower per step on whisper-tiny.en, one thread.)

Usage
-----
::

    export_whisper_litert(load_model("whisper-tiny.en"), "models/whisper-tiny.en-litert")
    load_model("whisper-tiny.en-litert").transcribe(audio).text
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asrkit._tf  # noqa: F401  (sets KERAS_BACKEND and TF_CPP_MIN_LOG_LEVEL for the TensorFlow imported below)

import numpy as np

from asrkit.contracts import ModelCard
from asrkit.models.whisper.checkpoint import sha256_file
from asrkit.models.whisper.config import GenerationConfig, WhisperConfig
from asrkit.models.whisper.frontend import CHUNK_LENGTH_S
from asrkit.models.whisper.model import WhisperModel, _options, verify_weights, weights_folder
from asrkit.models.whisper.streaming import StreamingOptions
from asrkit.models.whisper.tokenizer import TOKENIZER_FILE, WhisperTokenizer
from asrkit.models.whisper.transcribe import Transcriber

if TYPE_CHECKING:
    from asrkit.models.whisper.network import WhisperNetwork

BACKEND = "whisper-litert"
ENCODER_FILE = "encoder.tflite"
DECODER_FILE = "decoder.tflite"
# the flatbuffers' signatures
ENCODE, DECODE = "encode", "decode"
# how the weights are stored: float32, float16 (half the size, computed in float32) or int8 dynamic-range
# (a quarter of the size; matrix products in int8 with activations quantized on the fly)
QUANTIZATIONS = ("float32", "float16", "int8")
# Interpreter threads per model: one, so that concurrent models and streams share the cores
THREADS = 1
# the self-attention cache's smallest capacity (it doubles as it fills, up to n_text_ctx)
CACHE_STEP = 32
# added to the scores of masked positions: exp() of it is exactly 0 in float32, and unlike -inf it
# never makes inf - inf
_MASKED = -1e9


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


# ---------------------------------------------------------------------------------------------------
# export (needs TensorFlow)


def _graphs(network: WhisperNetwork):
    """The encoder's and the decoder's functions, over the network's own layers (the dense and
    normalisation layers named as in the checkpoint) and weights."""
    import keras
    import tensorflow as tf

    c = network.config
    encoder, decoder = network.encoder, network.decoder
    n_layer, n_head = c.n_text_layer, c.n_text_head
    head = c.n_text_state // n_head
    scale = 1.0 / float(np.sqrt(head))
    # the token embedding as (n_vocab, D), whichever way the network stores it: the lookup gathers
    # its rows and the output projection multiplies by its transpose, so both use one buffer
    table = keras.ops.convert_to_numpy(decoder.embedding)
    table = tf.constant(np.ascontiguousarray(table if table.shape[0] == c.n_vocab else table.T, np.float32))

    def split(x):  # (B, N, D) -> (B, H, N, D / H)
        shape = tf.shape(x)
        return tf.transpose(tf.reshape(x, (shape[0], shape[1], n_head, head)), (0, 2, 1, 3))

    def merge(x):  # (B, H, N, D / H) -> (B, N, D)
        shape = tf.shape(x)
        return tf.reshape(tf.transpose(x, (0, 2, 1, 3)), (shape[0], shape[2], n_head * head))

    def encode(mel):
        features = encoder(mel)
        out = {}
        for i, block in enumerate(decoder.blocks):
            k, v = tf.split(block.cross.kv(features), 2, axis=-1)
            out[f"cross_k{i}"], out[f"cross_v{i}"] = split(k), split(v)
        return out

    def cross_attend(q, k, v):
        # q (B, H, T, D / H) of B = N * G rows, G consecutive rows per audio window (the beams or
        # samples of one window); k, v (N, H, A, D / H) once per window, so the audio's keys/values
        # (the most memory a step reads) are read once per window, not once per row. The weights
        # come out grouped, (N, H, G * T, A).
        b, t, n = tf.shape(q)[0], tf.shape(q)[2], tf.shape(k)[0]
        g = b // n
        grouped = tf.transpose(tf.reshape(q, (n, g, n_head, t * head)), (0, 2, 1, 3))
        grouped = tf.reshape(grouped, (n, n_head, g * t, head))
        weights = tf.nn.softmax(tf.matmul(grouped, k, transpose_b=True) * scale, axis=-1)
        attended = tf.reshape(tf.matmul(weights, v), (n, n_head, g, t * head))
        return tf.reshape(tf.transpose(attended, (0, 2, 1, 3)), (b, n_head, t, head)), weights

    def decode(tokens, offset, *tensors):
        cache_k, cache_v = tensors[:n_layer], tensors[n_layer : 2 * n_layer]
        cross_k, cross_v = tensors[2 * n_layer : 3 * n_layer], tensors[3 * n_layer :]
        t, s = tf.shape(tokens)[1], tf.shape(cache_k[0])[2]
        x = tf.gather(table, tokens) + tf.gather(decoder.positions, offset + tf.range(t))
        # the cache's first `offset` positions are visible; each new token sees the new ones up to itself
        cache_bias = tf.where(tf.range(s) < offset, 0.0, _MASKED)
        causal_bias = tf.where(tf.range(t)[None, :] <= tf.range(t)[:, None], 0.0, _MASKED)
        out = {}
        for i, block in enumerate(decoder.blocks):
            q, k, v = (split(part) for part in tf.split(block.attn.qkv(block.attn_ln(x)), 3, axis=-1))
            # scores against the cache and against the new tokens, without concatenating the cache
            old = tf.matmul(q, cache_k[i], transpose_b=True) * scale + cache_bias
            new = tf.matmul(q, k, transpose_b=True) * scale + causal_bias
            weights = tf.nn.softmax(tf.concat([old, new], axis=-1), axis=-1)
            attended = tf.matmul(weights[..., :s], cache_v[i]) + tf.matmul(weights[..., s:], v)
            x = x + block.attn.out(merge(attended))
            attended, cross = cross_attend(split(block.cross.q(block.cross_ln(x))), cross_k[i], cross_v[i])
            x = x + block.cross.out(merge(attended))
            x = x + block.mlp.fc2(tf.nn.gelu(block.mlp.fc1(block.mlp_ln(x)), approximate=False))
            out[f"new_k{i}"], out[f"new_v{i}"], out[f"weights{i}"] = k, v, cross
        out["logits"] = tf.matmul(decoder.ln_post(x), table, transpose_b=True)
        return out

    kv = [None, n_head, None, head]
    cross = [None, n_head, c.n_audio_ctx, head]
    encode_fn = tf.function(encode, input_signature=[tf.TensorSpec([1, c.n_frames, c.n_mels], tf.float32, name="mel")])
    decode_fn = tf.function(
        decode,
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="tokens"),
            tf.TensorSpec([], tf.int32, name="offset"),
            *[tf.TensorSpec(kv, tf.float32, name=n) for n in _names("cache_k", n_layer) + _names("cache_v", n_layer)],
            *[
                tf.TensorSpec(cross, tf.float32, name=n)
                for n in _names("cross_k", n_layer) + _names("cross_v", n_layer)
            ],
        ],
    )
    return encode_fn, decode_fn


def convert(network: WhisperNetwork, name: str, function, quantization: str = "float16") -> bytes:
    """One of :func:`_graphs`'s functions as a LiteRT flatbuffer with one signature, ``name``, of builtin
    ops only (the ``ai_edge_litert`` wheel has no TensorFlow ops to fall back on)."""
    import keras
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    # through a SavedModel: the converter then freezes the Keras variables into the flatbuffer and
    # names the signature's inputs and outputs (from_concrete_functions does one or the other)
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(name, function)
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[name])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def export_whisper_litert(
    model: WhisperModel, folder: str | Path, *, quantization: str = "float16", name: str | None = None
) -> Path:
    """Write a loaded (Keras) Whisper model as a LiteRT model folder; returns the folder.

    The card keeps the model's decoding options and description, names the backend ``whisper-litert``,
    records the quantization, the export's duration and the flatbuffers' SHA-256, and drops the
    measured metrics (the runtime and, quantized, the weights differ: measure anew).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    transcriber = model.transcriber
    network = transcriber.inference.network
    started = time.perf_counter()
    encode_fn, decode_fn = _graphs(network)
    flatbuffers = {
        ENCODER_FILE: convert(network, ENCODE, encode_fn, quantization),
        DECODER_FILE: convert(network, DECODE, decode_fn, quantization),
    }
    seconds = time.perf_counter() - started
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for file, content in flatbuffers.items():
        (folder / file).write_bytes(content)
    transcriber.tokenizer.tokenizer.save(str(folder / TOKENIZER_FILE), pretty=False)
    generation = transcriber.generation
    config: dict[str, Any] = {
        "backend": BACKEND,
        "whisper": network.config.to_dict(),
        "generation": {k: [list(p) if isinstance(p, tuple) else p for p in v] for k, v in asdict(generation).items()},
        "quantization": quantization,
        "exported_from": model.name,
        "export_s": round(seconds, 1),
        "weights": {"path": ".", "sha256": {file: sha256_file(folder / file) for file in flatbuffers}},
        "decoding": model.card.config.get("decoding", {}),
    }
    card = ModelCard(
        name=name or (f"{model.name}-litert" if quantization == "float16" else f"{model.name}-litert-{quantization}"),
        description=f"{model.card.description}; exported to LiteRT ({quantization} weights) from {model.name}",
        trained=model.card.trained,
        training_data=model.card.training_data,
        metrics={},
        config=config,
    )
    card.save(folder)
    return folder


# ---------------------------------------------------------------------------------------------------
# runtime (numpy and ai_edge_litert only)


class _Graph:
    """A flatbuffer's one signature (its only subgraph), inputs and outputs by name, on the
    interpreter's own methods: an input is resized (and the interpreter reallocated) only when its
    shape changes, and inputs set once stay set across calls until the next reallocation."""

    def __init__(self, content: bytes, signature: str, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=content, num_threads=threads)
        runner = self.interpreter.get_signature_runner(signature)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        # a runner holds the interpreter's internals, which the interpreter refuses to reallocate under
        del runner
        self.inputs = {name: d["index"] for name, d in inputs.items()}
        self.outputs = {name: d["index"] for name, d in outputs.items()}
        self.shapes = {name: tuple(int(n) for n in d["shape"]) for name, d in inputs.items()}
        self.interpreter.allocate_tensors()
        # counts reallocations: inputs set before the latest one are gone
        self.generation = 0
        self._resized = False

    def resize(self, name: str, shape: tuple[int, ...]) -> None:
        shape = tuple(int(n) for n in shape)
        if self.shapes[name] != shape:
            self.interpreter.resize_tensor_input(self.inputs[name], list(shape))
            self.shapes[name] = shape
            self._resized = True

    def allocate(self) -> None:
        if self._resized:
            self.interpreter.allocate_tensors()
            self._resized = False
            self.generation += 1

    def set(self, name: str, value: np.ndarray) -> None:
        self.interpreter.set_tensor(self.inputs[name], value)

    def write(self, name: str, index, value: np.ndarray) -> None:
        """Write ``value`` into part of an input, in place (no copy of the rest)."""
        self.interpreter.tensor(self.inputs[name])()[index] = value

    def run(self) -> None:
        self.interpreter.invoke()

    def get(self, name: str) -> np.ndarray:
        return self.interpreter.get_tensor(self.outputs[name])


class CrossKeysValues:
    """The cross-attention keys/values of a batch: per decoder block, keys then values, one
    (N, H, A, D / H) array of the N encoded windows, and which window each of the batch's rows uses.

    Picking rows composes that index instead of copying ~18 MB per row (tiny; more for larger models);
    the decoder reads each window's keys/values once for all its rows (see :meth:`grouping`) and
    copies them into its interpreter only when the windows change.
    """

    def __init__(self, arrays: list[np.ndarray], rows: np.ndarray | None = None) -> None:
        self.arrays = arrays
        self.rows = np.arange(len(arrays[0])) if rows is None else np.asarray(rows, np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, rows: np.ndarray) -> CrossKeysValues:
        return CrossKeysValues(self.arrays, self.rows[np.asarray(rows, np.int64)])

    def grouping(self) -> tuple[np.ndarray, int]:
        """The windows of the rows, once per group, and the group size G: beams and samples of a
        window are G consecutive rows, which the decoder attends to the window's audio together."""
        rows, n = self.rows, len(self.rows)
        group = int(np.argmax(rows != rows[0])) or n
        if group > 1 and n % group == 0 and (rows.reshape(-1, group) == rows[::group, np.newaxis]).all():
            return rows[::group], group
        return rows, 1


def _capacity(length: int, limit: int) -> int:
    """Cache positions for ``length`` tokens: the next power of two from 32, at most ``limit``."""
    return min(limit, max(CACHE_STEP, 1 << max(length - 1, 1).bit_length()))


class KeyValueCache:
    """The decoder's self-attention cache: per decoder block, keys then values, one (B, H, C, D / H)
    array whose first ``length`` positions hold the tokens so far (the rest are zeros or older
    keys/values: masked, and finite).

    The capacity C doubles from 32 up to ``limit`` (n_text_ctx) as the cache grows: a step reads the
    whole cache, so it should not be much longer than the tokens in it, and the decoder's input shape
    (hence its interpreter's allocation) changes only when C does, a few times per window.

    Growing a cache writes the new tokens after ``length`` in the same arrays (unless C has to grow)
    and returns a longer cache; the shorter one stays valid, since its positions are never
    overwritten. Growing it a second time copies the arrays first, so caches behave as values.
    """

    def __init__(
        self,
        arrays: list[np.ndarray],
        length: int,
        limit: int,
        origin: tuple[list[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.arrays, self.length, self.limit = arrays, length, limit
        # (the arrays, the rows) this cache was picked from, which the decoder may hold already
        self.origin = origin
        # the length of the longest cache grown in these arrays, shared by every cache on them
        self._frontier = [length]

    def __len__(self) -> int:
        return len(self.arrays[0])

    @classmethod
    def empty(cls, batch: int, n_arrays: int, n_head: int, head: int, *, tokens: int, limit: int) -> KeyValueCache:
        """A cache with room for ``tokens`` tokens (and more, up to the next capacity)."""
        shape = (batch, n_head, _capacity(tokens + 1, limit), head)
        return cls([np.zeros(shape, np.float32) for _ in range(n_arrays)], 0, limit)

    def grow(self, new: list[np.ndarray]) -> KeyValueCache:
        """This cache followed by the (B, H, T, D / H) keys/values of T new tokens."""
        n, t = self.length, new[0].shape[2]
        if n + t > self.limit:
            raise ValueError(f"the decoder holds {self.limit} tokens; {n} + {t} do not fit")
        shared = self._frontier[0] == n
        if n + t > self.arrays[0].shape[2]:
            arrays, shared = self._resized(_capacity(n + t, self.limit)), False
        else:
            arrays = self.arrays if shared else [a.copy() for a in self.arrays]
        for array, part in zip(arrays, new):
            array[:, :, n : n + t] = part
        grown = KeyValueCache(arrays, n + t, self.limit)
        if shared:
            self._frontier[0] = grown.length
            grown._frontier = self._frontier
        return grown

    def _resized(self, capacity: int, rows: np.ndarray | None = None) -> list[np.ndarray]:
        """New arrays of ``capacity`` positions holding the filled positions of ``rows`` (all rows)."""
        n, arrays = self.length, []
        for a in self.arrays:
            # np.zeros' pages cost nothing until written
            b = np.zeros((len(a) if rows is None else len(rows), a.shape[1], capacity, a.shape[3]), np.float32)
            b[:, :, :n] = a[:, :, :n] if rows is None else a[rows, :, :n]
            arrays.append(b)
        return arrays

    def take(self, rows: np.ndarray) -> KeyValueCache:
        rows = np.asarray(rows, np.int64)
        # only the filled positions are copied
        return KeyValueCache(
            self._resized(self.arrays[0].shape[2], rows), self.length, self.limit, origin=(self.arrays, rows)
        )


class WhisperLiteRTInference:
    """:class:`~asrkit.models.whisper.inference.WhisperInference`'s interface on the LiteRT interpreter,
    so that :class:`~asrkit.models.whisper.transcribe.Transcriber`, the searches of
    :mod:`~asrkit.models.whisper.decoding` and the word alignment run on it unchanged.

    ``encode`` returns the cross keys/values directly (the encoder graph computes them) and
    ``cross_keys_values`` passes them on; caches are :class:`KeyValueCache` and cross keys/values
    :class:`CrossKeysValues`, numpy arrays underneath.

    The decoder's inputs are kept between calls, and are what costs time to copy (~18 MB of audio
    keys/values per window for tiny, ~12 KB of cache per row and token). So a step copies in only its
    tokens when it continues the previous call: the previous step's new keys/values are written into
    the inputs in place, rows picked from the cache held are permuted there (their filled positions
    only), and audio keys/values are copied in only when the windows of the rows change. Anything
    else (another batch size, token count or cache capacity, which reallocates the interpreter; a
    cache from elsewhere) copies everything in again.
    """

    def __init__(self, encoder: bytes, decoder: bytes, config: WhisperConfig, *, threads: int = THREADS) -> None:
        self.config = config
        self._encoder = _Graph(encoder, ENCODE, threads)
        self._decoder = _Graph(decoder, DECODE, threads)
        n_layer = config.n_text_layer
        self.n_layer, self.n_head = n_layer, config.n_text_head
        self.head = config.n_text_state // config.n_text_head
        self._cache_names = _names("cache_k", n_layer) + _names("cache_v", n_layer)
        self._cross_names = _names("cross_k", n_layer) + _names("cross_v", n_layer)
        self._new_names = _names("new_k", n_layer) + _names("new_v", n_layer)
        # what the decoder's inputs hold: (allocation, cross arrays, their windows) and (allocation,
        # cache arrays, length)
        self._cross_in: tuple[int, list[np.ndarray], np.ndarray] | None = None
        # rows per window in the last call
        self._group = 1
        self._cache_in: tuple[int, list[np.ndarray], int] | None = None

    def encode(self, mel: np.ndarray) -> CrossKeysValues:
        """The cross keys/values of log-mel windows (B, n_mels, n_frames), one encoder call per window."""
        per_window = []
        for window in np.asarray(mel, np.float32):
            self._encoder.set("mel", np.ascontiguousarray(window.T[np.newaxis]))
            self._encoder.run()
            per_window.append([self._encoder.get(name) for name in self._cross_names])
        return CrossKeysValues([np.concatenate(parts) for parts in zip(*per_window)])

    def cross_keys_values(self, features: CrossKeysValues) -> CrossKeysValues:
        if not isinstance(features, CrossKeysValues):
            raise TypeError("the LiteRT encoder computes the cross keys/values itself: pass what encode() returned")
        return features

    def gather(self, tensors, rows: np.ndarray):
        """A cache or cross keys/values with its batch rows picked (and repeated) by ``rows``."""
        return tensors.take(rows)

    def _load_cross(self, arrays: list[np.ndarray], windows: np.ndarray, generation: int) -> None:
        held = self._cross_in
        if held and held[0] == generation and held[1] is arrays and np.array_equal(held[2], windows):
            return
        for name, array in zip(self._cross_names, arrays):
            # straight into the interpreter's buffer, without an intermediate copy of the rows
            view = self._decoder.interpreter.tensor(self._decoder.inputs[name])()
            np.take(array, windows, axis=0, out=view, mode="clip")
            del view
        self._cross_in = (generation, arrays, windows)

    def _load_cache(self, cache: KeyValueCache, generation: int) -> None:
        held, graph, n = self._cache_in, self._decoder, cache.length
        if held and held[0] == generation and held[2] == n:
            if held[1] is cache.arrays:
                return
            if cache.origin is not None and cache.origin[0] is held[1]:
                # picked from the cache held (same batch size): permute its filled positions there
                for name in self._cache_names:
                    view = graph.interpreter.tensor(graph.inputs[name])()
                    view[:, :, :n] = view[cache.origin[1], :, :n]
                    del view
                self._cache_in = (generation, cache.arrays, n)
                return
        for name, array in zip(self._cache_names, cache.arrays):
            graph.set(name, array)
        self._cache_in = (generation, cache.arrays, n)

    def _run(self, tokens: np.ndarray, cross_kv: CrossKeysValues, cache: KeyValueCache) -> KeyValueCache:
        """Run the decoder on ``tokens`` (B, T) after ``cache``; returns the grown cache."""
        graph = self._decoder
        tokens = np.ascontiguousarray(tokens, np.int32)
        batch = len(tokens)
        if len(cross_kv) != batch or len(cache) != batch:
            raise ValueError(f"{batch} rows of tokens, {len(cross_kv)} of cross keys/values, {len(cache)} of cache")
        graph.resize("tokens", tokens.shape)
        for name, array in zip(self._cache_names, cache.arrays):
            graph.resize(name, array.shape)
        windows, self._group = cross_kv.grouping()
        for name, array in zip(self._cross_names, cross_kv.arrays):
            graph.resize(name, (len(windows), *array.shape[1:]))
        graph.allocate()
        graph.set("tokens", tokens)
        graph.set("offset", np.array(cache.length, np.int32))
        self._load_cross(cross_kv.arrays, windows, graph.generation)
        self._load_cache(cache, graph.generation)
        graph.run()
        new = [graph.get(name) for name in self._new_names]
        grown = cache.grow(new)
        if grown.arrays is cache.arrays:
            # the same keys/values into the interpreter's copy of the arrays
            positions = (slice(None), slice(None), slice(cache.length, grown.length))
            for name, part in zip(self._cache_names, new):
                graph.write(name, positions, part)
            self._cache_in = (graph.generation, grown.arrays, grown.length)
        else:
            self._cache_in = None
        return grown

    def _empty(self, tokens: np.ndarray) -> KeyValueCache:
        batch, length = np.shape(tokens)
        return KeyValueCache.empty(
            batch, 2 * self.n_layer, self.n_head, self.head, tokens=length, limit=self.config.n_text_ctx
        )

    def prefill(self, tokens: np.ndarray, cross_kv: CrossKeysValues):
        """Logits (B, T, n_vocab) of a prompt (B, T) and the cache it leaves."""
        cache = self._run(tokens, cross_kv, self._empty(tokens))
        return self._decoder.get("logits"), cache

    def step(self, tokens: np.ndarray, cross_kv: CrossKeysValues, cache: KeyValueCache):
        """Logits (B, n_vocab) after the new ``tokens`` (B, T), and the grown cache."""
        cache = self._run(tokens, cross_kv, cache)
        return self._decoder.get("logits")[:, -1], cache

    def truncate(self, cache: KeyValueCache, length: int) -> KeyValueCache:
        """A cache's first ``length`` positions (the decoder is causal: they are those tokens' cache)."""
        return KeyValueCache(cache.arrays, length, cache.limit)

    def cross_attention(self, tokens: np.ndarray, cross_kv: CrossKeysValues):
        """Logits (B, T, n_vocab) and per block the cross-attention weights (B, n_head, T, A) of a
        whole token sequence (B, T), prompt included."""
        self._run(tokens, cross_kv, self._empty(tokens))
        graph, (b, t), g = self._decoder, np.shape(tokens), self._group
        weights = []
        for i in range(self.n_layer):
            # (N, H, G * T, A) -> (B, H, T, A)
            w = graph.get(f"weights{i}")
            n, h, _, a = w.shape
            weights.append(np.ascontiguousarray(w.reshape(n, h, g, t, a).transpose(0, 2, 1, 3, 4).reshape(b, h, t, a)))
        return graph.get("logits"), weights


class WhisperLiteRTModel(WhisperModel):
    """Whisper exported by :func:`export_whisper_litert`, run by the LiteRT interpreter (on the CPU, one
    thread) with the Keras model's transcription policy and searches."""

    # the exported encoder takes whole 30-s windows only
    streaming = StreamingOptions(window_lengths_s=(float(CHUNK_LENGTH_S),))

    @classmethod
    def load(cls, folder: str | Path, *, batch_size: int = 8, device: str = "auto") -> WhisperLiteRTModel:
        """Load a Whisper LiteRT folder; LiteRT runs on the CPU whatever ``device`` asks."""
        folder = Path(folder)
        card = ModelCard.load(folder)
        weights = weights_folder(card, folder)
        verify_weights(card, weights)
        config = WhisperConfig.from_dict(card.config["whisper"])
        gen = card.config.get("generation", {})
        generation = GenerationConfig(
            suppress_ids=tuple(gen.get("suppress_ids", ())),
            suppress_ids_begin=tuple(gen.get("suppress_ids_begin", ())),
            alignment_heads=tuple(tuple(pair) for pair in gen.get("alignment_heads", ())),
        )
        tokenizer = WhisperTokenizer.from_file(weights / TOKENIZER_FILE, multilingual=config.multilingual)
        inference = WhisperLiteRTInference(
            (weights / ENCODER_FILE).read_bytes(), (weights / DECODER_FILE).read_bytes(), config
        )
        transcriber = Transcriber(inference, tokenizer, generation, options=_options(card.config.get("decoding", {})))
        return cls(transcriber, card, batch_size=batch_size)

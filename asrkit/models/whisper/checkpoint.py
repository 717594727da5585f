"""Reading Whisper weights: CTranslate2 folders (``model.bin``) and Hugging Face folders (``model.safetensors``).

Both readers return the same thing, a :class:`Checkpoint`: the network's sizes, what the checkpoint says
about decoding, and every weight as a float32 array under asrkit's own names, already laid out as the
Keras layers of :mod:`asrkit.models.whisper.network` hold them (dense kernels (in, out), convolution
kernels (width, in, out), the token embedding as the output projection's kernel (D, n_vocab)). Nothing
here unpickles or imports torch.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asrkit.contracts import ModelFileError, json_kind, regular_file
from asrkit.models.whisper.config import GenerationConfig, WhisperConfig

CT2_FILE = "model.bin"
SAFETENSORS_FILE = "model.safetensors"
HF_CONFIG_FILE = "config.json"
HF_GENERATION_FILE = "generation_config.json"
# the vocabulary, in the Hugging Face tokenizers format, beside the weights in both kinds of folder
TOKENIZER_FILE = "tokenizer.json"
# the CTranslate2 binary layout this reader understands (CTranslate2 3.x and 4.x write 6)
CT2_VERSION = 6
# CTranslate2's dtype codes
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_CHUNK = 1 << 20
# A Whisper config.json or generation_config.json is a few kilobytes; past this it is not one.
MAX_CONFIG_BYTES = 1 << 20


class CheckpointError(ModelFileError):
    """A model file that is missing, truncated, corrupt or not a Whisper checkpoint."""


def _json_object(path: Path) -> dict:
    """A checkpoint's JSON file (config.json, generation_config.json) as an object, or CheckpointError naming it."""
    regular_file(path, what="the checkpoint's settings", max_bytes=MAX_CONFIG_BYTES, error=CheckpointError)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not UTF-8 text: it is corrupt") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    except RecursionError:
        raise CheckpointError(f"{path} nests its JSON too deeply to be a checkpoint's settings") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds {json_kind(data)}, not a JSON object")
    return data


def _ids(data: dict, key: str, path: Path, *, pairs: bool = False) -> tuple:
    """``data[key]``, a list of token ids (or of [layer, head] pairs), as a tuple; empty when absent."""
    value = data.get(key) or []

    def is_id(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    def fits(item) -> bool:
        return isinstance(item, list) and len(item) == 2 and all(map(is_id, item)) if pairs else is_id(item)

    if not isinstance(value, list) or not all(map(fits, value)):
        kind = "[layer, head] pairs" if pairs else "token ids"
        raise CheckpointError(f"{path}: {key} must be a list of {kind}, not {value!r:.80}")
    return tuple(tuple(item) for item in value) if pairs else tuple(value)


@dataclass(frozen=True)
class Checkpoint:
    """A Whisper checkpoint in memory."""

    # the network's sizes
    config: WhisperConfig
    # tokens to suppress and the alignment heads
    generation: GenerationConfig
    # asrkit weight name -> float32 array in Keras layout
    weights: dict[str, np.ndarray]


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(_CHUNK):
            digest.update(piece)
    return digest.hexdigest()


def _bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    # bfloat16 is the top half of a float32
    return (raw.astype(np.uint32) << 16).view(np.float32)


class _Reader:
    """Little-endian fields from the bytes of one file, failing with the file's name."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CheckpointError(
                f"{self.path} is truncated: needed {n} bytes at offset {self.pos} of {len(self.data)}"
            )
        piece = self.data[self.pos : self.pos + n]
        self.pos += n
        return piece

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = self.take(length)
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(
                f"{self.path} is corrupt: a name at offset {self.pos - length} is not UTF-8"
            ) from None


def read_ct2_variables(path: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` (aliases resolved), as stored.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, of another layout version or not a Whisper model.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist: a CTranslate2 Whisper folder holds {CT2_FILE}") from None
    except OSError as err:
        raise CheckpointError(f"{path} cannot be read: {err.strerror}") from None
    reader = _Reader(data, path)
    (version,) = reader.unpack("I")
    if version != CT2_VERSION:
        raise CheckpointError(f"{path} is CTranslate2 binary version {version}; asrkit reads version {CT2_VERSION}")
    spec = reader.string()
    if spec != "WhisperSpec":
        raise CheckpointError(f"{path} holds a {spec!r}, not a WhisperSpec")
    reader.unpack("I")  # the spec's revision: every revision stores Whisper the same way
    (count,) = reader.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = reader.string()
        (rank,) = reader.unpack("B")
        shape = reader.unpack(f"{rank}I")
        (code,) = reader.unpack("B")
        (nbytes,) = reader.unpack("I")
        if code not in _CT2_DTYPES:
            raise CheckpointError(f"{path} is corrupt: variable {name!r} has unknown dtype code {code}")
        dtype = _CT2_DTYPES[code]
        raw = reader.take(nbytes)
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if nbytes != itemsize * int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{path} is corrupt: variable {name!r} of shape {shape} has {nbytes} bytes")
        if dtype == "bfloat16":
            array = _bfloat16_to_float32(np.frombuffer(raw, np.uint16))
        else:
            array = np.frombuffer(raw, dtype)
        variables[name] = array.reshape(shape)
    (aliases,) = reader.unpack("I")
    for _ in range(aliases):
        alias, target = reader.string(), reader.string()
        if target not in variables:
            raise CheckpointError(f"{path} is corrupt: alias {alias!r} names a missing variable {target!r}")
        variables[alias] = variables[target]
    if reader.pos != len(data):
        raise CheckpointError(f"{path} is corrupt: {len(data) - reader.pos} unexpected bytes after the last alias")
    return variables


def _layers(names, prefix: str) -> int:
    pattern = re.compile(rf"{prefix}/layer_(\d+)/")
    return len({m[1] for n in names if (m := pattern.match(n))})


def _dense(weight: np.ndarray, bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    # CTranslate2 and PyTorch store (out, in); Keras multiplies by (in, out)
    out = {"kernel": np.ascontiguousarray(weight.T, np.float32)}
    if bias is not None:
        out["bias"] = np.asarray(bias, np.float32)
    return out


def _put(weights: dict[str, np.ndarray], prefix: str, parts: dict[str, np.ndarray]) -> None:
    for key, value in parts.items():
        weights[f"{prefix}/{key}"] = np.asarray(value, np.float32)


def _conv(weight: np.ndarray) -> np.ndarray:
    # (out, in, width) -> Keras Conv1D's (width, in, out)
    return np.ascontiguousarray(np.transpose(weight, (2, 1, 0)), np.float32)


def _read_generation(folder: Path, **fallback) -> GenerationConfig:
    path = folder / HF_CONFIG_FILE
    if not path.exists() and not path.is_symlink():
        return GenerationConfig(**fallback)
    data = _json_object(path)
    return GenerationConfig(
        suppress_ids=_ids(data, "suppress_ids", path),
        suppress_ids_begin=_ids(data, "suppress_ids_begin", path),
        alignment_heads=_ids(data, "alignment_heads", path, pairs=True),
    )


def read_ct2_folder(folder: str | Path) -> Checkpoint:
    """A CTranslate2 Whisper folder: ``model.bin`` and the ``config.json`` beside it."""
    folder = Path(folder)
    v = read_ct2_variables(folder / CT2_FILE)
    names = list(v)
    try:
        config = WhisperConfig(
            n_mels=v["encoder/conv1/weight"].shape[1],
            n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
            n_audio_state=v["encoder/conv1/weight"].shape[0],
            n_audio_head=int(v["encoder/num_heads"]),
            n_audio_layer=_layers(names, "encoder"),
            n_vocab=v["decoder/embeddings/weight"].shape[0],
            n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
            n_text_state=v["decoder/embeddings/weight"].shape[1],
            n_text_head=int(v["decoder/num_heads"]),
            n_text_layer=_layers(names, "decoder"),
        )
        w: dict[str, np.ndarray] = {}
        for i in (1, 2):
            w[f"encoder/conv{i}/kernel"] = _conv(v[f"encoder/conv{i}/weight"])
            w[f"encoder/conv{i}/bias"] = np.asarray(v[f"encoder/conv{i}/bias"], np.float32)
        w["encoder/positions"] = np.asarray(v["encoder/position_encodings/encodings"], np.float32)
        for side, n_layers in (("encoder", config.n_audio_layer), ("decoder", config.n_text_layer)):
            for i in range(n_layers):
                src, dst = f"{side}/layer_{i}", f"{side}/block_{i}"
                blocks = [("self_attention", "attn")] + ([("attention", "cross")] if side == "decoder" else [])
                for ct2, ours in blocks:
                    _put(
                        w,
                        f"{dst}/{ours}_ln",
                        {"gamma": v[f"{src}/{ct2}/layer_norm/gamma"], "beta": v[f"{src}/{ct2}/layer_norm/beta"]},
                    )
                    n_linear = 2 if ct2 == "self_attention" else 3
                    names_out = ["qkv", "out"] if n_linear == 2 else ["q", "kv", "out"]
                    for j, part in enumerate(names_out):
                        _put(
                            w,
                            f"{dst}/{ours}/{part}",
                            _dense(v[f"{src}/{ct2}/linear_{j}/weight"], v[f"{src}/{ct2}/linear_{j}/bias"]),
                        )
                _put(
                    w,
                    f"{dst}/mlp_ln",
                    {"gamma": v[f"{src}/ffn/layer_norm/gamma"], "beta": v[f"{src}/ffn/layer_norm/beta"]},
                )
                for j in (0, 1):
                    _put(
                        w,
                        f"{dst}/mlp/fc{j + 1}",
                        _dense(v[f"{src}/ffn/linear_{j}/weight"], v[f"{src}/ffn/linear_{j}/bias"]),
                    )
            _put(w, f"{side}/ln_post", {"gamma": v[f"{side}/layer_norm/gamma"], "beta": v[f"{side}/layer_norm/beta"]})
        w["decoder/embedding"] = np.ascontiguousarray(v["decoder/embeddings/weight"].T, np.float32)
        w["decoder/positions"] = np.asarray(v["decoder/position_encodings/encodings"], np.float32)
    except KeyError as err:
        raise CheckpointError(f"{folder / CT2_FILE} lacks the variable {err.args[0]!r}: not a Whisper model") from None
    # a variable of another rank or size than Whisper's (indexing its shape, or reading a count from it)
    except (IndexError, TypeError, ValueError) as err:
        raise CheckpointError(f"{folder / CT2_FILE} is corrupt: a variable has the wrong shape ({err})") from None
    return Checkpoint(config, _read_generation(folder), w)


def read_hf_folder(folder: str | Path) -> Checkpoint:
    """A Hugging Face Whisper folder: ``config.json``, ``model.safetensors`` and, if present,
    ``generation_config.json`` (suppressed tokens, alignment heads)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    for name in (HF_CONFIG_FILE, SAFETENSORS_FILE):
        if not (folder / name).exists():
            raise CheckpointError(f"{folder} is not a Hugging Face Whisper folder: {name} is missing")
    hf = _json_object(folder / HF_CONFIG_FILE)
    try:
        tensors = load_file(regular_file(folder / SAFETENSORS_FILE, what="the weights", error=CheckpointError))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{folder}: cannot read the checkpoint ({err})") from None
    if hf.get("model_type") != "whisper":
        raise CheckpointError(f"{folder / HF_CONFIG_FILE} has model_type {hf.get('model_type')!r}, not 'whisper'")
    sizes = {}
    for key in (
        "num_mel_bins",
        "max_source_positions",
        "d_model",
        "encoder_attention_heads",
        "encoder_layers",
        "vocab_size",
        "max_target_positions",
        "decoder_attention_heads",
        "decoder_layers",
    ):
        sizes[key] = hf.get(key)
        if not isinstance(sizes[key], int) or isinstance(sizes[key], bool) or sizes[key] <= 0:
            raise CheckpointError(
                f"{folder / HF_CONFIG_FILE}: {key} must be a positive whole number, not {sizes[key]!r}"
            )
    config = WhisperConfig(
        n_mels=sizes["num_mel_bins"],
        n_audio_ctx=sizes["max_source_positions"],
        n_audio_state=sizes["d_model"],
        n_audio_head=sizes["encoder_attention_heads"],
        n_audio_layer=sizes["encoder_layers"],
        n_vocab=sizes["vocab_size"],
        n_text_ctx=sizes["max_target_positions"],
        n_text_state=sizes["d_model"],
        n_text_head=sizes["decoder_attention_heads"],
        n_text_layer=sizes["decoder_layers"],
    )
    t = {name.removeprefix("model."): np.asarray(array, np.float32) for name, array in tensors.items()}
    try:
        w: dict[str, np.ndarray] = {}
        for i in (1, 2):
            w[f"encoder/conv{i}/kernel"] = _conv(t[f"encoder.conv{i}.weight"])
            w[f"encoder/conv{i}/bias"] = t[f"encoder.conv{i}.bias"]
        w["encoder/positions"] = t["encoder.embed_positions.weight"]
        for side, n_layers in (("encoder", config.n_audio_layer), ("decoder", config.n_text_layer)):
            for i in range(n_layers):
                src, dst = f"{side}.layers.{i}", f"{side}/block_{i}"
                attn = f"{src}.self_attn"
                d = config.n_audio_state if side == "encoder" else config.n_text_state
                zero = np.zeros(d, np.float32)  # Whisper's key projections have no bias
                qkv = np.concatenate(
                    [t[f"{attn}.q_proj.weight"], t[f"{attn}.k_proj.weight"], t[f"{attn}.v_proj.weight"]]
                )
                qkv_bias = np.concatenate([t[f"{attn}.q_proj.bias"], zero, t[f"{attn}.v_proj.bias"]])
                _put(w, f"{dst}/attn", {f"qkv/{k}": a for k, a in _dense(qkv, qkv_bias).items()})
                _put(w, f"{dst}/attn/out", _dense(t[f"{attn}.out_proj.weight"], t[f"{attn}.out_proj.bias"]))
                _put(
                    w,
                    f"{dst}/attn_ln",
                    {"gamma": t[f"{src}.self_attn_layer_norm.weight"], "beta": t[f"{src}.self_attn_layer_norm.bias"]},
                )
                if side == "decoder":
                    cross = f"{src}.encoder_attn"
                    kv = np.concatenate([t[f"{cross}.k_proj.weight"], t[f"{cross}.v_proj.weight"]])
                    kv_bias = np.concatenate([zero, t[f"{cross}.v_proj.bias"]])
                    _put(w, f"{dst}/cross/q", _dense(t[f"{cross}.q_proj.weight"], t[f"{cross}.q_proj.bias"]))
                    _put(w, f"{dst}/cross/kv", _dense(kv, kv_bias))
                    _put(w, f"{dst}/cross/out", _dense(t[f"{cross}.out_proj.weight"], t[f"{cross}.out_proj.bias"]))
                    _put(
                        w,
                        f"{dst}/cross_ln",
                        {
                            "gamma": t[f"{src}.encoder_attn_layer_norm.weight"],
                            "beta": t[f"{src}.encoder_attn_layer_norm.bias"],
                        },
                    )
                _put(
                    w,
                    f"{dst}/mlp_ln",
                    {"gamma": t[f"{src}.final_layer_norm.weight"], "beta": t[f"{src}.final_layer_norm.bias"]},
                )
                _put(w, f"{dst}/mlp/fc1", _dense(t[f"{src}.fc1.weight"], t[f"{src}.fc1.bias"]))
                _put(w, f"{dst}/mlp/fc2", _dense(t[f"{src}.fc2.weight"], t[f"{src}.fc2.bias"]))
            _put(w, f"{side}/ln_post", {"gamma": t[f"{side}.layer_norm.weight"], "beta": t[f"{side}.layer_norm.bias"]})
        w["decoder/embedding"] = np.ascontiguousarray(t["decoder.embed_tokens.weight"].T)
        w["decoder/positions"] = t["decoder.embed_positions.weight"]
    except KeyError as err:
        raise CheckpointError(
            f"{folder / SAFETENSORS_FILE} lacks the tensor {err.args[0]!r}: not a Whisper model"
        ) from None
    except (IndexError, TypeError, ValueError) as err:
        raise CheckpointError(f"{folder / SAFETENSORS_FILE} is corrupt: a tensor has the wrong shape ({err})") from None
    generation = GenerationConfig()
    gen_path = folder / HF_GENERATION_FILE
    if gen_path.exists() or gen_path.is_symlink():
        gen = _json_object(gen_path)
        generation = GenerationConfig(
            suppress_ids=_ids(gen, "suppress_tokens", gen_path),
            suppress_ids_begin=_ids(gen, "begin_suppress_tokens", gen_path),
            alignment_heads=_ids(gen, "alignment_heads", gen_path, pairs=True),
        )
    return Checkpoint(config, generation, w)


def is_whisper_folder(folder: Path) -> bool:
    """A CTranslate2 Whisper folder (``model.bin``; loading it names a missing ``tokenizer.json``) or a
    Hugging Face one (``model.safetensors`` and a config.json whose model_type is whisper), without an asrkit card."""
    if (folder / "card.json").exists() or (folder / "card.json").is_symlink():
        return False
    if (folder / CT2_FILE).is_file():
        return True
    if (folder / SAFETENSORS_FILE).is_file() and (folder / HF_CONFIG_FILE).is_file():
        try:
            return json.loads((folder / HF_CONFIG_FILE).read_text(encoding="utf-8")).get("model_type") == "whisper"
        except (OSError, json.JSONDecodeError):
            return False
    return False


def read_checkpoint(folder: str | Path) -> Checkpoint:
    """Whichever kind of Whisper folder ``folder`` is."""
    folder = Path(folder)
    if (folder / CT2_FILE).is_file():
        return read_ct2_folder(folder)
    if (folder / SAFETENSORS_FILE).is_file():
        return read_hf_folder(folder)
    raise CheckpointError(
        f"{folder} holds neither {CT2_FILE} (CTranslate2) nor {SAFETENSORS_FILE} (Hugging Face): not a Whisper folder"
    )

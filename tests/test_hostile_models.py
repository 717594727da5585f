"""Hostile model folders: each row builds one damaged or crafted folder and names the asrkit error that
loading it must raise (never a traceback from deep inside a reader, a hang, or a file read outside it).

The catalogue is data: ``(id, build, error class, fragment of the message)``; ``build(tmp_path, tiny)``
makes the folder (``tiny``: a small Keras CTC model folder to copy) and returns it.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from test_whisper_model import MODEL_DIR, SHIPPED_CARD, needs_weights

import asrkit.models as registry
from asrkit.contracts import CARD_FILE, MAX_CARD_BYTES, ModelCard
from asrkit.errors import AsrkitError
from asrkit.lm import MAX_ARPA_LINE_CHARS, LMError, NGramLM
from asrkit.models import CardError, ModelFileError, UnknownModelError, list_models, load_model
from asrkit.models.ctc import CTCModelConfig
from asrkit.models.whisper.checkpoint import CheckpointError
from asrkit.models.whisper.tokenizer import TokenizerError

CTC_CONFIG = CTCModelConfig(conv_channels=8, rnn_layers=1, rnn_units=16).to_dict()


def _card(folder: Path, text: str | bytes | None = None, **config) -> Path:
    """``folder`` with a card.json: ``text`` as given, or a CTC card whose config has ``config`` merged in."""
    folder.mkdir(parents=True, exist_ok=True)
    if text is None:
        card = ModelCard("hostile", "a crafted model folder", trained=False, config={**CTC_CONFIG, **config})
        text = json.dumps(card.to_dict())
    (folder / CARD_FILE).write_bytes(text.encode() if isinstance(text, str) else text)
    return folder


def _raw_card(**fields) -> str:
    return json.dumps({"name": "hostile", "description": "d", "trained": True, **fields})


def _with_lm(name: str, make=None):
    """A CTC card whose decoder names the language model ``name``; ``make(folder)`` puts something there."""

    def build(tmp_path: Path, tiny: Path) -> Path:
        folder = _card(tmp_path / "m", decoder={"lm": name})
        if make:
            make(folder)
        return folder

    return build


def _keras(damage):
    """A copy of the tiny Keras model with ``damage(folder)`` done to it."""

    def build(tmp_path: Path, tiny: Path) -> Path:
        folder = tmp_path / "m"
        shutil.copytree(tiny, folder)
        damage(folder)
        return folder

    return build


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _lambda_network(folder: Path) -> None:
    import keras

    inputs = keras.Input((None, 80))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(folder / "model.keras")


def _whisper_card(weights: object, **config):
    """The shipped Whisper card with ``config["weights"]`` replaced and ``config`` merged in."""

    def build(tmp_path: Path, tiny: Path) -> Path:
        card = json.loads(SHIPPED_CARD.read_text(encoding="utf-8"))
        card["config"] = {**card["config"], "weights": weights, **config}
        return _card(tmp_path / "w", json.dumps(card))

    return build


def _ct2_copy(*, model_bin: bytes | None = None, config: str | None = None, tokenizer: bool = True):
    """A bare CTranslate2 folder: the shipped files linked, or ``model_bin`` / ``config`` written instead."""

    def build(tmp_path: Path, tiny: Path) -> Path:
        folder = tmp_path / "ct2"
        folder.mkdir()
        for name in ("model.bin", "config.json", "tokenizer.json"):
            if name == "model.bin" and model_bin is not None:
                (folder / name).write_bytes(model_bin)
            elif name == "config.json" and config is not None:
                (folder / name).write_text(config, encoding="utf-8")
            elif name != "tokenizer.json" or tokenizer:
                (folder / name).symlink_to(MODEL_DIR / name)
        return folder

    return build


def _finetuned(file: str, make=None, sha256: str = "0" * 64):
    """The shipped Whisper model fine-tuned by ``file`` (made by ``make(folder)``), with ``sha256``."""

    def build(tmp_path: Path, tiny: Path) -> Path:
        card = json.loads(SHIPPED_CARD.read_text(encoding="utf-8"))
        card["config"]["finetuned"] = {"file": file, "sha256": sha256, "base_model": card["name"]}
        folder = _card(tmp_path / "ft", json.dumps(card))
        if make:
            make(folder)
        return folder

    return build


def _card_link(target: str):
    """A folder whose card.json is a link to ``target``."""

    def build(tmp_path: Path, tiny: Path) -> Path:
        folder = tmp_path / "m"
        folder.mkdir()
        (folder / CARD_FILE).symlink_to(target)
        return folder

    return build


def _litert(make=None):
    """A LiteRT CTC card, and ``make(folder)`` done beside it."""

    def build(tmp_path: Path, tiny: Path) -> Path:
        folder = _card(tmp_path / "m", backend="litert-ctc")
        if make:
            make(folder)
        return folder

    return build


def _hashed_weights(tmp_path: Path, tiny: Path) -> Path:
    """A Whisper card whose checksum of model.bin does not match the (damaged) model.bin."""
    weights = _ct2_copy(model_bin=b"\x06\0\0\0")(tmp_path, tiny)
    return _whisper_card({"path": str(weights), "sha256": {"model.bin": "0" * 64}})(tmp_path, tiny)


def _ct2_bytes(variables: dict[str, np.ndarray]) -> bytes:
    """A CTranslate2 model.bin (layout version 6) holding ``variables`` as float32, without aliases."""

    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 1, len(variables))
    for name, array in variables.items():
        data = np.asarray(array, np.float32).tobytes()
        out += string(name) + struct.pack(f"<B{array.ndim}I", array.ndim, *array.shape)
        out += struct.pack("<BI", 0, len(data)) + data
    return out + struct.pack("<I", 0)


def _junk(name: str, data: bytes = b"not what it should be"):
    return lambda folder: (folder / name).write_bytes(data)


def _link(name: str, target: str):
    return lambda folder: (folder / name).symlink_to(target)


# (id, build(tmp_path, tiny) -> folder, error class, fragment of its message)
CARD_CASES = [
    ("card-not-json", lambda t, _: _card(t / "m", "{"), CardError, "is not valid JSON"),
    ("card-a-list", lambda t, _: _card(t / "m", "[1, 2]"), CardError, "holds an array, not a JSON object"),
    ("card-not-utf8", lambda t, _: _card(t / "m", b'{"name": "\xff"}'), CardError, "is not UTF-8 text"),
    ("card-deeply-nested", lambda t, _: _card(t / "m", "[" * 100_000 + "]" * 100_000), CardError, "too deeply"),
    ("card-too-large", lambda t, _: _card(t / "m", " " * (MAX_CARD_BYTES + 1)), CardError, "at most 1,048,576"),
    ("card-is-dev-zero", _card_link("/dev/zero"), CardError, "is not a regular file"),
    ("card-missing-fields", lambda t, _: _card(t / "m", "{}"), CardError, "lacks the fields: name, description"),
    ("card-name-a-number", lambda t, _: _card(t / "m", _raw_card(name=7)), CardError, "name must be a string"),
    (
        "card-trained-a-string",
        lambda t, _: _card(t / "m", _raw_card(trained="no")),
        CardError,
        "trained must be true or false",
    ),
    ("card-config-a-list", lambda t, _: _card(t / "m", _raw_card(config=[1])), CardError, "config must be an object"),
    ("card-unknown-field", lambda t, _: _card(t / "m", _raw_card(why=1)), CardError, "unknown fields: why"),
    (
        "backend-a-list",
        lambda t, _: _card(t / "m", _raw_card(config={"backend": [1]})),
        UnknownModelError,
        "names backend [1]",
    ),
    ("ctc-config-unknown-field", lambda t, _: _card(t / "m", depth=3), CardError, "unknown CTCModelConfig fields"),
    ("ctc-decoder-not-object", lambda t, _: _card(t / "m", decoder=[1]), CardError, "not a CTC model's"),
    ("ctc-layers-a-string", lambda t, _: _card(t / "m", rnn_units="16"), CardError, "rnn_units must be like 224"),
    ("ctc-alpha-a-string", lambda t, _: _card(t / "m", decoder={"alpha": "high"}), CardError, "alpha must be like 0.5"),
]
# the cards that cannot be read at all: the registry lists them as broken
BROKEN_CARDS = [c for c in CARD_CASES if c[0].startswith("card-")]
LM_CASES = [
    ("lm-absolute-path", _with_lm("/etc/passwd"), ModelFileError, "outside the model folder"),
    ("lm-parent-path", _with_lm("../../../../etc/passwd"), ModelFileError, "outside the model folder"),
    (
        "lm-link-leading-out",
        _with_lm("lm.arpa", _link("lm.arpa", "/etc/passwd")),
        ModelFileError,
        "outside the model folder",
    ),
    ("lm-dev-zero-link-out", _with_lm("z.arpa", _link("z.arpa", "/dev/zero")), ModelFileError, "outside the model"),
    ("lm-missing", _with_lm("lm.arpa"), ModelFileError, "the language model"),
    ("lm-a-number", _with_lm(5), CardError, "DecoderConfig.lm must be str or null, not 5"),
    ("lm-a-folder", _with_lm("sub", lambda f: (f / "sub").mkdir()), ModelFileError, "is not a regular file"),
    (
        "lm-endless-line",
        _with_lm("lm.arpa", _junk("lm.arpa", b"\\1-grams:\n" + b"x" * (MAX_ARPA_LINE_CHARS + 10))),
        LMError,
        f"longer than {MAX_ARPA_LINE_CHARS}",
    ),
    ("lm-not-gzip", _with_lm("lm.arpa.gz", _junk("lm.arpa.gz")), LMError, "cannot read the language model"),
    (
        "lm-truncated-gzip",
        _with_lm("lm.arpa.gz", _junk("lm.arpa.gz", gzip.compress(b"\\1-grams:\n-1 a\n" * 99)[:40])),
        LMError,
        "truncated",
    ),
    ("lm-not-utf8", _with_lm("lm.arpa", _junk("lm.arpa", b"\\1-grams:\n-1.0 \xff\xfe\n")), LMError, "not UTF-8"),
    ("lm-bad-section", _with_lm("lm.arpa", _junk("lm.arpa", b"\\x-grams:\n-1 a\n")), LMError, "malformed ARPA section"),
    ("lm-short-line", _with_lm("lm.arpa", _junk("lm.arpa", b"\\2-grams:\n-1 a\n")), LMError, "malformed ARPA line"),
]
KERAS_CASES = [
    ("keras-missing", _keras(lambda f: (f / "model.keras").unlink()), ModelFileError, "model.keras is missing"),
    ("keras-truncated", _keras(lambda f: _truncate(f / "model.keras", 0.5)), ModelFileError, "truncated or corrupt"),
    ("keras-empty", _keras(lambda f: _truncate(f / "model.keras", 0)), ModelFileError, "not a .keras archive"),
    ("keras-safe-mode", _keras(_lambda_network), ModelFileError, "safe_mode"),
    ("litert-missing", _litert(), ModelFileError, "model.tflite is missing"),
    ("litert-garbage", _litert(_junk("model.tflite", b"\0" * 64)), ModelFileError, "not a LiteRT CTC network"),
]
WHISPER_CARD_CASES = [
    ("whisper-weights-a-list", _whisper_card([1]), CardError, "config.weights must be an object"),
    ("whisper-package-dotted", _whisper_card({"package": "asrkit.cli", "path": "."}), CardError, "top-level package"),
    ("whisper-package-path-out", _whisper_card({"package": "asrkit", "path": "../.."}), CardError, "leads outside"),
    ("whisper-weights-not-a-folder", _whisper_card({"path": "card.json"}), CheckpointError, "is not a folder"),
    (
        "whisper-sha-names-etc-passwd",
        _whisper_card({"path": ".", "sha256": {"../../../../etc/passwd": "0"}}),
        CheckpointError,
        "outside the model folder",
    ),
    ("whisper-sha-a-list", _whisper_card({"path": ".", "sha256": ["model.bin"]}), CardError, "map file names"),
    (
        "whisper-decoding-unknown",
        _whisper_card({"path": "."}, decoding={"beams": 5}),
        CardError,
        "unknown decoding options: beams",
    ),
    # a wrong type is named before the options' own checks could meet it; a value out of range is named too
    ("whisper-beam-as-text", _whisper_card({"path": "."}, decoding={"beam_size": "5"}), CardError, "beam_size must"),
    ("whisper-beam-zero", _whisper_card({"path": "."}, decoding={"beam_size": 0}), CardError, "from 1 to 64"),
    ("whisper-beam-null", _whisper_card({"path": "."}, decoding={"beam_size": None}), CardError, "not null"),
    ("whisper-beam-huge", _whisper_card({"path": "."}, decoding={"best_of": 10**9}), CardError, "from 1 to 64"),
    (
        "whisper-temperature-text",
        _whisper_card({"path": "."}, decoding={"temperatures": [0, "hot"]}),
        CardError,
        "temperatures must be like",
    ),
    ("whisper-tokens-none", _whisper_card({"path": "."}, decoding={"max_new_tokens": 0}), CardError, "at least 1"),
    ("whisper-tokens-text", _whisper_card({"path": "."}, decoding={"max_new_tokens": "9"}), CardError, "int or null"),
]
WHISPER_FILE_CASES = [
    ("whisper-model-bin-corrupt", _ct2_copy(model_bin=b"\x06\0\0\0\x0b\0WhisperSpec"), CheckpointError, "truncated"),
    ("whisper-model-bin-hash", _hashed_weights, CheckpointError, "has SHA-256"),
    (
        "whisper-model-bin-wrong-shape",
        _ct2_copy(model_bin=_ct2_bytes({"encoder/conv1/weight": np.zeros(3)})),
        CheckpointError,
        "model.bin is corrupt: a variable has the wrong shape",
    ),
    ("whisper-no-tokenizer", _ct2_copy(tokenizer=False), TokenizerError, "tokenizer.json: no such file"),
    ("whisper-config-garbled", _ct2_copy(config="{not json"), CheckpointError, "config.json is not valid JSON"),
    ("whisper-config-a-list", _ct2_copy(config="[]"), CheckpointError, "config.json holds an array, not a JSON object"),
    (
        "whisper-config-bad-ids",
        _ct2_copy(config='{"suppress_ids": "all"}'),
        CheckpointError,
        "suppress_ids must be a list of token ids",
    ),
    (
        "whisper-finetuned-hash",
        _finetuned("finetuned.safetensors", _junk("finetuned.safetensors")),
        CheckpointError,
        "has SHA-256",
    ),
    ("whisper-finetuned-outside", _finetuned("../../../../etc/passwd"), CheckpointError, "outside the model folder"),
    (
        "whisper-finetuned-dev-zero",
        _finetuned("f.safetensors", _link("f.safetensors", "/dev/zero")),
        CheckpointError,
        "outside the model folder",
    ),
    ("whisper-finetuned-missing", _finetuned("finetuned.safetensors"), CheckpointError, "is missing"),
]


def _check(folder: Path, error: type[AsrkitError], fragment: str) -> None:
    with pytest.raises(error) as raised:
        load_model(folder)
    assert fragment in str(raised.value)
    # one line that names the folder it is about, so the CLI and the app can show it as it is
    assert "\n" not in str(raised.value) and str(folder) in str(raised.value)


@pytest.mark.parametrize(
    "build, error, fragment",
    [c[1:] for c in CARD_CASES + LM_CASES + KERAS_CASES],
    ids=[c[0] for c in CARD_CASES + LM_CASES + KERAS_CASES],
)
def test_a_hostile_ctc_folder_is_refused_by_name(tmp_path, tiny_model_dir, build, error, fragment):
    _check(build(tmp_path, tiny_model_dir), error, fragment)


@pytest.mark.parametrize(
    "build, error, fragment", [c[1:] for c in WHISPER_CARD_CASES], ids=[c[0] for c in WHISPER_CARD_CASES]
)
def test_a_hostile_whisper_card_is_refused_by_name(tmp_path, build, error, fragment):
    _check(build(tmp_path, None), error, fragment)


@needs_weights
@pytest.mark.parametrize(
    "build, error, fragment", [c[1:] for c in WHISPER_FILE_CASES], ids=[c[0] for c in WHISPER_FILE_CASES]
)
def test_a_damaged_whisper_folder_is_refused_by_name(tmp_path, build, error, fragment):
    folder = build(tmp_path, None)
    with pytest.raises(error) as raised:
        load_model(folder)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
    assert str(tmp_path) in str(raised.value)


def test_an_arpa_line_bound_stops_an_endless_line_without_reading_it_all(tmp_path, monkeypatch):
    # NGramLM.load given a device directly (not through a card): it stops after one bounded line
    with pytest.raises(LMError, match="longer than"):
        NGramLM.load("/dev/zero")
    monkeypatch.setattr("asrkit.lm.MAX_ARPA_NGRAMS", 2)
    (tmp_path / "lm.arpa").write_text("\\data\\\n\\1-grams:\n-1 a\n-1 b\n-1 c\n\\end\\\n")
    with pytest.raises(LMError, match="more than 2 n-grams"):
        NGramLM.load(tmp_path / "lm.arpa")


def test_every_broken_card_is_listed_and_reported_while_the_rest_load(tmp_path, tiny_model_dir, monkeypatch):
    (tmp_path / "registry").mkdir()
    for case, build, _, _ in BROKEN_CARDS:
        (tmp_path / "work" / case).mkdir(parents=True)
        build(tmp_path / "work" / case, tiny_model_dir).rename(tmp_path / "registry" / case)
    shutil.copytree(tiny_model_dir, tmp_path / "registry" / "tiny-test")
    listing = list_models(tmp_path / "registry")
    assert [e.name for e in listing.entries] == ["tiny-test"]
    assert [b.name for b in listing.broken] == sorted(c[0] for c in BROKEN_CARDS)
    for broken in listing.broken:
        expected = next(c[3] for c in CARD_CASES if c[0] == broken.name)
        assert expected in broken.describe() and broken.name in broken.describe()
    # an unknown name's message lists the good models and names the unreadable ones, instead of failing on them
    monkeypatch.setenv("ASR_MODELS_DIR", str(tmp_path / "registry"))
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path / "none")
    monkeypatch.setenv("ASR_USER_MODELS_DIR", str(tmp_path / "none"))
    with pytest.raises(UnknownModelError) as raised:
        load_model("nope")
    message = str(raised.value)
    assert "registered models are tiny-test" in message
    assert all(f"left out, its card unreadable: {c[0]} (" in message for c in BROKEN_CARDS)


def test_the_catalogue_is_wide():
    kinds = CARD_CASES + LM_CASES + KERAS_CASES + WHISPER_CARD_CASES + WHISPER_FILE_CASES
    assert len({c[0] for c in kinds}) == len(kinds) >= 25


def test_the_app_starts_on_the_default_model_when_the_chosen_one_is_broken(tmp_path, tiny_model_dir, monkeypatch):
    from asrkit.config import Config, ModelSettings
    from asrkit.widgets import picker

    broken = _card(tmp_path / "m", "[1]")
    asked = []

    def load(name, *, config):
        # the tiny model stands in for the default, which takes seconds to load
        asked.append(name)
        return registry.load_model(tiny_model_dir if name == registry.DEFAULT_MODEL else name, config=config)

    monkeypatch.setattr(picker, "load_model", load)
    view = picker.ModelPicker(config=Config(model=ModelSettings(name=str(broken))))
    assert asked == [str(broken), registry.DEFAULT_MODEL]
    assert view.model.name == "tiny-test" and view.dropdown.value == registry.DEFAULT_MODEL
    assert f"{broken} could not be loaded, so {registry.DEFAULT_MODEL} is in use" in view.note.value
    assert "holds an array, not a JSON object" in view.note.value

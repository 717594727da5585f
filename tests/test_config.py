import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asrkit.config import VARIABLES, Config, ConfigError

ROOT = Path(__file__).resolve().parents[1]
# Each variable, a value to set it to, and the field's value that must follow.
SETTINGS = {
    "ASR_MODEL_NAME": ("mine", "mine"),
    "ASR_DEVICE": ("GPU", "gpu"),
    "ASR_BATCH_SIZE": (" 4 ", 4),
    "ASR_MAX_LENGTH": ("30", 30.0),
    "ASR_MAX_BYTES": ("1024", 1024),
    "ASR_ADAPT_BASE": ("whisper-tiny.en-ana", "whisper-tiny.en-ana"),
    "ASR_ADAPT_PROMPT_SET": ("sentences", "sentences"),
    "ASR_ADAPT_PROMPTS": ("12", 12),
    "ASR_ADAPT_STEPS": ("30", 30),
    "ASR_ADAPT_TRAINABLE": ("decoder", "decoder"),
    "ASR_MODELS_DIR": ("/srv/models", Path("/srv/models")),
    "ASR_USER_DIR": ("/home/ana/asr", Path("/home/ana/asr")),
    "ASR_USER_MODELS_DIR": ("/home/ana/models", Path("/home/ana/models")),
    "ASR_CACHE_DIR": ("/tmp/hyp", Path("/tmp/hyp")),
}


def test_defaults_and_overrides():
    assert Config.from_env({}) == Config()
    config = Config.from_env(
        {"ASR_MODEL_NAME": "mine", "ASR_DEVICE": "GPU", "ASR_BATCH_SIZE": "4", "ASR_MAX_LENGTH": "30"}
    )
    assert (config.model.name, config.model.device, config.model.batch_size) == ("mine", "gpu", 4)
    assert config.limits.max_duration_s == 30.0


def test_every_variable_sets_its_own_field_and_no_other():
    assert set(SETTINGS) == set(VARIABLES)
    default = Config.from_env({})
    for var, (raw, expected) in SETTINGS.items():
        group, name, _ = VARIABLES[var]
        config = Config.from_env({var: raw})
        assert getattr(getattr(config, group), name) == expected, var
        changed = {
            (g, f.name)
            for g in ("model", "limits", "adapt", "paths")
            for f in dataclasses.fields(getattr(config, g))
            if getattr(getattr(config, g), f.name) != getattr(getattr(default, g), f.name)
        }
        # the user's models folder follows the user folder unless set itself
        follows = {("paths", "user_models_dir")} if var == "ASR_USER_DIR" else set()
        assert changed == {(group, name)} | follows, var
    assert Config.from_env({"ASR_USER_DIR": "/u"}).paths.user_models_dir == Path("/u/models")
    assert Config.from_env({"ASR_USER_DIR": "/u", "ASR_USER_MODELS_DIR": "/m"}).paths.user_models_dir == Path("/m")


def test_every_variable_is_documented():
    table = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    assert [var for var in VARIABLES if f"`{var}`" not in table] == []


def test_settings_are_read_when_asked_not_at_import(monkeypatch, tmp_path):
    from asrkit import evaluate, models

    assert not any(hasattr(models, name) for name in ("MODELS_DIR", "USER_DIR", "USER_MODELS_DIR"))
    assert not hasattr(evaluate, "CACHE_DIR")
    monkeypatch.setenv("ASR_MODELS_DIR", str(tmp_path / "extra"))
    monkeypatch.setenv("ASR_USER_DIR", str(tmp_path / "me"))
    monkeypatch.setenv("ASR_CACHE_DIR", str(tmp_path / "cache"))
    assert models.model_roots() == [tmp_path / "extra", models.SHIPPED_DIR, tmp_path / "me" / "models"]
    assert evaluate.HypothesisCache.for_model(models.SHIPPED_DIR / "pocketsphinx").path.parent == tmp_path / "cache"
    from asrkit.adapt import AdaptOptions

    monkeypatch.setenv("ASR_ADAPT_STEPS", "7")
    assert AdaptOptions.from_config().steps == 7


def test_importing_asrkit_leaves_the_environment_alone():
    # the variables asrkit once set on import, absent from the child's start
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")}
    code = (
        "import json, os; before = dict(os.environ); "
        "import asrkit, asrkit.config, asrkit.models, asrkit.cli; asrkit.config.Config.from_env(); "
        "print(json.dumps(sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ASR_DEVICE": "tpu"}, "ASR_DEVICE='tpu'"),
        ({"ASR_BATCH_SIZE": "four"}, "ASR_BATCH_SIZE='four' is not a valid int"),
        ({"ASR_BATCH_SIZE": "0"}, "at least 1"),
        ({"ASR_MAX_LENGTH": "-3"}, "positive number of seconds"),
        ({"ASR_MAX_LENGTH": "nan"}, "positive number of seconds"),
        ({"ASR_MAX_BYTES": "0"}, "positive number of bytes"),
        ({"ASR_MODEL_NAME": "  "}, "ASR_MODEL_NAME is empty"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env(env)

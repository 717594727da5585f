import pytest

from asrkit.config import Config, ConfigError


def test_defaults_and_overrides():
    assert Config.from_env({}) == Config()
    config = Config.from_env(
        {"ASR_MODEL_NAME": "mine", "ASR_DEVICE": "GPU", "ASR_BATCH_SIZE": "4", "ASR_MAX_LENGTH": "30"}
    )
    assert (config.model_name, config.device, config.batch_size) == ("mine", "gpu", 4)
    assert config.audio_limits.max_duration_s == 30.0


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

"""Shared test helpers: where ../shared/data is, and a tiny model built once per session."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# evaluation caches hypotheses under ASR_CACHE_DIR; tests keep theirs out of the user's cache
os.environ.setdefault("ASR_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "test-hypotheses"))
# and the user's own sessions and adapted models out of their data folder (the registry lists those)
os.environ.setdefault("ASR_USER_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "test-user"))

# the recipes (scripts beside the package, not in it) are imported by their tests as plain modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
# the notebooks read the same variable
SHARED_DATA = Path(os.environ.get("ASR_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
JFK = "speech/fixtures/wav/jfk.flac"
FIXTURES_DEV = "splits/fixtures_dev.tsv"
# Debian's chromium, which the browser tests drive through Playwright, with the flags a root container needs
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def shared_path(relative: str) -> Path:
    """A file under ../shared/data, or skip the test saying the data is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path}: the shared speech data (../shared/data beside the repo) is absent")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small untrained Keras CTC model saved to a temporary folder."""
    import numpy as np

    from asrkit.contracts import ModelCard
    from asrkit.features import FeatureConfig
    from asrkit.models.ctc import CTCModelConfig
    from asrkit.models.keras_ctc import KerasCTCModel, build_network

    config = CTCModelConfig(conv_channels=8, rnn_layers=1, rnn_units=16)
    n = FeatureConfig().num_features
    network = build_network(config, feature_mean=np.full(n, -5.0), feature_std=np.full(n, 3.0))
    card = ModelCard(name="tiny-test", description="tiny untrained test model", trained=False, config=config.to_dict())
    folder = tmp_path_factory.mktemp("models") / "tiny-test"
    KerasCTCModel(network, card).save(folder)
    return folder


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    yield browser
    browser.close()

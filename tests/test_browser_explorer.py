"""The error-analysis page: it shows at once and fills in as utterances are scored on its own thread
(unit tests on generated clips and a scripted model), and in a real browser it renders within seconds
while nothing is fetched from outside this machine."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import shared_path
from test_browser import ARTIFACTS, CHROMIUM, ROOT, free_port, voila, watch

from asrkit.audio import SAMPLE_RATE
from asrkit.contracts import Transcript
from asrkit.models import DEFAULT_MODEL
from asrkit.widgets.explorer import NO_COMPARISON, ErrorAnalysis

SENTENCES = [
    "the cat sat",
    "a dog ran away",
    "birds sing at dawn",
    "rain falls softly",
    "the end is near",
    "open the door",
    "close the window",
    "seven green apples",
    "time flies fast",
]


class ScriptedModel:
    """Hears each generated clip (known by its length) as its reference, with one word wrong in every
    third; a gate, when given, holds every batch until it is opened."""

    def __init__(self, name: str, texts: dict[int, str], gate: threading.Event | None = None) -> None:
        self.name, self.texts, self.gate = name, texts, gate
        self.batches = 0
        self.entered = threading.Event()

    def transcribe_batch(self, audios):
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        self.batches += 1
        return [Transcript(text=self.texts[len(a)], duration_s=len(a) / SAMPLE_RATE, model=self.name) for a in audios]


def write_set(folder: Path, n: int) -> tuple[Path, dict[int, str]]:
    """``n`` clips of tone, each a different length, and a TSV manifest; (manifest, heard text by length)."""
    lines, heard = ["path\tduration_s\ttranscript\tspeaker"], {}
    for i in range(n):
        samples = SAMPLE_RATE // 2 + 160 * i
        path = folder / f"clip{i}.wav"
        sf.write(path, 0.1 * np.sin(np.arange(samples) * 0.05).astype(np.float32), SAMPLE_RATE)
        text = SENTENCES[i % len(SENTENCES)]
        lines.append(f"{path.name}\t{samples / SAMPLE_RATE}\t{text}\t{'ann' if i % 2 else 'bob'}")
        heard[samples] = text if i % 3 else "wrong " + " ".join(text.split()[1:])
    manifest = folder / "set.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, heard


def test_the_page_shows_at_once_and_fills_in_as_batches_are_scored(tmp_path):
    manifest, heard = write_set(tmp_path, 6)
    gate = threading.Event()
    model = ScriptedModel("scripted", heard, gate)
    page = ErrorAnalysis(
        sets={"generated": manifest},
        models=[DEFAULT_MODEL],
        cache_dir=tmp_path / "cache",
        loader=lambda name: model,
        batch_size=2,
        redraw_s=0.0,
    )
    # the controls are there before anything is scored; the run waits on the model
    assert page.set_choice.value == "generated" and page.comparison_choice.value == NO_COMPARISON
    explorer = page.explorers[0]
    seen = []
    explorer.table.observe(lambda change: seen.append(len(change["new"])), names="options")
    gate.set()
    reports = page.wait(timeout=60)
    assert [len(r.rows) for r in reports] == [6] and model.batches == 3
    assert seen[-1] == 6 and len(set(seen)) > 1, f"the table went from empty to full at once: {seen}"
    assert page.progress.value == page.progress.max == 6 and "6/6 scored" in page.status.value
    assert f"{100 * reports[0].corpus.wer:.2f}%" in page.status.value and "bob" in page.summary.value

    # a second page on the same cache: every hypothesis comes from it, the model is never loaded
    again = ErrorAnalysis(
        sets={"generated": manifest},
        models=[DEFAULT_MODEL],
        cache_dir=tmp_path / "cache",
        loader=lambda name: pytest.fail("a cached set loaded the model"),
    )
    cached = again.wait(timeout=60)
    assert cached[0].cached == 6 and [r.hypothesis for r in cached[0].rows] == [r.hypothesis for r in reports[0].rows]
    assert "6 from the cache" in again.status.value


def test_choosing_another_set_cancels_the_run_and_only_the_new_one_shows(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, heard_a = write_set(tmp_path / "a", 8)
    second, heard_b = write_set(tmp_path / "b", 3)
    gate = threading.Event()
    model = ScriptedModel("scripted", {**heard_a, **heard_b}, gate)
    page = ErrorAnalysis(
        sets={"a": first, "b": second},
        models=[DEFAULT_MODEL],
        cache_dir=None,
        loader=lambda name: model,
        batch_size=2,
        start=False,
    )
    old = page.restart()  # the first run's thread
    assert model.entered.wait(30)
    page.set_choice.value = "b"  # while the first run is held in its first batch
    gate.set()
    reports = page.wait(timeout=60)
    assert not old.is_alive()
    assert [len(r.rows) for r in reports] == [3] and "3/3 scored" in page.status.value
    assert {r.utterance.audio_path.parent.name for r in page.explorers[0].report.rows} == {"b"}
    assert model.batches == 1 + 2, "the cancelled run went on past its batch in hand"


def test_two_models_get_a_tab_each_and_a_comparison(tmp_path):
    manifest, heard = write_set(tmp_path, 4)
    lengths = sorted(heard)  # the clips in manifest order
    perfect = {k: SENTENCES[i % len(SENTENCES)] for i, k in enumerate(lengths)}
    models = {"m1": ScriptedModel("m1", heard), "m2": ScriptedModel("m2", perfect)}
    page = ErrorAnalysis(
        sets={"generated": manifest}, models=["m1", "m2"], comparison="m2", cache_dir=None, loader=models.__getitem__
    )
    reports = page.wait(timeout=60)
    assert [r.model for r in reports] == ["m1", "m2"] and reports[0].corpus.wer > reports[1].corpus.wer
    assert [page.views.get_title(i) for i in range(2)] == ["m1", "m2"]
    assert "m1 against m2" in page.summary.value


def test_a_missing_set_is_said_on_the_page(tmp_path):
    page = ErrorAnalysis(
        sets={"gone": tmp_path / "gone.tsv"},
        models=[DEFAULT_MODEL],
        cache_dir=None,
        loader=lambda name: pytest.fail("loaded a model for a missing set"),
    )
    page.wait(timeout=30)
    assert "could not score gone.tsv" in page.status.value and "gone.tsv" in page.status.value


# --- in a real browser (Voila, Debian's chromium) ---

# Voila's lab template less its CDN stylesheets: share/jupyter/voila/templates/asrkit
# what the page may take from page load to its controls, progress bar and table, seconds
SHOWN_WITHIN_S = 5.0
# utterances scored in the browser test: enough for a table, few enough for a shared CPU
BROWSER_LIMIT = 3


@pytest.fixture(scope="module")
def error_analysis(tmp_path_factory):
    shared_path("splits/kathleen_dev.tsv")
    cache = tmp_path_factory.mktemp("hypotheses")  # a fresh cache: every utterance is scored in the page
    with voila(
        "notebooks/03_error_analysis.ipynb", ASR_CACHE_DIR=str(cache), ASR_EVAL_LIMIT=str(BROWSER_LIMIT)
    ) as served:
        yield served


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
@pytest.mark.timeout(420)
def test_error_analysis_page_shows_at_once_and_fills_in_offline(error_analysis, browser):
    url, token = error_analysis
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    outside, errors = watch(page, url)
    page.goto(f"{url}?token={token}", timeout=240_000)
    loaded = time.monotonic()
    page.wait_for_selector(".asrkit-error-analysis .asrkit-explorer-progress", timeout=SHOWN_WITHIN_S * 1000)
    page.wait_for_selector(".asrkit-explorer-table select", timeout=SHOWN_WITHIN_S * 1000)
    shown_s = time.monotonic() - loaded
    page.screenshot(path=ARTIFACTS / "error_analysis_opening.png", full_page=True)
    page.wait_for_selector(".asrkit-explorer-table option", timeout=300_000)  # the first scored row
    page.wait_for_selector(
        f".asrkit-explorer-status:has-text('{BROWSER_LIMIT}/{BROWSER_LIMIT} scored')", timeout=300_000
    )
    rows = page.locator(".asrkit-explorer-table option").count()
    status = page.inner_text(".asrkit-explorer-status")
    page.wait_for_selector(".asrkit-explorer-summary h4", timeout=60_000)
    # a clicked utterance shows its alignment and its own spectrogram in place of the worst one's
    plot = page.locator(".asrkit-explorer-plot").first
    page.wait_for_function("el => el.naturalWidth > 300", arg=plot.element_handle(), timeout=60_000)
    first_plot = plot.get_attribute("src")
    table = page.locator(".asrkit-explorer-table select")
    clicked = page.locator(".asrkit-explorer-table option").nth(1).inner_text().split()[3]  # its id column
    shown = page.locator(".asrkit-explorer-table option").nth(1).get_attribute("value")
    table.select_option(value=shown)
    page.wait_for_selector(f".widget-html:has-text('{clicked}') .asrkit-alignment", timeout=60_000)
    page.wait_for_function(
        "([el, old]) => el.src !== old && el.naturalWidth > 300",
        arg=[plot.element_handle(), first_plot],
        timeout=60_000,
    )
    page.screenshot(path=ARTIFACTS / "error_analysis_scored_1280.png", full_page=True)
    page.set_viewport_size({"width": 420, "height": 1400})
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / "error_analysis_scored_420.png", full_page=True)
    page.close()
    assert shown_s <= SHOWN_WITHIN_S and rows == BROWSER_LIMIT and "corpus WER" in status
    assert not outside, f"the page fetched from outside this machine: {outside}"
    assert not errors, f"console errors: {errors}"


# --- opening the app notebook in JupyterLab leaves the tree clean ---

APP_NOTEBOOK = ROOT / "notebooks" / "app.ipynb"


def test_the_app_notebook_carries_the_metadata_lab_writes():
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    metadata = json.loads(APP_NOTEBOOK.read_text(encoding="utf-8"))["metadata"]
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert metadata["kernelspec"] == {"display_name": spec.display_name, "language": spec.language, "name": "python3"}
    committed, reported = dict(metadata["language_info"]), dict(IPythonKernel.language_info)
    # the kernel reports its Python's full version; the patch level is the one machine-dependent part
    assert committed.pop("version").split(".")[:2] == reported.pop("version").split(".")[:2]
    assert committed == reported


@pytest.mark.timeout(120)
def test_saving_the_app_notebook_through_jupyter_changes_no_byte(tmp_path):
    copy = tmp_path / "app.ipynb"
    copy.write_bytes(APP_NOTEBOOK.read_bytes())
    port, token = free_port(), secrets.token_hex(16)
    root = ["--allow-root"] if os.geteuid() == 0 else []
    server = subprocess.Popen(
        [
            Path(sys.executable).parent / "jupyter",
            "server",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={tmp_path}",
            f"--IdentityProvider.token={token}",
            "--no-browser",
            *root,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api/contents/app.ipynb"
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                asked = urllib.request.Request(f"{api}?content=1", headers=headers)
                with urllib.request.urlopen(asked, timeout=5) as got:
                    model = json.load(got)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        body = json.dumps({"type": "notebook", "format": "json", "content": model["content"]}).encode()
        with urllib.request.urlopen(urllib.request.Request(api, data=body, headers=headers, method="PUT"), timeout=30):
            pass
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert copy.read_bytes() == APP_NOTEBOOK.read_bytes()

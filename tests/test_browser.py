"""The Voila app in a real browser: Debian's headless chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from asrkit.models import load_model
from conftest import JFK, shared_path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def voila(notebook: str, **env: str):
    """A Voila server of one notebook on a free local port; yields (url, token)."""
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [Path(sys.executable).parent / "voila", notebook, f"--port={port}",
         "--Voila.ip=127.0.0.1", "--no-browser", f"--token={token}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/", token
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def app_url():
    with voila("notebooks/01_quickstart.ipynb") as served:
        yield served


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_app_refuses_requests_without_the_token(app_url):
    url, _ = app_url
    request = urllib.request.Request(url)
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None}))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request, timeout=30)
    assert refused.value.code in (302, 403)


@pytest.mark.timeout(240)
def test_quickstart_transcribes_and_takes_uploads(app_url, browser, tmp_path):
    shared_path(JFK)  # the page's example clip
    url, token = app_url
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1200, "height": 1400})
    page.goto(f"{url}?token={token}", timeout=120_000)
    upload = page.wait_for_selector("button.widget-upload", timeout=180_000)
    body = page.inner_text("body")
    assert "WER" in body and load_model().name in body
    assert page.locator("img").count() >= 1, "the spectrogram image is missing"

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples")
    with page.expect_file_chooser() as chooser:
        upload.click()
    chooser.value.set_files(not_audio)
    page.wait_for_selector("text=notes.wav: <bytes>: not audio", timeout=60_000)

    with page.expect_file_chooser() as chooser:
        upload.click()
    chooser.value.set_files(shared_path("speech/fixtures/wav/ps_goforward.flac"))
    page.wait_for_selector("text=ps_goforward.flac:", timeout=60_000)
    page.locator("img").nth(1).wait_for(timeout=60_000)  # the uploaded clip's spectrogram
    page.screenshot(path=ARTIFACTS / "quickstart_upload.png", full_page=True)


@pytest.mark.timeout(300)
def test_error_analysis_explorer_shows_a_clicked_utterance(browser):
    shared_path("splits/kathleen_dev.tsv")
    ARTIFACTS.mkdir(exist_ok=True)
    with voila("notebooks/03_error_analysis.ipynb", ASRKIT_EVAL_LIMIT="8") as (url, token):
        page = browser.new_page(viewport={"width": 1300, "height": 1600})
        page.goto(f"{url}?token={token}", timeout=120_000)
        table = page.wait_for_selector(".asrkit-explorer-table select", timeout=240_000)
        options = table.query_selector_all("option")
        assert len(options) == 8
        third = options[2].inner_text().split()[3]  # the utterance id column
        plot = page.locator(".asrkit-explorer-plot").first
        page.wait_for_function("el => el.naturalWidth > 300", arg=plot.element_handle(), timeout=60_000)
        first_plot = plot.get_attribute("src")  # the worst utterance's, shown on opening
        table.select_option(index=2)
        page.wait_for_selector(f".widget-html:has-text('{third}') .asrkit-alignment", timeout=60_000)
        alignment = page.locator(".asrkit-alignment").first.inner_html()
        assert '<span class="ok">' in alignment
        page.wait_for_function("([el, old]) => el.src !== old && el.naturalWidth > 300",
                               arg=[plot.element_handle(), first_plot], timeout=60_000)
        assert "corpus WER" in page.inner_text("body") or "WER" in page.inner_text("body")
        page.screenshot(path=ARTIFACTS / "error_analysis_explorer.png", full_page=True)

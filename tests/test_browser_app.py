"""The app page as a person meets it, in a real browser: the File tab before and after a result, a
refused upload, the Live tab's copy, clear and downloads, and every tab at a desktop's and a phone's
width (screenshots in test-artifacts/).

One Voila server and one chromium (its fake microphone playing real speech) serve the whole module.
"""

from __future__ import annotations

import base64
import re

import pytest
from conftest import FIXTURES_DEV, shared_path
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, microphone_file, record, voila, watch

from asrkit.manifest import read_manifest
from asrkit.metrics import score

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")

CLIP_NAME = "ps_goforward.flac"
CLIP = f"speech/fixtures/wav/{CLIP_NAME}"
# A transcript in the File tab scores at most this WER (the default model: 6.25% on fixtures_dev; one
# short clip can do worse).
WER_MAX = 0.35
WIDE, NARROW = 1280, 420
# Window heights: tall enough that a screenshot holds the whole tab (the page scrolls inside its own
# element, which a full-page screenshot does not extend).
HEIGHTS = {WIDE: 1500, NARROW: 2600}
TABS = ("Live", "Read aloud", "File", "Adapt")
# A segment line: its start time, then its words.
SEGMENT = re.compile(r"^\[\d+:\d\d\]\s*\S")
SEGMENT_TIME = re.compile(r"^\[\d+:\d\d\]\s*")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The app's page, interactive (the Live tab's start button enabled), in a chromium whose microphone
    plays a kathleen_dev utterance with silence around it."""
    from playwright.sync_api import sync_playwright

    utterance = read_manifest(shared_path("splits/kathleen_dev.tsv"))[0]
    wav, seconds = microphone_file(tmp_path_factory.mktemp("microphone"), [utterance.audio_path])
    ARTIFACTS.mkdir(exist_ok=True)
    flags = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
    ]
    with voila("notebooks/app.ipynb") as (url, token), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS + flags)
        context = browser.new_context(viewport={"width": WIDE, "height": HEIGHTS[WIDE]})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
        page = context.new_page()
        page.outside, page.console_errors = watch(page, url)
        page.goto(f"{url}?token={token}", timeout=120_000)
        page.wait_for_selector(".asrkit-mic-button:not([disabled])", timeout=240_000)
        page.recording_s, page.utterance = seconds, utterance
        yield page
        browser.close()


def heard_in(lines: list[str]) -> str:
    """The words of the File tab's segment lines, without their start times."""
    return " ".join(SEGMENT_TIME.sub("", line) for line in lines)


def tab(page, title: str):
    """Show a tab; its panel."""
    page.locator(".lm-TabBar-tab", has_text=title).first.click()
    return page.locator(".widget-tab-contents > .widget-box:visible").first


@pytest.mark.timeout(420)
def test_the_file_tab_shows_no_empty_picture_or_player_and_refuses_a_non_audio_file_plainly(page, tmp_path):
    panel = tab(page, "File")
    page.wait_for_selector(".asrkit-file-status", state="attached", timeout=30_000)
    assert not panel.locator(".asrkit-file-plot").is_visible(), "an image before any result"
    assert not panel.locator(".asrkit-file-player").is_visible(), "a player before any audio"
    assert panel.locator("img:visible").count() == 0 and panel.locator("audio:visible").count() == 0
    # the record button's dot is red before recording
    dot = panel.locator(".asrkit-mic-button .asrkit-mic-icon")
    assert dot.evaluate("e => getComputedStyle(e).color") == "rgb(214, 45, 32)"
    page.screenshot(path=ARTIFACTS / "app_file_empty.png", full_page=True)

    notes = tmp_path / "notes.txt"
    notes.write_text("these are not samples")
    with page.expect_file_chooser() as chooser:
        panel.locator("button.widget-upload").click()
    chooser.value.set_files(notes)
    page.wait_for_selector(".asrkit-file-status:has-text('notes.txt is not audio')", timeout=60_000)
    said = panel.locator(".asrkit-file-status").inner_text()
    page.screenshot(path=ARTIFACTS / "app_file_not_audio.png", full_page=True)
    assert "<bytes>" not in said and "Error" not in said, said
    assert not panel.locator(".asrkit-file-plot").is_visible() and not panel.locator(".asrkit-file-player").is_visible()


@pytest.mark.timeout(420)
def test_the_file_tab_shows_an_upload_in_timed_segments_with_its_player_and_spectrogram(page):
    panel = tab(page, "File")
    with page.expect_file_chooser() as chooser:
        panel.locator("button.widget-upload").click()
    chooser.value.set_files(shared_path(CLIP))
    page.wait_for_selector(".asrkit-file-status:has-text('transcribed by')", timeout=120_000)
    lines = panel.locator(".asrkit-segment").all_inner_texts()
    links = panel.locator("a.asrkit-download")
    names = [links.nth(i).get_attribute("download") for i in range(links.count())]
    srt = base64.b64decode(links.nth(1).get_attribute("href").split(",", 1)[1]).decode()
    page.wait_for_function("() => document.querySelector('img.asrkit-file-plot').naturalWidth > 300", timeout=60_000)
    player = panel.locator(".asrkit-file-player")
    page.screenshot(path=ARTIFACTS / "app_file_result.png", full_page=True)
    assert lines and all(SEGMENT.match(line) for line in lines), lines
    assert lines[0].startswith("[0:0")
    reference = next(u.transcript for u in read_manifest(shared_path(FIXTURES_DEV)) if u.audio_path.name == CLIP_NAME)
    assert score(reference, heard_in(lines)).wer < WER_MAX, lines
    assert names == ["ps_goforward.txt", "ps_goforward.srt", "ps_goforward.vtt", "ps_goforward.json"]
    assert "-->" in srt
    assert player.is_visible() and not player.evaluate("a => a.autoplay")
    assert not panel.locator(".asrkit-file-progress").is_visible(), "the progress bar stayed after the result"


@pytest.mark.timeout(420)
def test_the_file_tab_records_with_a_running_clock_and_transcribes_the_recording(page):
    panel = tab(page, "File")
    button = panel.locator(".asrkit-mic-button")
    button.click()
    page.wait_for_function("b => b.textContent.includes('stop')", arg=button.element_handle(), timeout=30_000)
    page.wait_for_timeout(1500)
    clock = panel.locator(".asrkit-mic-clock").inner_text()
    page.wait_for_timeout(page.recording_s * 1000)
    button.click()
    page.wait_for_selector(".asrkit-file-status:has-text('recording.wav'):has-text('transcribed by')", timeout=120_000)
    lines = panel.locator(".asrkit-segment").all_inner_texts()
    assert re.fullmatch(r"0:0[1-3]", clock), clock
    assert lines and SEGMENT.match(lines[0]), lines
    assert score(page.utterance.transcript, heard_in(lines)).wer < WER_MAX, lines


@pytest.mark.timeout(420)
def test_the_live_tab_copies_saves_and_clears_its_transcript(page):
    panel = tab(page, "Live")
    record(page, panel.locator(".asrkit-mic-button"), page.recording_s)
    page.wait_for_function(
        "() => { const t = document.querySelector('.asrkit-live-transcript');"
        " return t.querySelector('.asrkit-partial').textContent === ''"
        " && t.querySelector('.asrkit-committed').textContent.trim().length > 0; }",
        timeout=60_000,
    )
    heard = panel.locator(".asrkit-live-transcript .asrkit-committed").inner_text().strip()
    copy = panel.locator("button.asrkit-copy")
    page.wait_for_function("b => !b.disabled", arg=copy.element_handle(), timeout=30_000)
    copy.click()
    page.wait_for_function("b => b.textContent !== 'copy'", arg=copy.element_handle(), timeout=10_000)
    copied = page.evaluate("navigator.clipboard.readText()")
    links = panel.locator("a.asrkit-download")
    saved = {links.nth(i).get_attribute("download"): links.nth(i).get_attribute("href") for i in range(links.count())}
    status = panel.locator(".asrkit-status")
    line, tip = status.inner_text(), status.get_attribute("title")
    page.screenshot(path=ARTIFACTS / "app_live_transcript.png", full_page=True)
    panel.locator("button.asrkit-clear").click()
    page.wait_for_function(
        "() => document.querySelector('.asrkit-live-transcript').innerText.trim() === ''", timeout=30_000
    )
    page.wait_for_function("b => b.disabled", arg=copy.element_handle(), timeout=30_000)
    assert panel.locator("a.asrkit-download").count() == 0

    assert copied == heard
    assert sorted(saved) == ["live-transcript.srt", "live-transcript.txt"]
    text = base64.b64decode(saved["live-transcript.txt"].split(",", 1)[1]).decode()
    srt = base64.b64decode(saved["live-transcript.srt"].split(",", 1)[1]).decode()
    assert text.strip() == heard and "-->" in srt
    assert srt.startswith("1\n00:00:0") and heard.split()[0] in srt, srt
    assert "RTF" not in line and "backlog" not in line and "keeps up" in line, line
    assert "RTF" in tip and "backlog" in tip


@pytest.mark.timeout(300)
def test_every_tab_fits_a_desktop_and_a_phone(page):
    overflowing = {}
    for width in (WIDE, NARROW):
        page.set_viewport_size({"width": width, "height": HEIGHTS[width]})
        for title in TABS:
            panel = tab(page, title)
            page.wait_for_timeout(300)
            page.screenshot(path=ARTIFACTS / f"app_{title.lower().replace(' ', '_')}_{width}.png", full_page=True)
            # the right edges of what shows, beyond the window's width (none: everything flows)
            wide = panel.evaluate(
                "(p, w) => [...p.querySelectorAll('select, textarea, input, button, img, .asrkit-transcript')]"
                ".filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > w + 1)"
                ".map(e => e.tagName + '.' + e.className)",
                width,
            )
            picker = page.locator(".widget-dropdown select").first.evaluate("e => e.getBoundingClientRect().right")
            if wide or picker > width + 1:
                overflowing[(title, width)] = (wide, picker)
    page.set_viewport_size({"width": WIDE, "height": HEIGHTS[WIDE]})
    assert not overflowing, overflowing


def test_a_session_fetched_nothing_from_outside_and_logged_no_console_error(page):
    """Runs last in this module: everything the tests above did in the page counts."""
    assert not page.outside, f"the app fetched from outside this machine: {page.outside}"
    assert not page.console_errors, f"console errors: {page.console_errors}"

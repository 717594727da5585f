"""The app's Adapt tab in a real browser: FSDD's held-out speaker reads 20 digit prompts into chromium's
fake microphone (hands-free), the default model is fine-tuned, the page shows before/after WER and the
model menu lists the adapted model."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED_DATA, shared_path
from digit_readings import digit_readings
from test_browser import ARTIFACTS, CHROMIUM, app_page, voila

from asrkit import models
from asrkit.adapt import AdaptData, AdaptOptions, make_prompts
from asrkit.audio import SAMPLE_RATE

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")

SPEAKER = "yweweler"  # FSDD's held-out speaker: in no training data
# Silence in the fake microphone's file, seconds: before the first prompt, between prompts (well over
# the 0.7 s pause that ends a take), between the digits of a prompt (well under it), and after the last
# prompt (the page stops the microphone before chromium loops the file back to the start).
LEAD_S, BETWEEN_S, INSIDE_S, TAIL_S = 1.5, 1.5, 0.25, 8.0
# Fine-tuning steps here, fewer than the app's default (AdaptOptions.steps) to keep the test short.
STEPS = 40


def microphone_file(folder: Path, readings: list[np.ndarray]) -> tuple[Path, float]:
    parts = [np.zeros(round(LEAD_S * SAMPLE_RATE), np.float32)]
    for reading in readings:
        parts += [reading, np.zeros(round(BETWEEN_S * SAMPLE_RATE), np.float32)]
    parts.append(np.zeros(round(TAIL_S * SAMPLE_RATE), np.float32))
    audio = np.concatenate(parts)
    path = folder / "reader.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return path, len(audio) / SAMPLE_RATE


@pytest.mark.timeout(600)
def test_adapt_tab_records_20_prompts_hands_free_and_adapts_the_default_model(playwright, tmp_path, monkeypatch):  # noqa: F811
    defaults = AdaptOptions()
    fsdd = shared_path("splits/fsdd_dev.tsv")
    # the prompts the page shows: the app's defaults, with the shared data's exclusions
    # the app's prompts: the notebook leaves out the data folder's evaluation sentences
    excluded = AdaptData(exclude_file=SHARED_DATA / "splits/eval_texts_to_exclude_from_training.txt")
    prompts = make_prompts(kind="digits", count=defaults.prompts, seed=defaults.seed, data=excluded)
    readings, _ = digit_readings(prompts, manifest=fsdd, speaker=SPEAKER, gap_s=INSIDE_S)
    wav, seconds = microphone_file(tmp_path, readings)
    user_dir = tmp_path / "user"
    ARTIFACTS.mkdir(exist_ok=True)
    began = time.monotonic()
    with voila("notebooks/app.ipynb", ASR_USER_DIR=str(user_dir), ASR_ADAPT_STEPS=str(STEPS)) as served:
        with app_page(playwright, *served, microphone=wav) as page:
            page.locator(".lm-TabBar-tab", has_text="Adapt").click()
            tab = page.locator(".asrkit-adapt")
            assert prompts[0] in tab.locator(".asrkit-adapt-prompt").inner_text()
            tab.locator(".asrkit-adapt-handsfree input").check()
            button = tab.locator(".asrkit-mic-button")
            button.click()
            page.wait_for_function("b => b.textContent.includes('stop')", arg=button.element_handle(), timeout=30_000)
            page.wait_for_selector(".asrkit-adapt-counter:has-text('3 saved')", timeout=60_000)
            page.screenshot(path=ARTIFACTS / "adapt_recording.png", full_page=True)
            # the page stops the microphone itself after the last prompt
            page.wait_for_selector(".asrkit-adapt-counter:has-text('20 saved')", timeout=(seconds + 60) * 1000)
            page.wait_for_function("b => b.textContent.includes('start')", arg=button.element_handle(), timeout=30_000)
            recorded = tab.inner_text()

            tab.locator(".asrkit-adapt-run").click()
            page.wait_for_selector(".asrkit-adapt-progress:has-text('fine-tuning')", timeout=120_000)
            page.wait_for_selector(".asrkit-adapt-progress:has-text('about')", timeout=120_000)
            page.screenshot(path=ARTIFACTS / "adapt_training.png", full_page=True)
            result = page.wait_for_selector(".asrkit-adapt-result[data-wer-after]", timeout=300_000)
            before, after = (
                float(result.get_attribute("data-wer-before")),
                float(result.get_attribute("data-wer-after")),
            )
            text = result.inner_text()
            page.screenshot(path=ARTIFACTS / "adapt_result.png", full_page=True)
            picker = page.locator(".widget-dropdown select").first
            name = f"{models.DEFAULT_MODEL}-me"
            # the model menu lists the new model at once
            page.wait_for_function(
                f"s => s.textContent.includes('{name}')", arg=picker.element_handle(), timeout=30_000
            )
            # the adapted model on disk, read before the page deletes it
            monkeypatch.setenv("ASR_USER_MODELS_DIR", str(user_dir / "models"))
            adapted = models.load_model(name)
            # back to the default model (waiting for the menu to take a choice), then Delete, pressed twice,
            # takes the adapted one out of its folder and out of the model menu
            # (the menu shows spaces as no-break spaces)
            picker.select_option(
                label=next(
                    o
                    for o in picker.locator("option").all_inner_texts()
                    if o.replace("\xa0", " ").startswith(f"{models.DEFAULT_MODEL} ")
                )
            )
            page.wait_for_selector(
                ".asrkit-model-note:has-text('OpenAI Whisper tiny.en'):not(:has-text('adapted to'))", timeout=120_000
            )
            assert tab.locator(".asrkit-adapt-mine select").input_value() == name
            tab.locator(".asrkit-adapt-delete").click()
            page.wait_for_selector(".asrkit-adapt-delete:has-text('Confirm delete')", timeout=30_000)
            tab.locator(".asrkit-adapt-delete").click()
            page.wait_for_selector(f".asrkit-adapt-delete-note:has-text('Deleted {name}')", timeout=30_000)
            page.wait_for_function(
                f"s => !s.textContent.includes('{name}')", arg=picker.element_handle(), timeout=30_000
            )
            page.screenshot(path=ARTIFACTS / "adapt_deleted.png", full_page=True)
    print(f"held-out WER {before:.3f} -> {after:.3f}; {time.monotonic() - began:.0f} s in all")
    assert "All prompts done" in recorded
    assert "WER before" in text and "WER after" in text and name in text
    # Whisper already hears this speaker's digits well: adapting must not make it worse
    assert after <= before, text

    session = user_dir / "adapt/me"
    assert (session / "manifest.tsv").read_text().count("\n") == 1 + 20
    assert adapted.card.metrics["held_out"]["wer_after"] == round(after, 4)
    assert adapted.card.metrics["adapt_steps"] == STEPS
    assert not (user_dir / "models" / name).exists()
    assert models.load_model(models.DEFAULT_MODEL).card.metrics.get("held_out") is None  # the base is untouched

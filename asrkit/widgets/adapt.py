"""Adapt to my voice: read prompts into the microphone, then fine-tune a copy of the default Whisper
model and see before/after WER on takes it never trained on; delete an adapted model again.

Everything but the widgets is :mod:`asrkit.adapt`. Each take is checked (silence, clipping, too short or
long) before it is saved, and saved at once, so closing the page or restarting the kernel loses nothing:
the same user name reopens the session where it stopped. In hands-free mode the microphone stays on
and every pause of :attr:`~asrkit.adapt.HandsFreeOptions.end_silence_s` ends a take and moves on to the
next prompt. Fine-tuning runs on a thread of its own, so the page stays responsive and Cancel works.
Deleting asks for a second press of the button, since a deleted model is gone for good.
"""

from __future__ import annotations

import html
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import ipywidgets as w
import numpy as np

from asrkit.adapt import (
    MIN_TAKES,
    PROMPT_SETS,
    AdaptData,
    AdaptOptions,
    AdaptResult,
    AdaptSession,
    HandsFreeOptions,
    Progress,
    QualityOptions,
    TakeSplitter,
    adapt,
    check_take,
    check_user_name,
    delete_user_model,
    user_models,
)
from asrkit.audio import AudioError, load_audio, wav_bytes
from asrkit.config import Config
from asrkit.report import ALIGNMENT_STYLE, alignment_html
from asrkit.widgets.file_mode import audio_player
from asrkit.widgets.microphone import Chunk, Microphone
from asrkit.widgets.read_aloud import LEGEND

STYLE = (
    """<style>
.asrkit-adapt-prompt{font-size:28px;line-height:1.3;padding:14px 16px;border:1px solid #ccd;border-radius:6px;
  background:#f7f9ff;min-height:1.4em}
.asrkit-adapt-counter{font-size:14px;color:#555} .asrkit-adapt-hint{font-size:13px;line-height:1.3;color:#555}
.asrkit-adapt-ok{color:#1a7f37} .asrkit-adapt-bad{color:#b42318}
.asrkit-adapt-compare{border-collapse:collapse;font-size:14px;margin-top:6px}
.asrkit-adapt-compare td,.asrkit-adapt-compare th{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top}
.asrkit-adapt-compare th{background:#f3f3f3} .asrkit-adapt-wer{font-size:20px;font-weight:bold}
"""
    + ALIGNMENT_STYLE
    + "</style>"
)
# What the stages of an adaptation are called on the page.
STAGES = {
    "before": "measuring the model on your held-out takes",
    "features": "encoding your takes and their copies",
    "training": "fine-tuning",
    "after": "measuring the adapted model",
    "saving": "saving",
    "done": "done",
}


def result_html(result: AdaptResult) -> str:
    """Before and after WER on the held-out takes side by side, with each take's word alignments.

    The outer element carries ``data-wer-before`` and ``data-wer-after`` (fractions; the latter absent
    when cancelled) for scripts and tests.
    """
    before, after = result.before, result.after
    n = len(result.held_out)
    if after is None:
        return (
            f'<div class="asrkit-adapt-result" data-wer-before="{before.corpus.wer:.4f}">'
            f"<p><b>Cancelled</b> after {result.steps} steps: nothing was saved. {html.escape(result.base_model)} "
            f"has WER {100 * before.corpus.wer:.1f}% on your {n} held-out takes.</p></div>"
        )
    rows = "".join(
        f"<tr><td>{html.escape(b.utterance.transcript)}</td>"
        f'<td class="asrkit-alignment">{alignment_html(b.score.alignment)}</td>'
        f'<td class="asrkit-alignment">{alignment_html(a.score.alignment)}</td></tr>'
        for b, a in zip(before.rows, after.rows)
    )
    if after.corpus.wer < before.corpus.wer:
        verdict = "The adapted model makes fewer errors on takes it never trained on."
    elif before.corpus.wer == after.corpus.wer == 0:
        verdict = "Both models make no error on your held-out takes: the model already knew your voice."
    else:
        verdict = "The adapted model is no better on the held-out takes: record more prompts, or try again."
    return f"""<div class="asrkit-adapt-result"
 data-wer-before="{before.corpus.wer:.4f}" data-wer-after="{after.corpus.wer:.4f}">
<table class="asrkit-adapt-compare">
<tr><th>{n} held-out takes (never trained on)</th><th>before: {html.escape(result.base_model)}</th>
<th>after: {html.escape(result.name)}</th></tr>
<tr><td>word error rate</td><td class="asrkit-adapt-wer">WER before {100 * before.corpus.wer:.1f}%</td>
<td class="asrkit-adapt-wer">WER after {100 * after.corpus.wer:.1f}%</td></tr>
{rows}</table>
<p>{verdict} Fine-tuned {result.steps} steps in {result.train_s:.0f} s on {len(result.adapt_takes)} takes
({result.total_s:.0f} s in all); saved as <b>{html.escape(result.name)}</b> ({html.escape(str(result.folder))});
{html.escape(result.base_model)} is unchanged. Pick {html.escape(result.name)} in the model menu to use it.</p>
{LEGEND}
</div>"""


class AdaptView(w.VBox):
    """Prompts, recording, and adaptation with before/after WER.

    Parameters
    ----------
    options : AdaptOptions, optional
        Base model, prompts and fine-tuning; from ``config.adapt`` when not given.
    user : str
        The name whose session opens first (the page lets the user type another).
    data : AdaptData, optional
        Sentence prompts, the sentences kept out of them, and noise for augmentation (default: digit
        prompts, no noise).
    root, models_dir : Path, optional
        Where sessions and adapted models go (default: ``config.paths.user_dir`` and ``user_models_dir``);
        the models in ``models_dir`` are the ones the view offers to delete.
    quality, hands_free : QualityOptions, HandsFreeOptions
    config : Config, optional
        The settings the defaults above come from (default ``Config.from_env()``).
    """

    def __init__(
        self,
        *,
        options: AdaptOptions | None = None,
        user: str = "me",
        data: AdaptData = AdaptData(),
        root: Path | None = None,
        models_dir: Path | None = None,
        quality: QualityOptions = QualityOptions(),
        hands_free: HandsFreeOptions = HandsFreeOptions(),
        config: Config | None = None,
    ) -> None:
        self.config = config or Config.from_env()
        self.options = options or AdaptOptions.from_config(self.config)
        self.data = data
        self.root = root if root is not None else self.config.paths.user_dir
        self.models_dir = models_dir if models_dir is not None else self.config.paths.user_models_dir
        self.quality, self.hands_free_options = quality, hands_free
        self.session: AdaptSession | None = None
        self.index = 0
        self.skipped: set[int] = set()
        self._recorded: list[np.ndarray] = []
        self._splitter: TakeSplitter | None = None
        self._cancel = threading.Event()
        # (step, seconds into fine-tuning) of the latest steps: the time left is estimated from their pace,
        # since the first steps also build the graph
        self._recent: deque[tuple[int, float]] = deque(maxlen=6)
        self._adapting = False
        self._adapted = w.CallbackDispatcher()
        self._deleted = w.CallbackDispatcher()
        # the model whose deletion the Delete button's next press confirms (None: not asked yet)
        self._armed: str | None = None
        # the last adaptation's result (None before the first finishes)
        self.adapted: AdaptResult | None = None

        self.user = w.Text(
            value=user,
            description="your name",
            continuous_update=False,
            layout=w.Layout(width="20em", max_width="100%"),
            style={"description_width": "initial"},
        )
        self.prompt_set = w.Dropdown(
            options=PROMPT_SETS,
            value=self.options.prompt_set,
            description="prompts",
            layout=w.Layout(width="14em"),
            style={"description_width": "initial"},
        )
        self.note = w.HTML()
        self.counter = w.HTML()
        self.counter.add_class("asrkit-adapt-counter")
        self.prompt = w.HTML()
        self.prompt.add_class("asrkit-adapt-prompt-box")
        self.microphone = Microphone()
        self.hands_free = w.Checkbox(
            value=False,
            indent=False,
            layout=w.Layout(width="auto"),
            description="hands-free",
        )
        self.hands_free.add_class("asrkit-adapt-handsfree")
        # beside the box rather than in its description, which a narrow screen would cut short
        hands_free_hint = w.HTML(
            "<span class='asrkit-adapt-hint'>(the microphone stays on: pause after each prompt and the next one "
            "comes)</span>"
        )
        self.back = w.Button(description="back", icon="backward", tooltip="re-record the previous prompt")
        self.skip = w.Button(description="skip", icon="forward", tooltip="leave this prompt out")
        self.take = w.HTML()
        self.take.add_class("asrkit-adapt-take")
        self.playback = audio_player(layout=w.Layout(display="none"))
        self.run = w.Button(
            description="Adapt to my voice", icon="play", button_style="primary", layout=w.Layout(width="14em")
        )
        self.run.add_class("asrkit-adapt-run")
        self.cancel = w.Button(description="Cancel", icon="stop", disabled=True)
        self.cancel.add_class("asrkit-adapt-cancel")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="20em", max_width="100%"))
        self.progress_text = w.HTML()
        self.progress_text.add_class("asrkit-adapt-progress")
        self.result = w.HTML()
        self.result.add_class("asrkit-adapt-results")
        self.mine = w.Dropdown(
            description="your models",
            layout=w.Layout(width="24em", max_width="100%"),
            style={"description_width": "initial"},
        )
        self.mine.add_class("asrkit-adapt-mine")
        self.delete = w.Button(
            description="Delete",
            icon="trash",
            button_style="danger",
            tooltip="delete the chosen adapted model (press twice)",
        )
        self.delete.add_class("asrkit-adapt-delete")
        self.delete_note = w.HTML()
        self.delete_note.add_class("asrkit-adapt-delete-note")

        self.user.observe(lambda _: self._open(), names="value")
        self.prompt_set.observe(lambda _: self._new_prompts(), names="value")
        self.back.on_click(lambda _: self._go(max(0, self.index - 1)))
        self.skip.on_click(lambda _: self._skip())
        self.hands_free.observe(lambda _: self.microphone.stop() if self.microphone.recording else None, names="value")
        self.run.on_click(lambda _: self.start_adapting())
        self.cancel.on_click(lambda _: self._cancel.set())
        self.mine.observe(lambda _: self._disarm(), names="value")
        self.delete.on_click(lambda _: self._delete_pressed())
        self.microphone.on_start(self._started)
        self.microphone.on_chunk(self._received)
        self.microphone.on_stop(self._stopped)
        super().__init__(
            [
                w.HTML(
                    STYLE + "<p>Read each prompt aloud: press <b>start</b>, read, press <b>stop</b> (or tick "
                    "<i>hands-free</i>). Every take is checked and saved at once. Then <b>Adapt</b> fine-tunes a copy "
                    f"of {html.escape(self.options.base_model)} on most of your takes and measures both models on "
                    "the rest.</p>"
                ),
                w.HBox([self.user, self.prompt_set], layout=w.Layout(flex_flow="row wrap")),
                self.note,
                self.counter,
                self.prompt,
                w.HBox([self.microphone, self.back, self.skip], layout=w.Layout(flex_flow="row wrap")),
                w.HBox([self.hands_free, hands_free_hint], layout=w.Layout(flex_flow="row wrap", align_items="center")),
                self.take,
                self.playback,
                w.HBox(
                    [self.run, self.cancel, self.progress, self.progress_text], layout=w.Layout(flex_flow="row wrap")
                ),
                self.result,
                w.HBox([self.mine, self.delete, self.delete_note], layout=w.Layout(flex_flow="row wrap")),
            ]
        )
        self.add_class("asrkit-adapt")
        self._list_models()
        self._open()

    def on_adapted(self, handler: Callable[[AdaptResult], None]) -> None:
        """Call ``handler(result)`` (on the adaptation thread) once an adapted model is saved."""
        self._adapted.register_callback(handler)

    def on_deleted(self, handler: Callable[[str], None]) -> None:
        """Call ``handler(name)`` once the adapted model ``name`` is deleted."""
        self._deleted.register_callback(handler)

    # --- the session and its prompts ---

    def _open(self) -> None:
        try:
            user = check_user_name(self.user.value.strip().lower())
            self.session = AdaptSession.open(
                user=user,
                root=self.root,
                prompt_set=self.options.prompt_set,
                count=self.options.prompts,
                seed=self.options.seed,
                data=self.data,
            )
        except (ValueError, OSError) as err:
            self.session = None
            self.note.value = f'<p class="asrkit-adapt-bad">{html.escape(str(err))}</p>'
            self._show()
            return
        s = self.session
        self.prompt_set.value = s.prompt_set  # a reopened session keeps its own set (no new prompts: it matches)
        self.note.value = (
            f"<small>Your takes are kept in {html.escape(str(s.folder))}"
            + (f" (reopened: {len(s.takes)} already there)" if s.takes else "")
            + "</small>"
        )
        self.skipped = set()
        self.index = s.next_prompt(after=-1) or 0
        self._show()

    def _new_prompts(self) -> None:
        if self.session is None or self.prompt_set.value == self.session.prompt_set:
            return
        try:
            self.session.new_prompts(
                prompt_set=self.prompt_set.value, count=self.options.prompts, seed=self.options.seed, data=self.data
            )
        except (ValueError, OSError) as err:
            self.note.value = f'<p class="asrkit-adapt-bad">{html.escape(str(err))}</p>'
            self.prompt_set.value = self.session.prompt_set
            return
        self.index, self.skipped = 0, set()
        self._show()

    def _go(self, index: int | None) -> None:
        self.index = index if index is not None else len(self.session.prompts if self.session else [])
        self._show()

    def _skip(self) -> None:
        if self.session is None or self.index >= len(self.session.prompts):
            return
        self.skipped.add(self.index)
        self._go(self.session.next_prompt(after=self.index, skipped=self.skipped))

    def _show(self) -> None:
        s = self.session
        if s is None:
            self.counter.value, self.prompt.value = "", ""
            self.run.disabled = self.microphone.enabled = False
            return
        n = len(s.prompts)
        done = self.index >= n
        self.counter.value = f"prompt {min(self.index + 1, n)} / {n} · {len(s.takes)} saved" + (
            f" · {len(self.skipped)} skipped" if self.skipped else ""
        )
        again = " (recording again replaces its take)" if not done and self.index in s.takes else ""
        self.prompt.value = (
            '<div class="asrkit-adapt-prompt">'
            + (
                html.escape(s.prompts[self.index])
                if not done
                else "All prompts done: press <b>Adapt to my voice</b>, or go back to re-record one."
            )
            + f"</div><small>{again}</small>"
        )
        self.prompt_set.disabled = bool(s.takes) or self._adapting
        self.run.disabled = self._adapting or len(s.takes) < MIN_TAKES
        self.microphone.enabled = not self._adapting
        self.back.disabled = self.skip.disabled = self._adapting
        # the adaptation may be writing a model of the same name
        self.mine.disabled = self._adapting
        self.delete.disabled = self._adapting or self.mine.value is None

    # --- recording: on the kernel's message thread, quick ---

    def _started(self, _rate: int) -> None:
        self._recorded = []
        self._splitter = TakeSplitter(options=self.hands_free_options) if self.hands_free.value else None

    def _received(self, chunk: Chunk) -> None:
        try:
            audio = load_audio(chunk.samples, sample_rate=chunk.sample_rate)
        except AudioError as err:
            self.take.value = f'<p class="asrkit-adapt-bad">chunk {chunk.seq} not used: {html.escape(str(err))}</p>'
            return
        if self._splitter is None:
            self._recorded.append(audio)
            return
        for take in self._splitter.push(audio):
            self.accept(take)

    def _stopped(self) -> None:
        if self._splitter is not None:
            last, self._splitter = self._splitter.flush(), None
            if last is not None:
                self.accept(last)
        elif self._recorded:
            audio, self._recorded = np.concatenate(self._recorded), []
            self.accept(audio)

    def accept(self, audio: np.ndarray) -> bool:
        """Check a take of the current prompt; save it and move on if it is good. Whether it was saved."""
        s = self.session
        if s is None or self.index >= len(s.prompts) or self._adapting:
            self.take.value = '<p class="asrkit-adapt-bad">No prompt to record: go back to one, or adapt.</p>'
            return False
        quality = check_take(audio, options=self.quality)
        self.playback.value = wav_bytes(audio)
        self.playback.layout.display = None
        if not quality.ok:
            self.take.value = (
                f'<p class="asrkit-adapt-bad">✗ not saved ({quality.duration_s:.1f} s): '
                f"{html.escape('; '.join(quality.problems))}. Read the prompt again.</p>"
            )
            return False
        try:
            take = s.add_take(index=self.index, audio=audio)
        except OSError as err:
            self.take.value = f'<p class="asrkit-adapt-bad">✗ could not save the take: {html.escape(str(err))}</p>'
            return False
        self.take.value = (
            f'<p class="asrkit-adapt-ok">✓ prompt {take.index + 1} saved ({quality.duration_s:.1f} s, '
            f"loudest {quality.level_db:.0f} dBFS)</p>"
        )
        self._go(s.next_prompt(after=self.index, skipped=self.skipped))
        if self.index >= len(s.prompts) and self.microphone.recording:
            self.microphone.stop()
        return True

    # --- adapting: on a thread of its own ---

    def start_adapting(self) -> threading.Thread | None:
        """Fine-tune on the session's takes in the background; the thread, or None if it cannot start."""
        if self.session is None or self._adapting:
            return None
        if self.microphone.recording:
            self.microphone.stop()
        self._adapting = True
        self._cancel = threading.Event()
        self._recent.clear()
        self.cancel.disabled = False
        self.result.value = ""
        self._show()
        thread = threading.Thread(target=self._adapt, name="asrkit-adapt", daemon=True)
        thread.start()
        return thread

    def _adapt(self) -> None:
        try:
            result = adapt(
                self.session,
                options=self.options,
                noise_dir=self.data.noise_dir,
                config=self.config,
                models_dir=self.models_dir,
                on_progress=self._progressed,
                cancel=self._cancel,
            )
        except Exception as err:  # a failed adaptation must leave the page working and say why
            self.progress_text.value = ""
            self.result.value = f'<p class="asrkit-adapt-bad">Adaptation failed: {html.escape(str(err))}</p>'
        else:
            self.adapted = result
            self.result.value = result_html(result)
            self.progress_text.value = (
                "cancelled" if result.cancelled else f"done in {result.train_s:.0f} s of fine-tuning"
            )
            if not result.cancelled:
                self._list_models(select=result.name)
                self._adapted(result)
        finally:
            self._adapting = False
            self.cancel.disabled = True
            self._show()

    def _progressed(self, p: Progress) -> None:
        self.progress.max, self.progress.value = max(p.total, 1), p.done
        text = f"{STAGES[p.stage]} {p.done} / {p.total}"
        if p.stage == "training" and p.done:
            self._recent.append((p.done, p.elapsed_s))
            text += f" · loss {p.loss:.2f} · {p.elapsed_s:.0f} s"
        if p.stage == "training" and len(self._recent) > 1:
            (first, began), (last, now) = self._recent[0], self._recent[-1]
            text += f", about {(now - began) / (last - first) * (p.total - p.done):.0f} s left"
        if self._cancel.is_set():
            text += " · cancelling…"
        self.progress_text.value = text

    # --- the user's adapted models ---

    def _list_models(self, *, select: str | None = None) -> None:
        names = user_models(models_dir=self.models_dir)
        # not under hold_trait_notifications: the value is checked against the options it had before
        self.mine.options = names
        self.mine.value = select if select in names else (names[0] if names else None)
        self._disarm()
        self.delete.disabled = self._adapting or self.mine.value is None

    def _disarm(self) -> None:
        if self._armed is not None:
            self.delete_note.value = ""  # the question asked of the model no longer chosen
        self._armed = None
        self.delete.description = "Delete"

    def _delete_pressed(self) -> None:
        name = self.mine.value
        if name is None or self._adapting:
            return
        if self._armed != name:
            self._armed = name
            self.delete.description = "Confirm delete"
            self.delete_note.value = (
                f"<small>Press <b>Confirm delete</b> to delete {html.escape(name)} for good; "
                "pick another model to keep it.</small>"
            )
            return
        self.delete_model(name)

    def delete_model(self, name: str) -> bool:
        """Delete the adapted model ``name`` (what the second press of Delete does); whether it was deleted."""
        try:
            folder = delete_user_model(name, models_dir=self.models_dir)
        except (ValueError, OSError) as err:
            self._list_models()
            self.delete_note.value = f'<p class="asrkit-adapt-bad">{html.escape(str(err))}</p>'
            return False
        self._list_models()
        self.delete_note.value = f"<small>Deleted {html.escape(name)} ({html.escape(str(folder))}).</small>"
        self._deleted(name)
        return True

"""Choosing a model: the registry's models ordered by their measured WER, each labelled with what one
needs to choose (the WER, on which set, and the speed as RTF, as its card records them), and those too
inaccurate to be of use behind "show all models".

Loading happens on a thread of its own (a Keras model takes seconds), and listeners hear of the new
model only once it has loaded, so they can swap safely: a view stops feeding the old model's stream,
finishes it, and starts a new stream on the new model.
"""

from __future__ import annotations

import html
from pathlib import Path
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import ipywidgets as w

from asrkit.config import Config
from asrkit.models import DEFAULT_MODEL, ASRModel, ModelEntry, ModelListing, headline_metric, list_models, load_model

# A model whose headline WER is above this is listed only with "show all models": it gets most words
# wrong (the Keras CTC models measured 58-71%), and offered beside the default it only misleads.
MAX_LISTED_WER = 0.5


def model_label(entry: ModelEntry) -> str:
    """What the picker shows for one registered model: its headline WER and set, and its RTF.

    Examples
    --------
    >>> from pathlib import Path
    >>> from asrkit.models import ModelCard
    >>> card = ModelCard("ps", "", True, metrics={"fixtures_dev": {"wer": 0.3125, "rtf": 0.37}})
    >>> model_label(ModelEntry("ps", Path("ps"), card))
    'ps — WER 31.2% on fixtures_dev, RTF 0.37'
    >>> card = ModelCard("mine", "", True, metrics={"held_out": {"wer_before": 0.4, "wer_after": 0.1}})
    >>> model_label(ModelEntry("mine", Path("mine"), card))
    'mine — WER 10.0% on held_out (its own set)'
    """
    headline = headline_metric(entry.card)
    if headline is None:
        measured = "WER not measured"
    else:
        measured = f"WER {100 * headline.wer:.1f}% on {headline.set_name}"
        if not headline.general:
            measured += " (its own set)"
        if headline.rtf is not None:
            measured += f", RTF {headline.rtf:.2f}"
    notes = [note for note, applies in (("default", entry.name == DEFAULT_MODEL), ("UNTRAINED", not entry.card.trained))
             if applies]
    return f"{entry.name} — {measured}" + "".join(f" ({n})" for n in notes)


def listed_by_default(entry: ModelEntry) -> bool:
    """Whether a model is listed without "show all models": trained, and not measured above
    :data:`MAX_LISTED_WER` (a model not measured at all, such as a new one of the user's, is listed)."""
    headline = headline_metric(entry.card)
    return entry.card.trained and (headline is None or headline.wer <= MAX_LISTED_WER)


def by_wer(entries: Sequence[ModelEntry]) -> list[ModelEntry]:
    """Models by headline WER, lowest first, those without one last, ties by name."""
    def key(entry: ModelEntry) -> tuple[bool, float, str]:
        headline = headline_metric(entry.card)
        return headline is None, headline.wer if headline else 0.0, entry.name

    return sorted(entries, key=key)


class ModelPicker(w.VBox):
    """A dropdown of the registered models, by measured WER, and the one loaded now (``model``).

    Models measured above :data:`MAX_LISTED_WER` and untrained ones are listed only with "show all
    models" (the loaded one always is); a model folder whose card cannot be read is left out and named
    in the note under the dropdown.

    Parameters
    ----------
    config : Config
        ``model_name`` picks the first model; ``batch_size`` and ``device`` are passed to loading.
    """

    def __init__(self, *, config: Config) -> None:
        self.config = config
        self.model: ASRModel = load_model(config.model_name, config=config)
        self._listing: ModelListing = list_models()
        registered = {e.name for e in self._listing.entries}
        self._chosen = self.model.name if self.model.name in registered else config.model_name
        self._refreshing = False
        self.show_all = w.Checkbox(value=False, description="show all models", indent=False,
                                   layout=w.Layout(width="auto"))
        self.dropdown = w.Dropdown(options=self._options(), value=self._chosen, description="model",
                                   layout=w.Layout(width="40em"), style={"description_width": "3.5em"})
        self.note = w.HTML()
        self.note.add_class("asrkit-model-note")
        self._listeners = w.CallbackDispatcher()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asrkit-model-loader")
        self.dropdown.observe(self._picked, names="value")
        self.show_all.observe(lambda _: self.refresh(), names="value")
        super().__init__([w.HBox([self.dropdown, self.show_all]), self.note])
        self._describe()

    def on_change(self, handler: Callable[[ASRModel], None]) -> None:
        """Call ``handler(model)`` on the loading thread once a newly picked model has loaded."""
        self._listeners.register_callback(handler)

    def refresh(self) -> None:
        """List the registry's models again (one was added or deleted, e.g. by adaptation), keeping the
        choice; when the chosen model was deleted, the default model is loaded in its place."""
        self._listing = list_models()
        gone = self._chosen not in {e.name for e in self._listing.entries} and not Path(self._chosen).expanduser().is_dir()
        self._show_options()
        self._describe()
        if gone and self._chosen != DEFAULT_MODEL:
            self._picked({"new": DEFAULT_MODEL})

    def _show_options(self) -> None:
        # new options make the dropdown pass through their first entry: that is no choice of the user's
        self._refreshing = True
        try:
            self.dropdown.options = self._options()
            self.dropdown.value = self._chosen
        finally:
            self._refreshing = False

    def _shown(self) -> list[ModelEntry]:
        return [e for e in by_wer(self._listing.entries)
                if self.show_all.value or listed_by_default(e) or e.name == self._chosen]

    def _options(self) -> list[tuple[str, str]]:
        options = [(model_label(e), e.name) for e in self._shown()]
        if self._chosen not in {name for _, name in options}:
            # a model folder outside the registry, named by ASR_MODEL_NAME
            options.insert(0, (self.model.name, self._chosen))
        return options

    def _describe(self) -> None:
        card = self.model.card
        lines = [html.escape(card.description) + (" <b>UNTRAINED: its transcripts mean nothing.</b>"
                                                  if not card.trained else "")]
        hidden = len(self._listing.entries) - len(self._shown())
        if hidden:
            lines.append(f"{hidden} more model{'s' if hidden > 1 else ''} (untrained, or WER above "
                         f"{100 * MAX_LISTED_WER:.0f}%) with “show all models”.")
        lines += [f"Left out {html.escape(b.name)} ({html.escape(str(b.path))}): its card could not be read: "
                  f"{html.escape(str(b.error))}" for b in self._listing.broken]
        self.note.value = "<small>" + "<br>".join(lines) + "</small>"

    def _picked(self, change) -> None:
        if change["new"] == self._chosen or self._refreshing:
            return
        self.dropdown.disabled = True
        self.note.value = f"<small>loading {html.escape(change['new'])}…</small>"
        self._loader.submit(self._load, change["new"])

    def _load(self, name: str) -> None:
        try:
            model = load_model(name, config=self.config)
        except Exception as err:  # a broken model folder must not take the app down
            self.note.value = f"<small><b>{html.escape(name)} could not be loaded:</b> {html.escape(str(err))}</small>"
            self.dropdown.value = self._chosen
            self.dropdown.disabled = False
            return
        self.model, self._chosen = model, name
        self._show_options()
        self._listeners(model)
        self._describe()
        self.dropdown.disabled = False

"""Choosing a model: the registry's models, default first, each labelled with its measured WER.

Loading happens on a thread of its own (a Keras model takes seconds), and listeners hear of the new
model only once it has loaded, so they can swap safely: a view stops feeding the old model's stream,
finishes it, and starts a new stream on the new model.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import ipywidgets as w

from asrkit.config import Config
from asrkit.models import DEFAULT_MODEL, ASRModel, ModelEntry, available_models, load_model

# The manifest whose measured WER labels each model: strangers at a microphone, as app users are.
LABEL_SET = "fixtures_dev"


def model_label(entry: ModelEntry) -> str:
    """What the picker shows for one registered model.

    Examples
    --------
    >>> from pathlib import Path
    >>> from asrkit.models import ModelCard
    >>> card = ModelCard("ps", "", True, metrics={"fixtures_dev": {"wer": 0.3}})
    >>> model_label(ModelEntry("ps", Path("ps"), card))
    'ps — fixtures_dev WER 30.0%'
    """
    wer = entry.card.metrics.get(LABEL_SET, {}).get("wer")
    parts = [entry.name, f"{LABEL_SET} WER {100 * wer:.1f}%" if wer is not None else f"no {LABEL_SET} WER recorded"]
    if entry.name == DEFAULT_MODEL:
        parts.append("default")
    if not entry.card.trained:
        parts.append("UNTRAINED")
    return " — ".join(parts[:2]) + "".join(f" ({p})" for p in parts[2:])


class ModelPicker(w.VBox):
    """A dropdown of the registered models and the one loaded now (``model``).

    Parameters
    ----------
    config : Config
        ``model_name`` picks the first model; ``batch_size`` and ``device`` are passed to loading.
    """

    def __init__(self, *, config: Config) -> None:
        self.config = config
        self.model: ASRModel = load_model(config.model_name, config=config)
        registered = {e.name for e in available_models()}
        self._chosen = self.model.name if self.model.name in registered else config.model_name
        self.dropdown = w.Dropdown(options=self._options(), value=self._chosen, description="model",
                                   layout=w.Layout(width="34em"), style={"description_width": "3.5em"})
        self.note = w.HTML()
        self.note.add_class("asrkit-model-note")
        self._listeners = w.CallbackDispatcher()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asrkit-model-loader")
        self.dropdown.observe(self._picked, names="value")
        super().__init__([self.dropdown, self.note])
        self._describe()

    def on_change(self, handler: Callable[[ASRModel], None]) -> None:
        """Call ``handler(model)`` on the loading thread once a newly picked model has loaded."""
        self._listeners.register_callback(handler)

    def refresh(self) -> None:
        """List the registry's models again (one was added, e.g. by adaptation), keeping the choice."""
        with self.dropdown.hold_trait_notifications():
            self.dropdown.options = self._options()
            self.dropdown.value = self._chosen

    def _options(self) -> list[tuple[str, str]]:
        options = [(model_label(e), e.name) for e in available_models()]
        if self._chosen not in {name for _, name in options}:
            # a model folder outside the registry, named by ASR_MODEL_NAME
            options.insert(0, (self.model.name, self._chosen))
        return options

    def _describe(self) -> None:
        card = self.model.card
        warning = " <b>UNTRAINED: its transcripts mean nothing.</b>" if not card.trained else ""
        self.note.value = f"<small>{html.escape(card.description)}{warning}</small>"

    def _picked(self, change) -> None:
        if change["new"] == self._chosen:
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
        self._listeners(model)
        self._describe()
        self.dropdown.disabled = False

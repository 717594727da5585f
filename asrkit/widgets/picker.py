"""Choosing a model: the registry's models ordered by their measured WER, each labelled with what one
needs to choose (the WER, on which set, and the speed as RTF, as its card records them, and the size of
its weights on disk), and those too inaccurate to be of use, or the same network as another on a runtime
slower to start, behind "show all models".

Loading happens on a thread of its own (a Keras model takes seconds), and listeners hear of the new
model only once it has loaded, so they can swap safely: a view stops feeding the old model's stream,
finishes it, and starts a new stream on the new model.
"""

from __future__ import annotations

import html
import importlib.util
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ipywidgets as w

from asrkit.config import Config
from asrkit.contracts import CARD_FILE
from asrkit.errors import AsrkitError
from asrkit.models import DEFAULT_MODEL, ASRModel, ModelEntry, ModelListing, headline_metric, list_models, load_model

# A model whose headline WER is above this is listed only with "show all models": it gets most words
# wrong (the Keras CTC models measured 58-71%), and offered beside the default it only misleads.
MAX_LISTED_WER = 0.5
# Runtimes that load in well under a second and run at full speed from their first call. The same
# network on another runtime (Keras: seconds to load, and slow first calls while it compiles) is a
# slower twin: it gives the same words, so it is listed only with "show all models".
QUICK_BACKENDS = ("litert-ctc", "whisper-litert")
# Files in a model folder that are not its weights.
NOT_WEIGHTS = (CARD_FILE, "README.md")
# What the figures in the menu mean, under it.
LEGEND = (
    "WER: words wrong per 100 on the test set the model's card names (lower is better; a set marked "
    "'its own set' is not comparable across models). RTF: seconds of computing per second of audio "
    "(below 1 keeps up with speech). Size: its weights on disk."
)


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def weights_bytes(entry: ModelEntry) -> int | None:
    """Bytes on disk of a model's weights: the files in its folder besides its card and README, plus the
    folder inside a Python package its card names (``config["weights"]``: ``package`` and ``path``);
    None when neither holds anything (weights that come with the backend's own package)."""
    own = sum(f.stat().st_size for f in entry.path.rglob("*") if f.is_file() and f.name not in NOT_WEIGHTS)
    spec = entry.card.config.get("weights") if isinstance(entry.card.config, dict) else None
    # a dotted name would make find_spec import its parents (a card must not run code), and a path out of
    # the package ("../../..") would walk the disk: such a card, which cannot load anyway, gets no size
    if isinstance(spec, dict) and isinstance(spec.get("package"), str) and spec["package"].isidentifier():
        found = importlib.util.find_spec(spec["package"])
        if found is not None and found.submodule_search_locations:
            package = Path(next(iter(found.submodule_search_locations))).resolve()
            weights = (package / str(spec.get("path", ""))).resolve()
            own += _folder_bytes(weights) if weights.is_relative_to(package) else 0
    return own or None


def size_label(n_bytes: int) -> str:
    """``"7.2 MB"``, ``"75 MB"``, ``"1.5 GB"``: sizes as people read them (powers of 1000, as file managers show)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            value = n_bytes / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n_bytes} B"


def quicker_twin(entry: ModelEntry, entries: Sequence[ModelEntry]) -> ModelEntry | None:
    """The registered model that is ``entry``'s network on a quicker runtime: the same card config apart
    from its backend, the same headline WER, and a backend in :data:`QUICK_BACKENDS` where ``entry``'s is not."""
    config = entry.card.config if isinstance(entry.card.config, dict) else {}
    if config.get("backend") in QUICK_BACKENDS:
        return None
    network = {k: v for k, v in config.items() if k != "backend"}
    headline = headline_metric(entry.card)
    for other in entries:
        other_config = other.card.config if isinstance(other.card.config, dict) else {}
        if (
            other.name != entry.name
            and other_config.get("backend") in QUICK_BACKENDS
            and {k: v for k, v in other_config.items() if k != "backend"} == network
            and _same_wer(headline_metric(other.card), headline)
        ):
            return other
    return None


def _same_wer(a, b) -> bool:
    return a is not None and b is not None and (a.set_name, a.wer) == (b.set_name, b.wer)


def model_label(entry: ModelEntry, *, size_bytes: int | None = None, twin: str | None = None) -> str:
    """What the picker shows for one registered model: its headline WER and set, its RTF, the size of its
    weights (``size_bytes``, when known) and the quicker model it is a twin of (``twin``).

    Examples
    --------
    >>> from pathlib import Path
    >>> from asrkit.models import ModelCard
    >>> card = ModelCard("ps", "", True, metrics={"strangers": {"wer": 0.3125, "rtf": 0.37, "general": True}})
    >>> model_label(ModelEntry("ps", Path("ps"), card))
    'ps — WER 31.2% on strangers, RTF 0.37'
    >>> model_label(ModelEntry("ps", Path("ps"), card), size_bytes=75_400_000, twin="ps-lite")
    'ps — WER 31.2% on strangers, RTF 0.37, 75 MB (same words as ps-lite, slower to start)'
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
    if size_bytes is not None:
        measured += f", {size_label(size_bytes)}"
    notes = [
        note
        for note, applies in (
            ("default", entry.name == DEFAULT_MODEL),
            ("UNTRAINED", not entry.card.trained),
            (f"same words as {twin}, slower to start", twin is not None),
        )
        if applies
    ]
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

    Models measured above :data:`MAX_LISTED_WER`, untrained ones and slower twins (see
    :func:`quicker_twin`) are listed only with "show all models" (the loaded one always is); a model
    folder whose card cannot be read is left out and named in the note under the dropdown.

    Parameters
    ----------
    config : Config
        ``model.name`` picks the first model; ``model.batch_size`` and ``model.device`` are passed to loading,
        ``paths`` says where the registered models are.
    """

    def __init__(self, *, config: Config) -> None:
        self.config = config
        # why the model that config names could not be loaded ("" when it was)
        self._unloadable = ""
        try:
            self.model: ASRModel = load_model(config.model.name, config=config)
        except AsrkitError as err:
            # a broken model folder must not take the app down: start on the default, and say why
            self.model = load_model(DEFAULT_MODEL, config=config)
            self._unloadable = f"{config.model.name} could not be loaded, so {DEFAULT_MODEL} is in use: {err}"
        self._listing: ModelListing = list_models(config=self.config)
        registered = {e.name for e in self._listing.entries}
        self._chosen = self.model.name if self.model.name in registered else config.model.name
        if self._unloadable:
            self._chosen = DEFAULT_MODEL
        self._refreshing = False
        self.show_all = w.Checkbox(
            value=False, description="show all models", indent=False, layout=w.Layout(width="auto")
        )
        # as wide as the page allows, up to what the longest label needs; the checkbox wraps below on a phone
        self.dropdown = w.Dropdown(
            options=self._options(),
            value=self._chosen,
            description="model",
            tooltip=LEGEND,
            layout=w.Layout(width="100%", max_width="46em"),
            style={"description_width": "3.5em"},
        )
        self.note = w.HTML()
        self.note.add_class("asrkit-model-note")
        self._listeners = w.CallbackDispatcher()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asrkit-model-loader")
        self.dropdown.observe(self._picked, names="value")
        self.show_all.observe(lambda _: self.refresh(), names="value")
        super().__init__([w.HBox([self.dropdown, self.show_all], layout=w.Layout(flex_flow="row wrap")), self.note])
        self._describe()

    def on_change(self, handler: Callable[[ASRModel], None]) -> None:
        """Call ``handler(model)`` on the loading thread once a newly picked model has loaded."""
        self._listeners.register_callback(handler)

    def refresh(self) -> None:
        """List the registry's models again (one was added or deleted, e.g. by adaptation), keeping the
        choice; when the chosen model was deleted, the default model is loaded in its place."""
        self._listing = list_models(config=self.config)
        gone = (
            self._chosen not in {e.name for e in self._listing.entries} and not Path(self._chosen).expanduser().is_dir()
        )
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
        entries = self._listing.entries
        return [
            e
            for e in by_wer(entries)
            if self.show_all.value
            or e.name == self._chosen
            or (listed_by_default(e) and quicker_twin(e, entries) is None)
        ]

    def _options(self) -> list[tuple[str, str]]:
        twins = {e.name: quicker_twin(e, self._listing.entries) for e in self._shown()}
        options = [
            (model_label(e, size_bytes=weights_bytes(e), twin=twins[e.name] and twins[e.name].name), e.name)
            for e in self._shown()
        ]
        if self._chosen not in {name for _, name in options}:
            # a model folder outside the registry, named by ASR_MODEL_NAME
            options.insert(0, (self.model.name, self._chosen))
        return options

    def _describe(self) -> None:
        card = self.model.card
        lines = [
            html.escape(card.description)
            + (" <b>UNTRAINED: its transcripts mean nothing.</b>" if not card.trained else "")
        ]
        hidden = len(self._listing.entries) - len(self._shown())
        if hidden:
            lines.append(
                f"{hidden} more model{'s' if hidden > 1 else ''} (untrained, WER above "
                f"{100 * MAX_LISTED_WER:.0f}%, or a slower twin of another) with “show all models”."
            )
        lines.append(LEGEND)
        if self._unloadable:
            lines.append(f"<b>{html.escape(self._unloadable)}</b>")
        lines += [
            f"Left out {html.escape(b.name)} ({html.escape(str(b.path))}): its card could not be read: "
            f"{html.escape(str(b.error))}"
            for b in self._listing.broken
        ]
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
        self.model, self._chosen, self._unloadable = model, name, ""
        self._show_options()
        self._listeners(model)
        self._describe()
        self.dropdown.disabled = False

"""The "Expected words" field of the File and Live tabs: a prompt of names and terms the model should
expect in the speech (see :meth:`asrkit.contracts.ASRModel.with_prompt`).
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as w

from asrkit.contracts import ASRModel, PromptError

LABEL = "Expected words"
PLACEHOLDER = "names and terms you expect, e.g. Dashwood, Voila, Kaldi"


class PromptField(w.VBox):
    """A text field for the prompt, and a line saying whether the model takes it.

    The field's words apply once typed (Enter, or leaving the field); :meth:`apply` gives the model to
    run with them.
    """

    def __init__(self) -> None:
        self.text = w.Text(
            value="",
            placeholder=PLACEHOLDER,
            description=LABEL,
            continuous_update=False,
            layout=w.Layout(width="44em"),
            style={"description_width": "8em"},
        )
        self.text.add_class("asrkit-prompt-text")
        self.note = w.HTML()
        self.note.add_class("asrkit-prompt-note")
        self._listeners = w.CallbackDispatcher()
        self.text.observe(lambda _: self._listeners(), names="value")
        super().__init__([self.text, self.note])

    @property
    def prompt(self) -> str:
        """The field's words, spaces collapsed; "" when empty."""
        return " ".join(self.text.value.split())

    def on_change(self, handler: Callable[[], None]) -> None:
        """Call ``handler()`` when the user has typed other words."""
        self._listeners.register_callback(handler)

    def apply(self, model: ASRModel) -> ASRModel:
        """``model`` expecting the field's words, or ``model`` itself when the field is empty or the model
        refuses them; the note under the field says which, and why."""
        if not self.prompt:
            self.note.value = ""
            return model
        try:
            prompted = model.with_prompt(self.prompt)
        except PromptError as err:
            self.note.value = f"<small><b>Expected words not used:</b> {html.escape(str(err))}</small>"
            return model
        self.note.value = f"<small>{html.escape(model.name)} expects these words.</small>"
        return prompted

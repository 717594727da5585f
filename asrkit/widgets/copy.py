"""A "copy" button that puts a text on the clipboard in the browser, at the click (browsers allow
clipboard writes only in answer to the user's own gesture, so the kernel keeps the text in the
widget and the page copies it without a round trip).

Where the Clipboard API is missing (a page that is not a secure context), it copies through a
selected, hidden text area instead.
"""

from __future__ import annotations

import anywidget
import traitlets

_ESM = """
// the button says "copied" for this many ms, then its word again
const SAID_MS = 1500;

function copyBySelection(text) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  const done = document.execCommand("copy");
  area.remove();
  return done;
}

function render({ model, el }) {
  const button = document.createElement("button");
  button.className = "asrkit-copy jupyter-button";
  button.title = "copy the whole transcript";
  const idle = () => {
    button.textContent = model.get("label");
    button.disabled = !model.get("text");
  };
  button.addEventListener("click", async () => {
    const text = model.get("text");
    let copied;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (err) {
      copied = copyBySelection(text);
    }
    button.textContent = copied ? "copied" : "select the text to copy it";
    setTimeout(idle, SAID_MS);
  });
  model.on("change:text", idle);
  idle();
  el.appendChild(button);
}

export default { render };
"""


class CopyButton(anywidget.AnyWidget):
    """A button that copies ``text`` to the clipboard; greyed out while ``text`` is empty.

    Examples
    --------
    >>> button = CopyButton(text="hello")
    >>> button.text = "hello there"  # what a click copies from now on
    """

    _esm = _ESM
    # what a click copies
    text = traitlets.Unicode("").tag(sync=True)
    # the button's word
    label = traitlets.Unicode("copy").tag(sync=True)

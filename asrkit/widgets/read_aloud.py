"""Read a sentence aloud and see how the model did: WER, CER and a colour-coded word alignment.

The prompt is a sentence from a folder of sentence sources (Harvard sentences and CMU ARCTIC prompts, written to
be read aloud) or anything the user types. The reading streams through a
:class:`~asrkit.widgets.live.LiveTranscriber`, so the words appear while the user speaks; when they
press stop, the final text is scored against the prompt.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as w

from asrkit.audio import DEFAULT_LIMITS, AudioLimits
from asrkit.contracts import ASRModel
from asrkit.data.synth import read_sentences
from asrkit.metrics import score
from asrkit.report import ALIGNMENT_STYLE, alignment_html, alignment_legend
from asrkit.widgets.live import LiveOptions, LiveTranscriber

# Text sources whose sentences were written to be read aloud (LJSpeech's are long and archaic).
PROMPT_SOURCES = ("harvard", "arctic")
# the alignment's key in a reader's words
LEGEND = alignment_legend(reference="said", hypothesis="heard", deleted="missed")


def read_prompts(text_dir: str | Path) -> list[str]:
    """Sentences to read aloud from a folder of sentence sources (see :func:`~asrkit.data.synth.read_sentences`);
    [] when it is absent."""
    text_dir = Path(text_dir)
    if not text_dir.is_dir():
        return []
    return read_sentences(text_dir, sources=PROMPT_SOURCES)


def score_html(prompt: str, heard: str) -> str:
    """WER and CER of what was heard against the prompt, and the word alignment, as HTML.

    Examples
    --------
    >>> print(score_html("the cat sat", "the cat sad"))  # doctest: +ELLIPSIS
    <p class="asrkit-score"><b>WER 33.3%</b> · CER 9.1% · ...
    """
    result = score(prompt, heard)
    counts = result.words
    return (
        f'<p class="asrkit-score"><b>WER {100 * result.wer:.1f}%</b> · CER {100 * result.cer:.1f}% · '
        f"{counts.substitutions} substituted, {counts.deletions} missed, {counts.insertions} inserted "
        f"of {counts.reference_length} words</p>"
        f'<p class="asrkit-alignment">{alignment_html(result.alignment)}</p>{LEGEND}'
    )


class ReadAloud(w.VBox):
    """A prompt, a live recording of it, and its score.

    Parameters
    ----------
    model : ASRModel
    prompts : sequence of str
        Sentences offered by "another sentence"; the user may type any other.
    options, limits
        As for :class:`~asrkit.widgets.live.LiveTranscriber`.
    seed : int, optional
        Seeds the choice of sentences (tests); None draws differently each time.
    """

    def __init__(
        self,
        model: ASRModel,
        *,
        prompts: Sequence[str],
        options: LiveOptions = LiveOptions(),
        limits: AudioLimits = DEFAULT_LIMITS,
        seed: int | None = None,
    ) -> None:
        self.prompts = list(prompts)
        self._random = random.Random(seed)
        self.prompt = w.Textarea(
            placeholder="type a sentence to read aloud",
            layout=w.Layout(flex="1 1 20em", max_width="60em", height="5.5em"),
        )
        self.prompt.add_class("asrkit-prompt")
        self.another = w.Button(
            description="another sentence", icon="refresh", disabled=not self.prompts, layout=w.Layout(width="auto")
        )
        self.live = LiveTranscriber(model, options=options, limits=limits, expected_words=False)
        self.result = w.HTML()
        self.result.add_class("asrkit-read-result")
        self.another.on_click(lambda _: self.next_prompt())
        self.live.on_finished(self._score)
        super().__init__(
            [
                w.HTML(
                    f"<style>{ALIGNMENT_STYLE}.asrkit-prompt textarea{{font-size:18px;font-family:inherit}}</style>"
                    "<p>Read the sentence aloud: press <b>start</b>, read, press <b>stop</b>. "
                    "Edit it or type your own.</p>"
                ),
                w.HBox([self.prompt, self.another], layout=w.Layout(flex_flow="row wrap", align_items="flex-start")),
                self.live,
                self.result,
            ]
        )
        self.next_prompt()

    def next_prompt(self) -> None:
        """Show a sentence drawn from the prompts, and clear the last score."""
        if self.prompts:
            self.prompt.value = self._random.choice(self.prompts)
        self.result.value = ""

    def use_model(self, model: ASRModel) -> None:
        self.live.use_model(model)

    def _score(self, heard: str) -> None:
        prompt = self.prompt.value.strip()
        if not prompt:
            self.result.value = "<p>Type the sentence you read to get a score.</p>"
        elif not heard:
            self.result.value = "<p>Nothing was recognised: check the level meter moves while you speak.</p>"
        else:
            self.result.value = score_html(prompt, heard)

"""An interactive explorer of an evaluation report: filter, sort and page the utterances, pick one to
hear it and see its alignment, waveform and log-mel spectrogram with the model's word times.

Only the current page is rendered, and a click redraws only the detail pane, so a report of
thousands of utterances stays responsive.

Examples
--------
>>> report = evaluate(load_model(), read_manifest("kathleen_dev.tsv"))  # doctest: +SKIP
>>> Explorer(report)  # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence

import ipywidgets as w
import numpy as np
from matplotlib.figure import Figure

from asrkit.analysis import vocabulary, word_accuracy
from asrkit.audio import SAMPLE_RATE, AudioError, load_audio, wav_bytes
from asrkit.evaluate import EvalReport, EvalRow
from asrkit.plotting import plot_spectrogram
from asrkit.report import STYLE, alignment_html

PAGE_SIZE = 15
# figure sizes in inches at DPI dots per inch, shown at their own pixel size
DPI = 80
PLOT_SIZE = (10, 4.2)
HISTOGRAM_SIZE = (6, 1.8)
SORTS = {
    "WER, worst first": lambda r: (-r.score.wer, r.utterance.id),
    "WER, best first": lambda r: (r.score.wer, r.utterance.id),
    "longest first": lambda r: (-r.duration_s, r.utterance.id),
    "utterance id": lambda r: r.utterance.id,
}
ALL_SPEAKERS = "all speakers"
# the utterance list's columns line up only in a fixed-width font
TABLE_STYLE = ".asrkit-explorer-table select{font-family:monospace;font-size:12px}"


def error_words(row: EvalRow) -> list[tuple[str, str]]:
    """Each hypothesis word in order with its alignment op ("equal", "substitute" or "insert")."""
    return [(a.hypothesis, a.op) for a in row.score.alignment if a.hypothesis is not None]


def plot_row(row: EvalRow, audio: np.ndarray) -> Figure:
    """Waveform above the log-mel spectrogram, with the model's word times; wrong words in red."""
    fig = Figure(figsize=PLOT_SIZE, layout="constrained")
    wave, spec = fig.subplots(2, 1, sharex=True, height_ratios=(1, 2))
    t = np.arange(len(audio)) / SAMPLE_RATE
    wave.plot(t, audio, lw=0.5, color="#4c78a8")
    wave.set(ylabel="amplitude", title=f"{row.utterance.id}  WER {100 * row.score.wer:.1f}%")
    plot_spectrogram(audio, ax=spec)
    ops = error_words(row)
    # the model's words and the aligned hypothesis are the same words in the same order, unless the
    # model's own text differs from its normalised form (numbers, punctuation); then no marks
    if len(ops) == len(row.words):
        top = spec.get_ylim()[1]
        for span, (_, op) in zip(row.words, ops):
            wrong = op != "equal"
            for ax in (wave, spec):
                ax.axvspan(span.start, span.end, color="#e45756" if wrong else "white", alpha=0.25 if wrong else 0.1)
            spec.text((span.start + span.end) / 2, top * 0.92, span.text, ha="center", va="top", fontsize=9,
                      color="#ff8080" if wrong else "white")
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


class Explorer(w.VBox):
    """The explorer widget for one :class:`~asrkit.evaluate.EvalReport`.

    Parameters
    ----------
    report : EvalReport
    known : set of str, optional
        The model's training vocabulary: words outside it are marked OOV in the word table.
    page_size : int
        Utterances listed per page.
    """

    def __init__(self, report: EvalReport, *, known: set[str] | None = None, page_size: int = PAGE_SIZE) -> None:
        self.report = report
        self.page_size = page_size
        self.page = 0
        self.shown: list[EvalRow] = []
        top_wer = max((100 * r.score.wer for r in report.rows), default=100.0)
        self.wer_range = w.FloatRangeSlider(value=(0.0, max(top_wer, 100.0)), min=0.0, max=max(top_wer, 100.0), step=1.0,
                                            description="WER %", continuous_update=False, readout_format=".0f")
        speakers = sorted({r.utterance.speaker for r in report.rows if r.utterance.speaker})
        self.speaker = w.Dropdown(options=[ALL_SPEAKERS, *speakers], description="speaker")
        self.contains = w.Text(placeholder="reference or hypothesis contains", description="text")
        self.sort = w.Dropdown(options=list(SORTS), description="sort")
        self.previous, self.next = w.Button(description="◀ previous"), w.Button(description="next ▶")
        self.page_label = w.Label()
        self.table = w.Select(options=[], rows=page_size, layout=w.Layout(width="100%"))
        self.table.add_class("asrkit-explorer-table")
        self.alignment = w.HTML()
        self.audio = w.Audio(autoplay=False, loop=False)
        self.picture = w.Image(format="png", width=f"{PLOT_SIZE[0] * DPI}px")
        self.picture.add_class("asrkit-explorer-plot")
        for control in (self.wer_range, self.speaker, self.contains, self.sort):
            control.observe(lambda _: self._filter(), names="value")
        self.previous.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(1))
        self.table.observe(self._pick, names="index")
        super().__init__([
            w.HTML(f"<style>{STYLE}{TABLE_STYLE}</style>" + self._statistics()),
            w.Image(value=_png(self._duration_histogram()), format="png", width=f"{HISTOGRAM_SIZE[0] * DPI}px"),
            w.HBox([self.wer_range, self.speaker]),
            w.HBox([self.contains, self.sort]),
            w.HBox([self.previous, self.page_label, self.next]),
            self.table,
            self.alignment,
            self.audio,
            self.picture,
            w.HTML(self._word_table(known)),
        ])
        self._filter()

    def _statistics(self) -> str:
        r, wi = self.report, self.report.wer_interval
        words = vocabulary(row.score.reference for row in r.rows)
        speakers = {row.utterance.speaker for row in r.rows}
        return (
            f"<p><b>{html.escape(r.model)}</b>: {len(r.rows)} utterances, {r.audio_s / 3600:.2f} h of audio, "
            f"{len(speakers)} speaker(s), {len(words)} distinct reference words. "
            f"<b>WER {100 * r.corpus.wer:.2f}%</b> (95% interval {100 * wi.low:.2f}–{100 * wi.high:.2f}%), "
            f"CER {100 * r.corpus.cer:.2f}%, RTF {r.rtf:.3f}; text normalised by <code>{html.escape(r.normalizer)}</code>.</p>"
        )

    def _duration_histogram(self) -> Figure:
        fig = Figure(figsize=HISTOGRAM_SIZE, layout="constrained")
        ax = fig.add_subplot()
        ax.hist([r.duration_s for r in self.report.rows], bins=30, color="#72b7b2")
        ax.set(xlabel="seconds", ylabel="utterances", title="utterance durations")
        return fig

    def _word_table(self, known: set[str] | None) -> str:
        missed = [s for s in word_accuracy(self.report, known=known) if s.correct < s.count][:20]
        rows = "".join(
            f"<tr><td>{html.escape(s.word)}{' <b>OOV</b>' if s.oov else ''}</td><td class='num'>{s.count}</td>"
            f"<td class='num'>{100 * s.accuracy:.0f}%</td></tr>"
            for s in missed
        )
        return f"<h4>Words most often missed</h4><table><tr><th>word</th><th>in reference</th><th>recognised</th></tr>{rows}</table>"

    def matching(self) -> list[EvalRow]:
        """The rows passing the filters, in the chosen order."""
        low, high = self.wer_range.value
        needle = self.contains.value.strip().lower()
        rows = [
            r for r in self.report.rows
            if low <= 100 * r.score.wer <= high
            and self.speaker.value in (ALL_SPEAKERS, r.utterance.speaker)
            and (not needle or needle in r.score.reference or needle in r.score.hypothesis)
        ]
        return sorted(rows, key=SORTS[self.sort.value])

    def _filter(self) -> None:
        self.rows = self.matching()
        self.page = 0
        self._render_page()

    def _turn(self, step: int) -> None:
        pages = max(1, -(-len(self.rows) // self.page_size))
        self.page = min(max(self.page + step, 0), pages - 1)
        self._render_page()

    def _render_page(self) -> None:
        pages = max(1, -(-len(self.rows) // self.page_size))
        self.shown = self.rows[self.page * self.page_size : (self.page + 1) * self.page_size]
        self.page_label.value = f"page {self.page + 1} of {pages} ({len(self.rows)} utterances)"
        self.table.options = [self._line(r) for r in self.shown]
        self.table.index = None

    @staticmethod
    def _line(row: EvalRow) -> str:
        text = row.score.reference if len(row.score.reference) <= 70 else row.score.reference[:69] + "…"
        return f"{100 * row.score.wer:6.1f}%  {row.duration_s:6.2f}s  {row.utterance.speaker[:12]:<12}  {row.utterance.id[:28]:<28}  {text}"

    def _pick(self, change) -> None:
        if change["new"] is None or change["new"] >= len(self.shown):
            return
        self.show(self.shown[change["new"]])

    def show(self, row: EvalRow) -> None:
        """Fill the detail pane with one utterance."""
        self.alignment.value = (
            f"<p><b>{html.escape(row.utterance.id)}</b> · WER {100 * row.score.wer:.1f}% · "
            f"S={row.score.words.substitutions} D={row.score.words.deletions} I={row.score.words.insertions}</p>"
            f"<p class='asrkit-alignment'>{alignment_html(row.score.alignment)}</p>"
            + ("<p class='legend'><span class='sub'>substituted</span><span class='del'>deleted</span>"
               "<span class='ins'>inserted</span></p>")
        )
        try:
            audio = load_audio(row.utterance.audio_path)
        except AudioError as err:
            self.alignment.value += f"<p>audio unavailable: {html.escape(str(err))}</p>"
            self.audio.value, self.picture.value = b"", b""
            return
        self.audio.value = wav_bytes(audio)
        self.picture.value = _png(plot_row(row, audio))


def explore(reports: Sequence[EvalReport], **kwargs) -> w.Tab:
    """One explorer tab per report, e.g. two models on the same manifest."""
    tab = w.Tab(children=[Explorer(r, **kwargs) for r in reports])
    for i, r in enumerate(reports):
        tab.set_title(i, r.model)
    return tab

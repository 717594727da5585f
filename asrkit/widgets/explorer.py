"""An interactive explorer of an evaluation report: filter, sort and page the utterances, pick one to
hear it and see its alignment, waveform and log-mel spectrogram with the model's word times.

Only the current page is rendered, and a click redraws only the detail pane, so a report of
thousands of utterances stays responsive.

:class:`ErrorAnalysis` is the whole page: it shows at once, scores a set with one or two models on a
thread of its own, and fills the explorer in as utterances are scored (cached hypotheses at once)::

    Explorer(evaluate(load_model(), read_manifest("dev.tsv")))
    ErrorAnalysis(sets={"dev": Path("dev.tsv")}, models=["default"])
"""

from __future__ import annotations

import html
import io
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import ipywidgets as w
import numpy as np
from matplotlib.figure import Figure

from asrkit.analysis import compare, vocabulary, wer_by_speaker, word_accuracy, word_errors
from asrkit.audio import SAMPLE_RATE, AudioError, load_audio, wav_bytes
from asrkit.config import Config
from asrkit.evaluate import (
    EvalReport,
    EvalRow,
    HypothesisCache,
    Outcome,
    build_report,
    cached_outcomes,
    scorable,
    transcribe_batches,
)
from asrkit.manifest import Utterance, read_manifest
from asrkit.models import ASRModel, load_model, resolve_model
from asrkit.plotting import plot_spectrogram
from asrkit.report import STYLE, alignment_html
from asrkit.widgets.file_mode import audio_player

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
# the page's scoring: utterances per model call (small, so rows appear every few seconds, not once a
# minute), and the least time between two redraws of the explorer while rows come in
SCORE_BATCH = 4
REDRAW_S = 1.0
NO_COMPARISON = "(none)"


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
            spec.text(
                (span.start + span.end) / 2,
                top * 0.92,
                span.text,
                ha="center",
                va="top",
                fontsize=9,
                color="#ff8080" if wrong else "white",
            )
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


class Explorer(w.VBox):
    """The explorer widget for one :class:`~asrkit.evaluate.EvalReport`.

    Parameters
    ----------
    report : EvalReport or None
        None: nothing scored yet (see :meth:`update`).
    known : set of str, optional
        The model's training vocabulary: words outside it are marked OOV in the word table.
    page_size : int
        Utterances listed per page.
    """

    def __init__(self, report: EvalReport | None, *, known: set[str] | None = None, page_size: int = PAGE_SIZE) -> None:
        self.report = report
        self.known = known
        self.page_size = page_size
        self.page = 0
        self.rows: list[EvalRow] = []
        self.shown: list[EvalRow] = []
        # set while the table is refilled around the picked utterance, so it is not drawn again
        self._keep = False
        self.wer_range = w.FloatRangeSlider(
            value=(0.0, 100.0),
            min=0.0,
            max=100.0,
            step=1.0,
            description="WER %",
            continuous_update=False,
            readout_format=".0f",
        )
        self.speaker = w.Dropdown(options=[ALL_SPEAKERS], description="speaker")
        self.contains = w.Text(placeholder="reference or hypothesis contains", description="text")
        self.sort = w.Dropdown(options=list(SORTS), description="sort")
        self.previous, self.next = w.Button(description="◀ previous"), w.Button(description="next ▶")
        self.page_label = w.Label()
        self.table = w.Select(options=[], rows=page_size, layout=w.Layout(width="100%"))
        self.table.add_class("asrkit-explorer-table")
        self.statistics = w.HTML()
        self.statistics.add_class("asrkit-explorer-statistics")
        # the pictures stay hidden while empty: a browser draws an empty image as a broken one
        self.histogram = w.Image(format="png", width=f"{HISTOGRAM_SIZE[0] * DPI}px", layout=w.Layout(display="none"))
        self.alignment = w.HTML()
        self.audio = audio_player(loop=False, layout=w.Layout(display="none"))
        self.picture = w.Image(format="png", width=f"{PLOT_SIZE[0] * DPI}px", layout=w.Layout(display="none"))
        self.picture.add_class("asrkit-explorer-plot")
        self.words = w.HTML()
        self._fill_controls()
        for control in (self.wer_range, self.speaker, self.contains, self.sort):
            control.observe(lambda _: self._filter(), names="value")
        self.previous.on_click(lambda _: self._turn(-1))
        self.next.on_click(lambda _: self._turn(1))
        self.table.observe(self._pick, names="index")
        super().__init__(
            [
                w.HTML(f"<style>{STYLE}{TABLE_STYLE}</style>"),
                self.statistics,
                self.histogram,
                w.HBox([self.wer_range, self.speaker]),
                w.HBox([self.contains, self.sort]),
                w.HBox([self.previous, self.page_label, self.next]),
                self.table,
                self.alignment,
                self.audio,
                self.picture,
                self.words,
            ]
        )
        self._summarise()
        self._filter()

    def update(self, report: EvalReport) -> None:
        """Show ``report`` instead, e.g. the same set with more utterances scored: the filters, the page
        and the picked utterance stay as they are where they still apply."""
        self.report = report
        self._fill_controls()
        self._summarise()
        self.rows = self.matching()
        self._render_page()

    def _fill_controls(self) -> None:
        rows = self.report.rows if self.report is not None else ()
        top = max([100.0, *(100 * r.score.wer for r in rows)])
        if top > self.wer_range.max:
            # the upper handle follows a grown maximum when it was at the end, so no row drops out unasked
            at_end = self.wer_range.value[1] >= self.wer_range.max
            self.wer_range.max = top
            if at_end:
                self.wer_range.value = (self.wer_range.value[0], top)
        speakers = [ALL_SPEAKERS, *sorted({r.utterance.speaker for r in rows if r.utterance.speaker})]
        if list(self.speaker.options) != speakers:
            chosen = self.speaker.value
            self.speaker.options = speakers
            self.speaker.value = chosen if chosen in speakers else ALL_SPEAKERS

    def _summarise(self) -> None:
        if self.report is None:
            self.statistics.value, self.histogram.value, self.words.value = "<p>nothing scored yet</p>", b"", ""
            self.histogram.layout.display = "none"
            return
        self.statistics.value = self._statistics()
        self.histogram.value = _png(self._duration_histogram())
        self.histogram.layout.display = None
        self.words.value = self._word_table(self.known)

    def _statistics(self) -> str:
        r, wi = self.report, self.report.wer_interval
        words = vocabulary(row.score.reference for row in r.rows)
        speakers = {row.utterance.speaker for row in r.rows}
        return (
            f"<p><b>{html.escape(r.model)}</b>: {len(r.rows)} utterances, {r.audio_s / 3600:.2f} h of audio, "
            f"{len(speakers)} speaker(s), {len(words)} distinct reference words. "
            f"<b>WER {100 * r.corpus.wer:.2f}%</b> (95% interval {100 * wi.low:.2f}–{100 * wi.high:.2f}%), "
            f"CER {100 * r.corpus.cer:.2f}%, RTF {r.rtf:.3f}; "
            f"text normalised by <code>{html.escape(r.normalizer)}</code>.</p>"
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
        header = "<tr><th>word</th><th>in reference</th><th>recognised</th></tr>"
        return f"<h4>Words most often missed</h4><table>{header}{rows}</table>"

    def matching(self) -> list[EvalRow]:
        """The rows passing the filters, in the chosen order."""
        low, high = self.wer_range.value
        needle = self.contains.value.strip().lower()
        rows = [
            r
            for r in (self.report.rows if self.report is not None else ())
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
        self.page = min(self.page, pages - 1)
        index = self.table.index
        picked = self.shown[index].utterance.id if index is not None and index < len(self.shown) else None
        self.shown = self.rows[self.page * self.page_size : (self.page + 1) * self.page_size]
        self.page_label.value = f"page {self.page + 1} of {pages} ({len(self.rows)} utterances)"
        ids = [r.utterance.id for r in self.shown]
        self._keep = picked in ids
        try:
            self.table.options = [self._line(r) for r in self.shown]
            self.table.index = ids.index(picked) if picked in ids else None
        finally:
            self._keep = False

    @staticmethod
    def _line(row: EvalRow) -> str:
        text = row.score.reference if len(row.score.reference) <= 70 else row.score.reference[:69] + "…"
        speaker, utterance = row.utterance.speaker[:12], row.utterance.id[:28]
        return f"{100 * row.score.wer:6.1f}%  {row.duration_s:6.2f}s  {speaker:<12}  {utterance:<28}  {text}"

    def _pick(self, change) -> None:
        if change["new"] is None or change["new"] >= len(self.shown) or self._keep:
            return
        self.show(self.shown[change["new"]])

    def show(self, row: EvalRow) -> None:
        """Fill the detail pane with one utterance."""
        self.alignment.value = (
            f"<p><b>{html.escape(row.utterance.id)}</b> · WER {100 * row.score.wer:.1f}% · "
            f"S={row.score.words.substitutions} D={row.score.words.deletions} I={row.score.words.insertions}</p>"
            f"<p class='asrkit-alignment'>{alignment_html(row.score.alignment)}</p>"
            + (
                "<p class='legend'><span class='sub'>substituted</span><span class='del'>deleted</span>"
                "<span class='ins'>inserted</span></p>"
            )
        )
        try:
            audio = load_audio(row.utterance.audio_path)
        except AudioError as err:
            self.alignment.value += f"<p>audio unavailable: {html.escape(str(err))}</p>"
            self.audio.layout.display = self.picture.layout.display = "none"
            return
        self.audio.value = wav_bytes(audio)
        self.picture.value = _png(plot_row(row, audio))
        self.audio.layout.display = self.picture.layout.display = None


def explore(reports: Sequence[EvalReport], **kwargs) -> w.Tab:
    """One explorer tab per report, e.g. two models on the same manifest."""
    tab = w.Tab(children=[Explorer(r, **kwargs) for r in reports])
    for i, r in enumerate(reports):
        tab.set_title(i, r.model)
    return tab


def summary_html(reports: Sequence[EvalReport]) -> str:
    """Who and what goes wrong in each report (per-speaker WER, confusions, inserted and deleted words),
    and with two reports, how they differ (a paired bootstrap interval of the WER difference)."""
    parts = []
    for report in reports:
        speakers = "".join(
            f"<tr><td>{html.escape(g.name or '(no speaker)')}</td><td class='num'>{g.utterances}</td>"
            f"<td class='num'>{100 * g.wer:.1f}%</td>"
            f"<td class='num'>{100 * g.interval.low:.1f}–{100 * g.interval.high:.1f}%</td></tr>"
            for g in wer_by_speaker(report)
        )
        errors = word_errors(report, top=10)
        confusions = ", ".join(f"{html.escape(r)}→{html.escape(h)} ({n})" for (r, h), n in errors.substitutions)
        parts.append(
            f"<h4>{html.escape(report.model)}: who and what goes wrong</h4>"
            f"<table><tr><th>speaker</th><th>utterances</th><th>WER</th><th>95% interval</th></tr>{speakers}</table>"
            f"<p>confusions: {confusions or '–'}<br>"
            f"inserted: {', '.join(f'{html.escape(x)} ({n})' for x, n in errors.insertions) or '–'}<br>"
            f"deleted: {', '.join(f'{html.escape(x)} ({n})' for x, n in errors.deletions) or '–'}</p>"
        )
    if len(reports) == 2:
        a, b = reports
        c = compare(a, b)
        only_a = ", ".join(f"{html.escape(x)} ({n})" for x, n in c.only_a_right[:10]) or "–"
        only_b = ", ".join(f"{html.escape(x)} ({n})" for x, n in c.only_b_right[:10]) or "–"
        parts.append(
            f"<h4>{html.escape(a.model)} against {html.escape(b.model)}</h4>"
            f"<p>WER {100 * a.corpus.wer:.2f}% against {100 * b.corpus.wer:.2f}%: {100 * c.wer_delta:+.2f} points "
            f"(95% interval {100 * c.delta_interval.low:+.2f} to {100 * c.delta_interval.high:+.2f}); "
            f"{len(c.differences)} utterances transcribed differently.<br>"
            f"only {html.escape(a.model)} right: {only_a}<br>only {html.escape(b.model)} right: {only_b}</p>"
        )
    return "".join(parts)


class _Cancelled(Exception):
    """A newer run took over: the old one stops without touching the page."""


class ErrorAnalysis(w.VBox):
    """The error-analysis page: a set and one or two models to choose, a progress bar, and one
    :class:`Explorer` per model that fills in as utterances are scored.

    The page shows at once. Scoring runs on a thread of its own: hypotheses in the model's
    :class:`~asrkit.evaluate.HypothesisCache` are shown first, then the model is loaded and runs over the
    rest ``batch_size`` utterances at a time, each result cached as it comes. Choosing another set, model
    or limit cancels the run (after the batch in hand) and starts a new one.

    Parameters
    ----------
    sets : mapping of str to Path
        Manifests to choose from, by the name shown.
    models : sequence of str
        Model names to choose from (see :func:`~asrkit.models.load_model`).
    model, comparison : str, optional
        The models chosen at first (default: the first in ``models``; no comparison).
    limit : int, optional
        Score only the first ``limit`` utterances of a set (None: all of them).
    known : set of str, optional
        The models' training vocabulary, for the OOV marks of each explorer.
    cache_dir : Path, "default" or None
        Where hypotheses are cached ("default": ``Config.from_env().paths.cache_dir``, ``ASR_CACHE_DIR``;
        None: nowhere, every run transcribes afresh).
    loader : callable
        Loads a model by name.
    batch_size : int
        Utterances per model call.
    redraw_s : float
        Least seconds between two redraws of the explorer while rows come in.
    start : bool
        Start scoring the first choice at once.
    """

    def __init__(
        self,
        *,
        sets: Mapping[str, Path],
        models: Sequence[str],
        model: str | None = None,
        comparison: str | None = None,
        limit: int | None = None,
        known: set[str] | None = None,
        cache_dir: Path | Literal["default"] | None = "default",
        loader: Callable[[str], ASRModel] = load_model,
        batch_size: int = SCORE_BATCH,
        redraw_s: float = REDRAW_S,
        start: bool = True,
    ) -> None:
        if not sets or not models:
            raise ValueError(
                f"the error-analysis page needs a set and a model: got sets {list(sets)} and models {list(models)}"
            )
        if cache_dir == "default":
            cache_dir = Config.from_env().paths.cache_dir
        self.sets, self.known, self.cache_dir, self.loader = dict(sets), known, cache_dir, loader
        self.batch_size, self.redraw_s = batch_size, redraw_s
        # the reports of the latest run, one per model, as far as it got
        self.reports: list[EvalReport] = []
        # models loaded so far, by name: choosing a model again does not load it again
        self._models: dict[str, ASRModel] = {}
        # the page's widgets are changed under this lock, and only by the run whose cancel event is unset
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        # one explorer per chosen model, in the tabs
        self.explorers: list[Explorer] = []
        self.set_choice = w.Dropdown(options=list(self.sets), description="set")
        self.model_choice = w.Dropdown(options=list(models), value=model or models[0], description="model")
        self.comparison_choice = w.Dropdown(
            options=[NO_COMPARISON, *models],
            value=comparison or NO_COMPARISON,
            description="compare with",
            style={"description_width": "initial"},
        )
        self.limit = w.BoundedIntText(
            value=limit or 0,
            min=0,
            max=10**7,
            description="first",
            tooltip="score only the first utterances of the set (0: all)",
            layout=w.Layout(width="12em"),
        )
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="20em"))
        self.progress.add_class("asrkit-explorer-progress")
        self.status = w.HTML()
        self.status.add_class("asrkit-explorer-status")
        self.views = w.Tab()
        self.summary = w.HTML()
        self.summary.add_class("asrkit-explorer-summary")
        for control in (self.set_choice, self.model_choice, self.comparison_choice, self.limit):
            control.observe(lambda _: self.restart(), names="value")
        super().__init__(
            [
                w.HBox(
                    [self.set_choice, self.model_choice, self.comparison_choice, self.limit],
                    layout=w.Layout(flex_flow="row wrap"),
                ),
                w.HBox([self.progress, self.status], layout=w.Layout(flex_flow="row wrap")),
                self.views,
                self.summary,
            ]
        )
        self.add_class("asrkit-error-analysis")
        if start:
            self.restart()

    @property
    def chosen_models(self) -> list[str]:
        """The model, then the one to compare it with if any (not the same one twice)."""
        second = self.comparison_choice.value
        return [self.model_choice.value] + ([second] if second not in (NO_COMPARISON, self.model_choice.value) else [])

    def restart(self) -> threading.Thread:
        """Cancel the run in progress and score the current choice; the new run's thread."""
        names = self.chosen_models
        with self._lock:
            self._cancel.set()
            self._cancel = cancel = threading.Event()
            self.reports = []
            self.explorers = [Explorer(None, known=self.known) for _ in names]
            self.views.children = self.explorers
            for i, name in enumerate(names):
                self.views.set_title(i, name)
            self.progress.value, self.summary.value = 0, ""
            self.status.value = "reading the set…"
        previous = self._thread
        manifest, limit = self.sets[self.set_choice.value], self.limit.value or None
        self._thread = threading.Thread(
            target=self._run, args=(cancel, previous, manifest, names, limit), name="asrkit-error-analysis", daemon=True
        )
        self._thread.start()
        return self._thread

    def model(self, name: str) -> ASRModel:
        """The model ``name``, loaded once for the page."""
        if name not in self._models:
            self._models[name] = self.loader(name)
        return self._models[name]

    def wait(self, timeout: float | None = None) -> list[EvalReport]:
        """Wait for the run in progress to finish (at most ``timeout`` seconds); its reports."""
        if self._thread is not None:
            self._thread.join(timeout)
        return list(self.reports)

    # --- on the run's thread ---

    def _run(
        self,
        cancel: threading.Event,
        previous: threading.Thread | None,
        manifest: Path,
        names: list[str],
        limit: int | None,
    ) -> None:
        if previous is not None:
            previous.join()  # one run on the CPU at a time: the old one stops after its batch in hand
        try:
            utterances = read_manifest(manifest)[:limit]
            utterances = [utterances[i] for i in scorable(utterances)]
            for k, name in enumerate(names):
                self.reports.append(self._score(cancel, k, name, utterances))
            self._write(cancel, summary=summary_html(self.reports), pick_first=True)
        except _Cancelled:
            return
        except Exception as err:  # a bad set or a failing model must leave the page working and say why
            try:
                self._write(
                    cancel, status=f"<b>could not score {html.escape(manifest.name)}</b>: {html.escape(str(err))}"
                )
            except _Cancelled:
                return

    def _score(self, cancel: threading.Event, k: int, name: str, utterances: list[Utterance]) -> EvalReport:
        """Score ``utterances`` with model ``name`` (the ``k``-th chosen), showing them as they come; the
        report of all of them."""
        n = len(utterances)
        cache = HypothesisCache.for_model(resolve_model(name), cache_dir=self.cache_dir) if self.cache_dir else None
        outcomes = cached_outcomes(utterances, cache)
        todo = [i for i, o in enumerate(outcomes) if o is None]
        cached = n - len(todo)
        report = self._show(cancel, k, name, utterances, outcomes, cached=cached)
        if todo:
            if name not in self._models:
                self._write(cancel, status=f"{html.escape(name)}: {cached}/{n} from the cache; loading the model…")
            model = self.model(name)
            began, shown = time.monotonic(), time.monotonic()
            batches = transcribe_batches(model, [utterances[i] for i in todo], batch_size=self.batch_size)
            for start, batch in zip(range(0, len(todo), self.batch_size), batches):
                if cancel.is_set():
                    raise _Cancelled
                for i, outcome in zip(todo[start : start + self.batch_size], batch):
                    outcomes[i] = outcome
                    if cache is not None and outcome.transcript is not None:
                        cache.put(utterances[i].audio_path, outcome.transcript, outcome.compute_s)
                done = start + len(batch)
                if done == len(todo) or time.monotonic() - shown >= self.redraw_s:
                    left = (time.monotonic() - began) / done * (len(todo) - done)
                    report = self._show(cancel, k, name, utterances, outcomes, cached=cached, left_s=left)
                    shown = time.monotonic()
        return report

    def _show(
        self,
        cancel: threading.Event,
        k: int,
        name: str,
        utterances: list[Utterance],
        outcomes: list[Outcome | None],
        *,
        cached: int,
        left_s: float | None = None,
    ) -> EvalReport | None:
        """Show the utterances scored so far; their report (None before the first)."""
        done = [i for i, o in enumerate(outcomes) if o is not None]
        n = len(utterances)
        report = (
            build_report(name, [utterances[i] for i in done], [outcomes[i] for i in done], cached=cached)
            if done
            else None
        )
        status = f"{html.escape(name)}: {len(done)}/{n} scored" + (f" ({cached} from the cache)" if cached else "")
        if len(done) == n:
            status += f"; corpus WER {100 * report.corpus.wer:.2f}%" if report is not None else ""
        elif left_s is not None:
            status += f", about {left_s:.0f} s left"
        with self._lock:
            if cancel.is_set():
                raise _Cancelled
            if report is not None:
                self.explorers[k].update(report)
            self.progress.max, self.progress.value = max(n, 1), len(done)
            self.status.value = status
        return report

    def _write(
        self,
        cancel: threading.Event,
        *,
        status: str | None = None,
        summary: str | None = None,
        pick_first: bool = False,
    ) -> None:
        """Change the page, unless a newer run took over; ``pick_first``: show each explorer's first
        utterance (the worst, as sorted at first) where none is picked yet."""
        with self._lock:
            if cancel.is_set():
                raise _Cancelled
            if status is not None:
                self.status.value = status
            if summary is not None:
                self.summary.value = summary
            for explorer in self.explorers if pick_first else ():
                if explorer.table.index is None and explorer.shown:
                    explorer.table.index = 0

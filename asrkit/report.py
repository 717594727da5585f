"""Evaluation reports as files: CSV and JSON for tools, one self-contained HTML page for people.

The HTML page embeds its plots as PNG data and its style inline, so it can be mailed or archived as
one file; every piece of text from a manifest or a model is escaped.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

from matplotlib.figure import Figure

from asrkit.analysis import GroupScore, wer_by_length, wer_by_speaker, word_accuracy, word_errors
from asrkit.evaluate import EvalReport, EvalRow
from asrkit.metrics import AlignedWord

# Columns of the CSV export and of the HTML table, in order.
COLUMNS = (
    "utterance",
    "duration_s",
    "speaker",
    "reference",
    "hypothesis",
    "wer",
    "cer",
    "substitutions",
    "deletions",
    "insertions",
    "reference_words",
    "rtf",
    "error",
)
# Columns holding text from a manifest, a model or an error message, not numbers.
TEXT_COLUMNS = ("utterance", "speaker", "reference", "hypothesis", "error")
# First characters a spreadsheet reads as the start of a formula (OWASP's list for CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def row_fields(row: EvalRow) -> dict:
    """One utterance's values, keyed by :data:`COLUMNS`."""
    w = row.score.words
    return {
        "utterance": row.utterance.id,
        "duration_s": round(row.duration_s, 3),
        "speaker": row.utterance.speaker,
        "reference": row.score.reference,
        "hypothesis": row.score.hypothesis,
        "wer": round(row.score.wer, 4),
        "cer": round(row.score.cer, 4),
        "substitutions": w.substitutions,
        "deletions": w.deletions,
        "insertions": w.insertions,
        "reference_words": w.reference_length,
        "rtf": round(row.rtf, 4),
        "error": row.error or "",
    }


def summary(report: EvalReport) -> dict:
    """Corpus figures of a report (what a JSON export starts with)."""
    w, wi, ci = report.corpus.words, report.wer_interval, report.cer_interval
    return {
        "model": report.model,
        "normalizer": report.normalizer,
        "utterances": len(report.rows),
        "audio_s": round(report.audio_s, 3),
        "wer": report.corpus.wer,
        "wer_95": [wi.low, wi.high],
        "cer": report.corpus.cer,
        "cer_95": [ci.low, ci.high],
        "substitutions": w.substitutions,
        "deletions": w.deletions,
        "insertions": w.insertions,
        "reference_words": w.reference_length,
        "rtf": report.rtf,
        "unreadable": len(report.failed),
    }


def _inert(text: str) -> str:
    # a leading quote makes a spreadsheet show the cell as text instead of running "=HYPERLINK(...)"
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(report: EvalReport, path: str | Path) -> Path:
    """One row per utterance, columns :data:`COLUMNS`. A text cell that a spreadsheet would take for a
    formula (starting with one of :data:`FORMULA_STARTS`) gets a leading ``'``; numbers are written as they are."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in report.rows:
            fields = row_fields(row)
            writer.writerow({**fields, **{c: _inert(fields[c]) for c in TEXT_COLUMNS if isinstance(fields[c], str)}})
    return path


def write_json(report: EvalReport, path: str | Path, **extra) -> Path:
    """Summary, per-speaker figures and every utterance; ``extra`` keys are added at the top."""
    data = {
        **extra,
        **summary(report),
        "speakers": [_group_dict(g) for g in wer_by_speaker(report)],
        "rows": [row_fields(r) for r in report.rows],
    }
    path = Path(path)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _group_dict(g: GroupScore) -> dict:
    return {
        "name": g.name,
        "utterances": g.utterances,
        "wer": g.wer,
        "wer_95": [g.interval.low, g.interval.high],
        "reference_words": g.words.reference_length,
    }


OP_CLASSES = {"equal": "ok", "substitute": "sub", "delete": "del", "insert": "ins"}


def alignment_legend(*, reference: str = "reference", hypothesis: str = "hypothesis", deleted: str = "deleted") -> str:
    """The key to :func:`alignment_html`'s colours, in the words of the page it is on."""
    return (
        f'<p class="legend"><span class="ok">correct</span><span class="sub">substituted ({reference}→{hypothesis})'
        f'</span><span class="del">{deleted}</span><span class="ins">inserted</span></p>'
    )


def alignment_html(alignment: tuple[AlignedWord, ...]) -> str:
    """Colour-coded word alignment: substitutions show ``reference→hypothesis``."""
    parts = []
    for a in alignment:
        if a.op == "substitute":
            text = f"{html.escape(a.reference)}→{html.escape(a.hypothesis)}"
        else:
            text = html.escape(a.reference if a.reference is not None else a.hypothesis)
        parts.append(f'<span class="{OP_CLASSES[a.op]}">{text}</span>')
    return " ".join(parts)


# The alignment's colours alone, for pages that have their own layout (the app).
ALIGNMENT_STYLE = """
.ok{color:#222} .sub{background:#ffe08a} .del{background:#f8b4b4;text-decoration:line-through}
.ins{background:#b4d8f8} .legend span{padding:0 4px;margin-right:6px}
"""
STYLE = (
    """
body{font-family:system-ui,sans-serif;margin:2em;color:#222} table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top} th{background:#f3f3f3}
.num{text-align:right}
"""
    + ALIGNMENT_STYLE
)


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return '<img alt="plot" src="data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode() + '">'


def _plots(report: EvalReport) -> str:
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    by_length, durations = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    groups = wer_by_length(report)
    by_length.bar(
        [g.name for g in groups],
        [100 * g.wer for g in groups],
        color="#4c78a8",
        yerr=[[100 * (g.wer - g.interval.low) for g in groups], [100 * (g.interval.high - g.wer) for g in groups]],
    )
    by_length.set(ylabel="WER %", title="WER by utterance length (95% interval)")
    durations.hist([r.duration_s for r in report.rows], bins=30, color="#72b7b2")
    durations.set(xlabel="seconds", ylabel="utterances", title="durations")
    return _png(fig)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value, *, number: bool = False) -> str:
    return f'<td class="num">{value}</td>' if number else f"<td>{html.escape(str(value))}</td>"


def write_html(report: EvalReport, path: str | Path, *, title: str = "", known: set[str] | None = None) -> Path:
    """A self-contained HTML report: totals with intervals, plots, speakers, errors and every utterance."""
    s, wi = summary(report), report.wer_interval
    errors = word_errors(report, top=15)
    words = [w for w in word_accuracy(report, known=known) if w.correct < w.count][:30]
    speakers = [
        [
            _cell(g.name or "(none)"),
            _cell(g.utterances, number=True),
            _cell(g.words.reference_length, number=True),
            _cell(f"{100 * g.wer:.2f}", number=True),
            _cell(f"{100 * g.interval.low:.1f}–{100 * g.interval.high:.1f}", number=True),
        ]
        for g in wer_by_speaker(report)
    ]
    confusions = [[_cell(r), _cell(h), _cell(n, number=True)] for (r, h), n in errors.substitutions]
    inserted = [[_cell(w), _cell(n, number=True)] for w, n in errors.insertions]
    deleted = [[_cell(w), _cell(n, number=True)] for w, n in errors.deletions]
    missed = [
        [
            _cell(w.word + (" (OOV)" if w.oov else "")),
            _cell(w.count, number=True),
            _cell(f"{100 * w.accuracy:.0f}%", number=True),
        ]
        for w in words
    ]
    utterances = [
        [
            _cell(r.utterance.id),
            _cell(f"{r.duration_s:.2f}", number=True),
            _cell(r.utterance.speaker),
            _cell(f"{100 * r.score.wer:.1f}", number=True),
            _cell(f"{100 * r.score.cer:.1f}", number=True),
            "<td>"
            + (html.escape(f"unreadable: {r.error}") if r.error else alignment_html(r.score.alignment))
            + "</td>",
        ]
        for r in sorted(report.rows, key=lambda r: -r.score.wer)
    ]
    heading = html.escape(title or f"{report.model} evaluation")
    unreadable = f" {s['unreadable']} unreadable utterance(s) count as all deletions." if s["unreadable"] else ""
    word_column = "word" + (" (OOV: not in the training text)" if known is not None else "")
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{heading}</title>
<style>{STYLE}</style></head><body>
<h1>{heading}</h1>
<p>Model <b>{html.escape(report.model)}</b>: {s["utterances"]} utterances, {s["audio_s"]:.1f} s of audio,
RTF {s["rtf"]:.3f}.
Text normalised by <code>{html.escape(report.normalizer)}</code> before scoring.</p>
<p><b>WER {100 * s["wer"]:.2f}%</b> (95% bootstrap interval {100 * wi.low:.2f}–{100 * wi.high:.2f}%;
S={s["substitutions"]} D={s["deletions"]} I={s["insertions"]} of {s["reference_words"]} words),
CER {100 * s["cer"]:.2f}%.{unreadable}</p>
{_plots(report)}
<h2>Speakers</h2>{_table(["speaker", "utterances", "words", "WER %", "95% interval"], speakers)}
<h2>Commonest errors</h2>
<div style="display:flex;gap:2em;align-items:flex-start">
{_table(["reference", "hypothesis", "times"], confusions)}{_table(["inserted", "times"], inserted)}
{_table(["deleted", "times"], deleted)}{_table([word_column, "in reference", "recognised"], missed)}
</div>
<h2>Utterances, worst first</h2>
{alignment_legend()}
{_table(["utterance", "seconds", "speaker", "WER %", "CER %", "alignment"], utterances)}
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path

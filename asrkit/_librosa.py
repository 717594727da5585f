"""Where librosa's numba kernels are cached: every asrkit module that imports librosa imports this first,
so importing ``asrkit`` itself changes nothing."""

import os
from pathlib import Path

# librosa compiles numba kernels on first use; numba's default cache sits beside librosa's source,
# which is read-only in many installs, so every process would recompile (~20 s).
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "asrkit" / "numba"))

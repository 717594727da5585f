"""``python -m asrkit.cli``: the ``asrkit`` command."""

import sys

from asrkit.cli import main

sys.exit(main())

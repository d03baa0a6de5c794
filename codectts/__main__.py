"""``python -m codectts``: the command line (same as the ``codectts`` console script)."""

import sys

from .cli import main

sys.exit(main())

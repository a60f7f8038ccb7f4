"""``python -m memunlearn`` is the same as the ``memunlearn`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m hulytrio``: the same as the ``hulytrio`` command."""

from __future__ import annotations

import sys

from hulytrio.cli import main

if __name__ == "__main__":
    sys.exit(main())

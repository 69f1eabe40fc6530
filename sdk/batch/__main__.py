"""``python -m sdk.batch``: see :mod:`sdk.batch.cli`."""

import sys

from sdk.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())

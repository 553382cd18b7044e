"""``python -m odenet.analysis``: the ``odenet-analysis`` command."""

import sys

from odenet.analysis._cli import main

if __name__ == "__main__":
    sys.exit(main())

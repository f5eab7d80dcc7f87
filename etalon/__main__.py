"""``python -m etalon``: the same as the ``etalon`` command."""

import sys

from etalon.commands import main

sys.exit(main(prog="etalon"))

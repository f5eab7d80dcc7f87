"""``python -m etalon``: the same as the ``etalon`` command."""

from etalon.commands import console

console()

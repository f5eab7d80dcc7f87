"""One rule for every CLI: a user mistake is one line on stderr and exit code 2, no traceback.

A user mistake is a ``UserError`` (a flag, a file, an unreachable server); it subclasses
``ValueError`` so code that validates input can keep catching that. Anything else that escapes
a command is a bug in etalon and shows its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable


class UserError(ValueError):
    """A mistake in the user's input (a flag, a file, an unreachable server)."""


def run_cli(prog: str, fn: Callable[[], object]) -> int:
    """Runs ``fn``; a ``UserError`` (or a missing file the user named) becomes one stderr line.

    Set ``ETALON_DEBUG=1`` to see the traceback instead.
    """
    try:
        result = fn()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError) as exc:
        if os.environ.get("ETALON_DEBUG"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0

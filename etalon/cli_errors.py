"""One rule for every CLI: a user mistake is one line on stderr and exit code 2, no traceback."""

from __future__ import annotations

import os
import sys
from typing import Callable


class UserError(Exception):
    """A mistake in the user's input (a flag, a file, an unreachable server)."""


def run_cli(prog: str, fn: Callable[[], object]) -> int:
    """Runs ``fn``; ``UserError``/``ValueError``/``FileNotFoundError`` become one stderr line.

    Set ``ETALON_DEBUG=1`` to see the traceback instead.
    """
    try:
        result = fn()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("ETALON_DEBUG"):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0

"""The one exception type the estimator raises for a user mistake.

The CLI (``etalon.cli_errors.run_cli``) turns it into a single ``etalon.estimate: error: ...``
line and exit status 2, so every message must say what was wrong and what would be valid, in one
line, without a traceback.
"""

from __future__ import annotations

from etalon.cli_errors import UserError


class EstimatorError(UserError):
    """Bad input to the estimator: an unknown model or GPU, a missing config field, an invalid
    parallel layout. A ``UserError``, hence a ``ValueError``: library callers can catch either."""

"""The one exception type the estimator raises for a user mistake.

The CLI turns it into a single ``etalon.estimate: error: ...`` line and exit status 2, so every
message must say what was wrong and what would be valid, in one line, without a traceback.
"""

from __future__ import annotations


class EstimatorError(ValueError):
    """Bad input to the estimator: an unknown model or GPU, a missing config field, an invalid
    parallel layout. Subclasses ``ValueError`` so library callers can catch either."""

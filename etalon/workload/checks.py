"""Parameter checks whose messages name the command-line flag, so a user knows what to fix."""

from __future__ import annotations

import math

from etalon.cli_errors import UserError


def require_positive(value: float, flag: str) -> float:
    """``value`` must be a finite number > 0."""
    if not _is_finite_number(value) or value <= 0:
        raise UserError(f"{flag} must be > 0, got {value}")
    return float(value)


def require_non_negative(value: float, flag: str) -> float:
    if not _is_finite_number(value) or value < 0:
        raise UserError(f"{flag} must be >= 0, got {value}")
    return float(value)


def require_int_at_least(value: int, minimum: int, flag: str) -> int:
    """``value`` must be an integer (not a bool or a fractional float) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{flag} must be an integer >= {minimum}, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise UserError(f"{flag} must be an integer >= {minimum}, got {value}")
    if value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, got {value}")
    return int(value)


def require_ordered(low: int, high: int, low_flag: str, high_flag: str) -> None:
    if low > high:
        raise UserError(f"{low_flag} ({low}) must be <= {high_flag} ({high})")


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

"""Field checks for profile files: every failure is one ``ValueError`` naming the file and field.

A profile is read by people and by the server alike, so a malformed one must say exactly what is
wrong (``profiles/x.json: prefill.predictor.coefficients: expected a list of numbers``) instead
of failing later inside numpy with a traceback.
"""

from __future__ import annotations

import math
from typing import Any

from etalon.cli_errors import UserError


class Fields:
    """Typed access to one JSON object; ``where`` is the path printed in errors (for the
    ``root`` object, the file name)."""

    def __init__(self, data: Any, where: str, *, root: bool = False):
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a JSON object, got {_kind(data)}")
        self.data = data
        self.where = where
        self._sep = ": " if root else "."  # "file.json: prefill.fit.r2"

    def at(self, key: str) -> str:
        return f"{self.where}{self._sep}{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, *, required: bool = True) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                raise UserError(f"{self.at(key)}: required field is missing")
            return None
        return self.data[key]

    def obj(self, key: str, *, required: bool = True) -> "Fields | None":
        value = self.raw(key, required=required)
        return None if value is None else Fields(value, self.at(key))

    def str(self, key: str, *, required: bool = True) -> str | None:
        value = self.raw(key, required=required)
        if value is not None and not isinstance(value, str):
            raise UserError(f"{self.at(key)}: expected a string, got {_kind(value)}")
        return value

    def bool(self, key: str, *, required: bool = True) -> bool | None:
        value = self.raw(key, required=required)
        if value is not None and not isinstance(value, bool):
            raise UserError(f"{self.at(key)}: expected true or false, got {_kind(value)}")
        return value

    def num(self, key: str, *, required: bool = True, minimum: float | None = None) -> float | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        return check_number(value, self.at(key), minimum=minimum)

    def int(self, key: str, *, required: bool = True, minimum: int | None = None) -> int | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{self.at(key)}: expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise UserError(f"{self.at(key)}: must be >= {minimum}, got {value}")
        return value

    def numbers(self, key: str, *, required: bool = True, length: int | None = None,
                minimum: float | None = None) -> list[float] | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        return check_numbers(value, self.at(key), length=length, minimum=minimum)

    def strings(self, key: str, *, required: bool = True) -> list[str] | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{self.at(key)}: expected a list of strings")
        return list(value)

    def only(self, allowed: set[str]) -> None:
        """Unknown keys are errors: a typo must not silently drop a setting."""
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise UserError(f"{self.where}: unknown field(s) {unknown}; valid: {sorted(allowed)}")


def check_number(value: Any, where: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number, got {_kind(value)}")
    if minimum is not None and value < minimum:
        raise UserError(f"{where}: must be >= {minimum}, got {value}")
    return float(value)


def check_numbers(value: Any, where: str, *, length: int | None = None,
                  minimum: float | None = None) -> list[float]:
    if not isinstance(value, list):
        raise UserError(f"{where}: expected a list of numbers, got {_kind(value)}")
    if length is not None and len(value) != length:
        raise UserError(f"{where}: expected {length} numbers, got {len(value)}")
    return [check_number(v, f"{where}[{i}]", minimum=minimum) for i, v in enumerate(value)]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__

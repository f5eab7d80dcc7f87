"""A small explicit name -> class registry shared by the interval and length generators.

Explicit registration (rather than scanning subclasses) keeps the CLI choices, the error message
for a typo and the documentation in step with the code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps provider names to classes; ``kind`` is used in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator; registering a name twice is a programming error and raises."""

        def add(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(
                    f"{self.kind} '{name}' is already registered "
                    f"(by {self._classes[name].__name__})"
                )
            self._classes[name] = cls
            return cls

        return add

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} '{name}'; valid: {', '.join(self.names())}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

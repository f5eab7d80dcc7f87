"""Compatibility only: ``etalon.run_benchmark`` still imports ``OutOfRangeError`` from here. The
profile file format lives in ``etalon.profiles``; import it from there."""

from etalon.profiles.section import OutOfRangeError, Section

__all__ = ["OutOfRangeError", "Section"]

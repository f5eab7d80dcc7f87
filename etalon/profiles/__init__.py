"""Profile files: the format a fitted profile is stored in, apart from how it was measured.

A profile (JSON, never a pickle) holds a prefill and/or a decode section: fitted predictors,
fit quality, the range they may be trusted on and the raw measurements. This package reads,
checks and writes them and holds the one prediction rule (``Section.predict``). Modules:
``schema`` (field checks), ``predictors``, ``section``, ``profile`` (files). The layout is
documented in ``docs/calibration.md``.
"""

from etalon.profiles.profile import SCHEMA_VERSION, Profile, load_profile, save_profile
from etalon.profiles.section import OutOfRangeError, Section

__all__ = ["SCHEMA_VERSION", "OutOfRangeError", "Profile", "Section", "load_profile", "save_profile"]

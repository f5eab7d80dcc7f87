"""Profile files: the format a fitted profile is stored in, apart from how it was measured.

A profile (JSON, never a pickle) holds a prefill and/or a decode section: fitted predictors,
fit quality, the range they may be trusted on, the raw measurements and the probe entries
(``results``). This package reads, checks and writes them and holds the one prediction rule
(``Section.predict``); it depends on neither ``etalon.perf`` (which prices steps from a
profile) nor ``etalon.calibration`` (which measures and fits one). Modules: ``schema`` (field
checks), ``predictors``, ``results`` (probe entries), ``section``, ``profile`` (files). It
needs numpy only. The layout is documented in ``docs/calibration.md``.
"""

from etalon.profiles.profile import SCHEMA_VERSION, Profile, load_profile, save_profile
from etalon.profiles.results import (
    AnchorResult, BatchingResult, ContextResult, JoinResult, ProbeResult, WakeUpResult,
)
from etalon.profiles.section import OutOfRangeError, Section

__all__ = ["SCHEMA_VERSION", "AnchorResult", "BatchingResult", "ContextResult", "JoinResult",
           "OutOfRangeError",
           "ProbeResult", "Profile", "Section", "WakeUpResult", "load_profile", "save_profile"]

"""Calibration: profilers measure a server, fits turn measurements into profiles, and profiles
drive the profiled performance model, TTFT deadlines and the roofline's efficiency factors.

Modules: ``prefill`` / ``decode`` (what is sent and what is measured), ``fitting`` (scikit-learn
fits and their checks), ``section`` / ``profile`` (the JSON file and its prediction rules),
``merge`` (one file from several), ``deadlines``, ``roofline_fit``, ``plots``. Importing this
package loads neither scikit-learn nor matplotlib: a server reading a profile needs numpy only.
"""

from etalon.calibration.deadlines import ttft_deadline_for
from etalon.calibration.profile import SCHEMA_VERSION, Profile, load_profile, save_profile
from etalon.calibration.section import OutOfRangeError, Section

__all__ = ["SCHEMA_VERSION", "OutOfRangeError", "Profile", "Section", "load_profile",
           "save_profile", "ttft_deadline_for"]

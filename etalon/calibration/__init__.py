"""Calibration: profilers measure a server, fits turn measurements into profiles, and profiles
drive the profiled performance model, TTFT deadlines and the roofline's efficiency factors.

Modules: ``prefill`` / ``decode`` (what is sent and what is measured), ``fitting`` (scikit-learn
fits and their checks), ``merge`` (one file from several), ``deadlines``, ``roofline_fit``,
``plots``. The profile file and its prediction rule are ``etalon.profiles``. Importing this
package loads neither scikit-learn nor matplotlib: a server reading a profile needs numpy only.
"""

from etalon.calibration.deadlines import ttft_deadline_for
from etalon.profiles.profile import SCHEMA_VERSION, Profile, load_profile, save_profile
from etalon.profiles.section import OutOfRangeError, Section

__all__ = ["SCHEMA_VERSION", "OutOfRangeError", "Profile", "Section", "load_profile",
           "save_profile", "ttft_deadline_for"]

"""Calibration: profilers measure a server, fits turn measurements into profiles, probes add
what a fit of isolated requests cannot see, and profiles give TTFT deadlines and the roofline's
efficiency factors.

Modules: ``prefill`` / ``decode`` (what is sent and what is measured), ``fitting`` (scikit-learn
fits and their checks), ``probe`` (the probes' one shape) with ``join``, ``batching``,
``wake_up``, ``context`` and ``anchor``, ``measure`` (sending), ``merge`` (one file from several),
``deadlines``, ``roofline_fit``, ``plots``, ``cli``. The profile file format is
``etalon.profiles``. Importing this package loads neither scikit-learn nor matplotlib.
"""

from etalon.calibration.deadlines import ttft_deadline_for

__all__ = ["ttft_deadline_for"]

"""Compatibility only: ``etalon.run_benchmark`` still imports these names from here. The
profile file format lives in ``etalon.profiles``; import it from there."""

from etalon.profiles.profile import Profile, load_profile, save_profile

__all__ = ["Profile", "load_profile", "save_profile"]

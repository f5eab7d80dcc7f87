"""Bootstrap replicas of a profile: resample its stored measurements, refit each section with the
profilers' own fit (``fit_prefill`` / ``fit_decode``), so the spread of the replicas' predictions
is the fit's uncertainty.

What is resampled is what was measured independently, within each point of the plan (a
stratified bootstrap: every prompt length and every decode level keeps its place, so a replica
covers the same range and the same extrapolation claim is tested):

- prefill: within each requested prompt length, its repetitions (rows), with replacement;
- decode: within each level (batch × prompt), its repetitions when it was measured more than
  once (a repetition keeps all its context bins: interference slows a whole repetition), else
  its context bins, each drawn bin becoming a point of its own.

A replica keeps the section's probe entries (batching, join, wake-up, context, anchor) as
measured: their own uncertainty is not propagated (``docs/intervals.md``). The fit settings are
the profilers' defaults; ``refit(section)`` with no resampling reproduces a profiler's section,
which ``tests/test_intervals.py`` checks on the shipped profile.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from etalon.calibration.decode import DecodePoints, fit_decode
from etalon.calibration.fitting import FitSettings
from etalon.calibration.prefill import PrefillMeasurements, fit_prefill
from etalon.cli_errors import UserError
from etalon.profiles import Profile, Section
from etalon.profiles.profile import SECTIONS

PREFILL_COLUMNS = ("prompt_tokens", "ttft_s")
DECODE_COLUMNS = ("decode_batch", "decode_context", "step_time_s", "level")


def _columns(section: Section, needed: tuple[str, ...], where: str) -> dict[str, np.ndarray]:
    m = section.measurements
    missing = [c for c in needed if c not in m]
    if missing:
        raise UserError(f"{where}: its {section.name} section stores no {', '.join(missing)} "
                        f"measurements, so its fit cannot be bootstrapped (profile it again with "
                        f"etalon's {section.name} profiler)")
    return {k: np.asarray(v, dtype=float) for k, v in m.items()}


def _keep_entries(fitted: Section, original: Section) -> Section:
    """The refitted section with the original's probe entries and profiler settings."""
    entries = {r.entry: r for r in original.results()}
    return replace(fitted, settings=original.settings, **entries)


def refit_prefill(section: Section, rows: np.ndarray | None = None, *,
                  where: str = "profile") -> Section:
    """The prefill section refitted on measurement ``rows`` (indices, repeats allowed; all rows
    when None)."""
    m = _columns(section, PREFILL_COLUMNS, where)
    rows = np.arange(len(m["ttft_s"])) if rows is None else rows
    requested = m.get("requested_prompt_tokens", m["prompt_tokens"])
    repetition = m.get("repetition", np.zeros(len(m["ttft_s"])))
    meas = PrefillMeasurements(
        prompt_tokens=m["prompt_tokens"][rows].astype(int),
        requested_prompt_tokens=requested[rows].astype(int),
        ttft_s=m["ttft_s"][rows], repetition=repetition[rows].astype(int),
        counts_from_usage=bool(section.settings.get("counts_from_usage", True)))
    return _keep_entries(fit_prefill(meas, FitSettings()), section)


def refit_decode(section: Section, rows: np.ndarray | None = None, *,
                 where: str = "profile") -> Section:
    """The decode section refitted on measurement ``rows`` (indices, repeats allowed; all rows
    when None). A row drawn more than once counts more than once."""
    m = _columns(section, DECODE_COLUMNS, where)
    n = len(m["step_time_s"])
    rows = np.arange(n) if rows is None else rows
    level = m["level"][rows]
    repetition = m.get("repetition", np.zeros(n))[rows]
    bins = m.get("bin", _positions(m["level"]))[rows]
    if _single_repetition(m):  # a bin drawn k times becomes k points (distinct bin labels)
        draw = _occurrence(np.column_stack([level, bins]))
        bins = bins + draw * (bins.max() + 1)
    # (with repetitions, a repetition drawn k times enters each of its bins' medians k times)
    points = DecodePoints(
        decode_batch=m["decode_batch"][rows].astype(int).tolist(),
        decode_context=m["decode_context"][rows].tolist(),
        step_time_s=m["step_time_s"][rows].tolist(),
        level_prompt_tokens=m.get("level_prompt_tokens", np.zeros(n))[rows].astype(int).tolist(),
        level=level.astype(int).tolist(), bin=bins.astype(int).tolist(),
        repetition=repetition.astype(int).tolist())
    return _keep_entries(fit_decode(points, FitSettings()), section)


def _positions(groups: np.ndarray) -> np.ndarray:
    """Each row's position within its group (a bin index when a file stores none)."""
    out = np.zeros(len(groups))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = np.arange(len(idx))
    return out


def _occurrence(keys: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows carry the same key (0 for the first)."""
    seen: dict[tuple, int] = {}
    out = np.zeros(len(keys))
    for i, key in enumerate(map(tuple, keys)):
        out[i] = seen.get(key, 0)
        seen[key] = out[i] + 1
    return out


def _single_repetition(m: dict[str, np.ndarray]) -> bool:
    reps = m.get("repetition")
    if reps is None:
        return True
    return all(len(np.unique(reps[m["level"] == g])) < 2 for g in np.unique(m["level"]))


def resample_rows(section: Section, rng: np.random.Generator) -> np.ndarray:
    """Measurement rows of one stratified bootstrap draw (see the module docstring)."""
    m = section.measurements
    if section.name == "prefill":
        strata = np.asarray(m.get("requested_prompt_tokens", m["prompt_tokens"]), dtype=float)
        units = np.arange(len(strata))
    else:
        strata = np.asarray(m["level"], dtype=float)
        reps = np.asarray(m.get("repetition", np.zeros(len(strata))), dtype=float)
        units = np.arange(len(strata)) if _single_repetition(
            {k: np.asarray(v, float) for k, v in m.items()}) else reps
    rows = []
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        mine = np.unique(units[idx])
        drawn = rng.choice(mine, size=len(mine), replace=True)
        for u in drawn:  # every row of a drawn unit (one row, or one repetition's bins)
            rows.append(idx[units[idx] == u])
    return np.concatenate(rows) if rows else np.zeros(0, dtype=int)


def bootstrap_section(section: Section, rng: np.random.Generator, *,
                      where: str = "profile") -> Section:
    """One bootstrap replica of ``section``."""
    if section.name == "prefill":
        _columns(section, PREFILL_COLUMNS, where)
        return refit_prefill(section, resample_rows(section, rng), where=where)
    _columns(section, DECODE_COLUMNS, where)
    return refit_decode(section, resample_rows(section, rng), where=where)


def bootstrap_profiles(profile: Profile, replicas: int, seed: int = 0) -> list[Profile]:
    """``replicas`` bootstrap replicas of every section of ``profile``; replica ``k`` draws from
    ``default_rng([seed, k])``, so the same seed gives the same replicas."""
    if replicas < 1:
        raise UserError(f"bootstrap: replicas must be >= 1, got {replicas}")
    where = profile.label
    out = []
    for k in range(replicas):
        rng = np.random.default_rng([seed, k])
        sections = {name: bootstrap_section(getattr(profile, name), rng, where=where)
                    for name in SECTIONS if getattr(profile, name) is not None}
        out.append(replace(profile, path=f"{where} (bootstrap replica {k + 1})", **sections))
    return out

"""Performance models: how long an engine step takes (parametric, roofline, operator roofline, profiled)."""

from etalon.perf.base import PerfModel, StepBatch
from etalon.perf.parametric import ParametricPerfModel

__all__ = ["PerfModel", "StepBatch", "ParametricPerfModel"]

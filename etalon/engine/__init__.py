"""The serving engine shared by the simulator (virtual clock) and the embedded server (wall clock)."""

from etalon.engine.config import EngineConfig
from etalon.engine.engine import Engine, Step, StepOutcome
from etalon.engine.schedulers import StepPlan
from etalon.engine.sequence import Sequence, SeqState

__all__ = ["Engine", "EngineConfig", "Step", "StepOutcome", "StepPlan", "Sequence", "SeqState"]

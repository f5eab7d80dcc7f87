"""The discrete-event serving simulator: engines on a virtual clock, emitting live-run records."""

from etalon.simulator.cluster import Link, Replica, make_router
from etalon.simulator.simulation import SimResult, Simulation

__all__ = ["Link", "Replica", "SimResult", "Simulation", "make_router"]

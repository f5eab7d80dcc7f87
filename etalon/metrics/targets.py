"""The deadline SLOs a run is judged by (TTFT and time between tokens), declared once."""

from __future__ import annotations

from dataclasses import dataclass

from etalon.cli_errors import UserError
from etalon.options import option


@dataclass
class DeadlineTargets:
    ttft_deadline: float | None = option(None, "TTFT deadline (s), the same for every request")
    tbt_deadline: float | None = option(None, "time-between-tokens deadline (s)")

    def validate(self) -> DeadlineTargets:
        for name in ("ttft_deadline", "tbt_deadline"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        return self

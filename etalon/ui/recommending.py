"""The Recommend page's work: ``etalon recommend`` on a config built from the form — the same
sweep, ranking, CSV/JSON and Pareto plot (``etalon.capacity_search.recommend``), written into a
folder the page then shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from etalon.capacity_search.recommend import RecommendConfig, recommend, rows, write_report
from etalon.options import check_required, from_mapping, to_mapping


@dataclass
class Recommended:
    """A finished recommendation: the ranked table (passing configurations first, cheapest
    first), the files ``etalon recommend`` writes, and whether anything met the SLO."""

    config: RecommendConfig
    table: pd.DataFrame
    files: dict[str, Path]
    pareto: list[str]
    roofline_note: str

    @property
    def any_pass(self) -> bool:
        return bool(self.pareto)

    def history_inputs(self) -> dict:
        return to_mapping(self.config)

    def history_outputs(self) -> dict:
        passing = self.table[self.table["status"] == "pass"]
        best = passing.iloc[0].to_dict() if len(passing) else None
        return {"best": best, "pareto": self.pareto, "num_configurations": len(self.table),
                "num_passing": len(passing)}


def run(settings: Mapping[str, Any]) -> Recommended:
    """Runs the recommendation; ``settings`` are ``etalon recommend``'s file keys (``model``,
    ``target_qps``, ``hardware``, ``tp_sizes``, ``slo: {...}``, ``workload: {...}``, ...)."""
    cfg = check_required(from_mapping(RecommendConfig, dict(settings), "recommend form"))
    report = recommend(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = write_report(report, out)
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "probes"} for r in rows(report)])
    return Recommended(cfg, table, files, list(report["pareto"]), report["roofline_note"])

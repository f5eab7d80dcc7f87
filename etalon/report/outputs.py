"""Where a command writes its results, and whether it logs them to Weights & Biases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from etalon.options import option


@dataclass
class OutputConfig:
    output_dir: str = option("result_outputs", "where results go", metavar="DIR")
    should_use_given_dir: bool = option(True, "write into --output-dir itself (else into a "
                                              "timestamped subfolder)", negatable=True)
    no_plots: bool = option(False, "skip the PNG plots")
    no_report: bool = option(False, "skip report.html (the self-contained HTML report; "
                                    "`etalon report DIR` writes it later)")

    def prepare(self, *, fresh: tuple[str, ...] = ()) -> Path:
        """Creates the folder (a timestamped subfolder unless told otherwise) and removes the
        ``fresh`` files a previous run left, which this run appends to."""
        out = Path(self.output_dir)
        if not self.should_use_given_dir:
            out = out / datetime.now().strftime("%Y%m%d-%H%M%S")
        out.mkdir(parents=True, exist_ok=True)
        for name in fresh:
            (out / name).unlink(missing_ok=True)
        return out


@dataclass
class WandbConfig:
    should_write_metrics: bool = option(False, "log config, summary, per-request table and "
                                               "plots to W&B", negatable=True)
    wandb_project: str | None = option(None, "W&B project")
    wandb_group: str | None = option(None, "W&B group")
    wandb_run_name: str | None = option(None, "W&B run name")

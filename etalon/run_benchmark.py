"""``python -m etalon.run_benchmark``: an open-loop benchmark of an OpenAI-compatible server.

The arrival schedule is computed up front; Ray actor clients (or threads with ``--no-ray``) send
each request at its scheduled time and stream the answer; every finished request is appended to
``requests.jsonl`` at once; metrics, plots and W&B read those records and nothing else.

With ``--prefill-profile FILE --ttft-slack S`` each request's TTFT deadline is the profile's
predicted prefill time of its *requested* prompt length plus ``S``, computed for the whole
schedule before anything is sent and stored in its record's ``ttft_deadline``.

With ``--num-repeats N`` the workload runs N times against the same server, one after another:
repeat ``k`` (1..N) writes a whole run's outputs into ``repeat_<k>/`` with workload seed
``--seed + k - 1`` (every repeat the same ``--seed`` with ``--repeat-same-seed``), and
``repeats.json`` / ``repeats.csv`` give each latency percentile's values over the repeats with
the interval they put on one more run (``etalon.metrics.intervals``, the intervals ``simulate``
and ``validate`` report).
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from etalon.cli_errors import UserError
from etalon.client.connection import ConnectionConfig, LoadConfig
from etalon.client.pool import PoolSpec, run_pool
from etalon.metrics.targets import DeadlineTargets
from etalon.commands import entry_points, exit_process
from etalon.options import add_config_file_flag, add_options, config_from_args, embed, option, to_mapping
from etalon.records import RecordWriter, RequestRecord
from etalon.repeats import RepeatConfig
from etalon.report.outputs import OutputConfig, WandbConfig
from etalon.workload.config import WorkloadConfig
from etalon.workload.schedule import build_requests

PROG = "etalon.run_benchmark"
DESCRIPTION = "An open-loop benchmark of an OpenAI-compatible server."


@dataclass
class BenchmarkConfig:
    """Every setting of a benchmark run; flags and ``--config`` files map onto these fields."""

    connection: ConnectionConfig = embed(ConnectionConfig, title="server and clients")
    load: LoadConfig = embed(LoadConfig, title="server and clients")
    deadlines: DeadlineTargets = embed(DeadlineTargets, title="deadlines (SLOs)")
    prefill_profile: str | None = option(
        None, "per-request TTFT deadlines: the profile's predicted prefill time of the "
              "requested prompt length plus --ttft-slack (excludes --ttft-deadline)",
        metavar="FILE")
    ttft_slack: float | None = option(None, "seconds added to the predicted prefill time (with "
                                            "--prefill-profile)", metavar="S")
    outputs: OutputConfig = embed(OutputConfig, title="outputs")
    wandb: WandbConfig = embed(WandbConfig, title="outputs")
    no_progress: bool = option(False, "no live progress bar")
    repeats: RepeatConfig = embed(RepeatConfig, title="repeats")
    workload: WorkloadConfig = embed(WorkloadConfig, section=True, title="workload")

    def validate(self) -> BenchmarkConfig:
        self.connection.validate()
        self.load.validate()
        self.deadlines.validate()
        if self.prefill_profile is not None and self.deadlines.ttft_deadline is not None:
            raise UserError("--prefill-profile and --ttft-deadline are mutually exclusive: the "
                            "profile sets each request's TTFT deadline")
        if self.prefill_profile is not None and self.ttft_slack is None:
            raise UserError("--prefill-profile needs --ttft-slack S (seconds added to the "
                            "predicted prefill time)")
        if self.ttft_slack is not None:
            if self.prefill_profile is None:
                raise UserError("--ttft-slack needs --prefill-profile FILE")
            if not (math.isfinite(self.ttft_slack) and self.ttft_slack >= 0):
                raise UserError(f"--ttft-slack must be a finite number >= 0, got "
                                f"{self.ttft_slack}")
        self.repeats.validate()
        self.workload.validate()
        return self


def configure(parser) -> None:
    add_config_file_flag(parser, "; workload ones under 'workload:'")
    add_options(parser, BenchmarkConfig)


def execute(ns) -> int:
    return run(config_from_args(BenchmarkConfig, ns, what="benchmark config"))


def _ttft_deadlines(cfg: BenchmarkConfig, requests) -> dict[int, float] | None:
    """``{request_id: TTFT deadline (s)}`` from ``--prefill-profile``, for the whole schedule.

    The requested prompt length is used (known before sending, so the deadline is fixed up
    front). A prompt beyond what the profile claims fails the run before it starts.
    """
    if cfg.prefill_profile is None:
        return None
    from etalon.calibration.deadlines import max_prompt_tokens, ttft_deadline_for
    from etalon.profiles import load_profile
    from etalon.profiles import OutOfRangeError

    where = f"--prefill-profile {cfg.prefill_profile}"
    try:
        profile = load_profile(cfg.prefill_profile)
        profile.section("prefill")
    except ValueError as exc:
        raise UserError(f"--prefill-profile: {exc}") from None
    lengths = [r.prompt_tokens for r in requests]
    try:
        deadlines = ttft_deadline_for(profile, lengths, cfg.ttft_slack)
    except OutOfRangeError:
        limit = max_prompt_tokens(profile)
        over = sum(n > limit for n in lengths)
        raise UserError(f"{where}: covers prompts up to {limit} tokens, but {over} of "
                        f"{len(lengths)} scheduled requests are longer (longest {max(lengths)}); "
                        f"shorten the prompts or profile longer ones") from None
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None
    bad = [n for n, d in zip(lengths, deadlines) if not d > 0]
    if bad:
        raise UserError(f"{where}: the predicted TTFT deadline of a {bad[0]}-token prompt is "
                        f"not > 0 s; pass a larger --ttft-slack")
    return {r.request_id: float(d) for r, d in zip(requests, deadlines)}


#: files a run appends to (the server's metrics are written only if scraped)
APPENDED = ("requests.jsonl", "server_metrics.parquet")


def run(cfg: BenchmarkConfig) -> int:
    cfg.validate()
    if cfg.repeats.num_repeats > 1:
        from etalon.repeats import run_repeats

        return run_repeats(cfg, run_once, _ttft_deadlines, APPENDED)
    requests = build_requests(cfg.workload)
    ttft_deadlines = _ttft_deadlines(cfg, requests)
    out = cfg.outputs.prepare(fresh=APPENDED)
    with ExitStack() as stack:
        client, _ = cfg.connection.open(stack, PROG)
        run_once(cfg, client, out, requests, ttft_deadlines)
    return 0


def run_once(cfg: BenchmarkConfig, client, out: Path, requests,
             ttft_deadlines: dict[int, float] | None) -> "Dispatched":
    """One run of ``requests`` against ``client``'s server, its outputs written to ``out``."""
    spec = PoolSpec(cfg.connection.llm_api, client, cfg.load.num_ray_clients,
                    cfg.load.num_concurrent_requests_per_client, cfg.connection.tokenizer,
                    cfg.workload.seed, use_ray=not cfg.load.no_ray,
                    ray_address=cfg.load.ray_address, closed_loop=cfg.workload.closed_loop(),
                    sessions=cfg.workload.sessions())
    settings = to_mapping(cfg)
    run_config = {"benchmark": {k: v for k, v in settings.items() if k != "workload"},
                  "workload": settings["workload"], "client": client.redacted(),
                  "num_requests_scheduled": len(requests)}
    scraper = _scraper(cfg.connection, client.base_url)
    try:
        outcome = _dispatch(spec, requests, out, cfg, ttft_deadlines)
    finally:
        scrape = scraper.stop() if scraper is not None else None
    outcome.server_metrics = scrape
    _finish(outcome, run_config, out, cfg, requests)
    return outcome


def _scraper(conn: ConnectionConfig, base_url: str):
    """Starts scraping the server's /metrics for the run (None when turned off)."""
    if not conn.server_metrics_interval:
        return None
    from etalon.client.server_metrics import ServerMetricsScraper, metrics_url

    url = conn.server_metrics_url or metrics_url(base_url)
    return ServerMetricsScraper(url, conn.server_metrics_interval).start()


@dataclass
class Dispatched:
    """What the load generators handed back: the records and how the run went."""

    records: list[RequestRecord]
    not_dispatched: int
    clock_sync: list
    start_wall: float = 0.0
    server_metrics: object = None  # the scrape of the server's /metrics (client.server_metrics)
    collected: float = 0.0  # perf_counter() when the last record was in
    interrupted: bool = False  # Ctrl-C stopped it


def _dispatch(spec: PoolSpec, requests, out: Path, cfg: BenchmarkConfig,
              ttft_deadlines: dict[int, float] | None = None) -> Dispatched:
    from etalon.report.progress import Progress

    records: list[RequestRecord] = []
    progress = Progress(len(requests), enabled=not cfg.no_progress)
    with RecordWriter(out / "requests.jsonl") as writer:
        def on_record(data: dict) -> None:
            record = RequestRecord.from_dict(data)
            if ttft_deadlines is not None:
                record.ttft_deadline = ttft_deadlines.get(record.request_id)
            records.append(record)
            writer.write(record)

        def on_progress(totals: dict, elapsed: float) -> None:
            progress.update(totals["completed"] - totals["errors"], totals["in_flight"],
                            totals["errors"], elapsed)

        try:
            result = run_pool(spec, requests, on_record, time_limit=cfg.connection.timeout,
                              on_progress=on_progress)
        finally:
            progress.close()
    if result.interrupted:
        print(f"{PROG}: interrupted; writing what finished", file=sys.stderr)
    if result.timed_out or result.not_dispatched:
        print(f"{PROG}: time limit of {cfg.connection.timeout:g} s reached; "
              f"{result.not_dispatched} request(s) never sent", file=sys.stderr)
    return Dispatched(records, result.not_dispatched, result.clock_sync, result.start_wall,
                      collected=time.perf_counter(), interrupted=result.interrupted)


def _finish(outcome: Dispatched, run_config: dict, out: Path, cfg: BenchmarkConfig,
            requests) -> None:
    from etalon.metrics.columns import RunColumns
    from etalon.metrics.summary import summarize
    from etalon.report.console import print_summary
    from etalon.report.files import write_run_outputs

    records = sorted(outcome.records, key=lambda r: r.request_id)
    # The load check compares sends with the realised schedule (not the nominal rate, which a
    # short Poisson schedule misses by sampling noise alone); the nominal rate is reported.
    columns = RunColumns.of(records)  # built once: for the summary and the result files
    written = columns.table.write_in_background(out)  # on a second core, during the summary
    loop = cfg.workload.closed_loop()
    summary = summarize(records, columns=columns, ttft_deadline=cfg.deadlines.ttft_deadline,
                        tbt_deadline=cfg.deadlines.tbt_deadline,
                        closed_loop=(loop.users, loop.think_time_s) if loop else None)
    if cfg.prefill_profile is not None:
        summary["parameters"].update(ttft_slack_s=cfg.ttft_slack,
                                     prefill_profile=str(cfg.prefill_profile))
    summary["run"] = {"nominal_qps": cfg.workload.nominal_qps(), "num_scheduled": len(requests),
                      "not_dispatched": outcome.not_dispatched,
                      "clock_sync": outcome.clock_sync, "finished_at": time.time()}
    scrape = outcome.server_metrics
    if scrape is not None:
        summary["server_metrics"] = _server_metrics(scrape, outcome.start_wall, out)
    paths = write_run_outputs(out, columns, summary, run_config, plots=not cfg.outputs.no_plots,
                              written=written)
    if not cfg.outputs.no_report:
        from etalon.report.html import write_run_report

        write_run_report(out, PROG, columns=columns)
    print_summary(summary)
    print(f"{PROG}: results in {out} (written {time.perf_counter() - outcome.collected:.2f} s "
          f"after the last record)", file=sys.stderr)
    w = cfg.wandb
    if w.should_write_metrics:
        if not w.wandb_project:
            print(f"{PROG}: --should-write-metrics needs --wandb-project; W&B skipped",
                  file=sys.stderr)
        else:
            from etalon.report.wandb_logger import log_to_wandb

            plots = {k: v for k, v in paths.items() if k.startswith("plot/")}
            log_to_wandb(w.wandb_project, w.wandb_group, w.wandb_run_name, run_config,
                         summary, records, plots)


def _server_metrics(scrape, start_wall: float, out: Path) -> dict:
    """Writes what was scraped (``server_metrics.parquet``) and returns the summary's section."""
    from etalon.metrics import server_series

    info = {"url": scrape.url, "interval_s": scrape.interval_s, "scrapes": scrape.scrapes,
            "error": scrape.error}
    if not scrape.rows:
        return {**info, "available": False}
    df = server_series.table(scrape.rows, start_wall)
    server_series.write(df, out)
    return {**info, "available": True, **server_series.summarize_series(df)}


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())

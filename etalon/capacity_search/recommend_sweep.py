"""The sweep behind ``etalon recommend``: which deployments to try, and the fewest replicas of each
that meet the SLO at the target rate.

Three stages, each cheaper than the next one it saves:

1. *Enumerate and prune* (estimator only): every priced accelerator x TP (within a node) x PP,
   pruned when the TP is invalid for the model, the layout exceeds ``max_gpus_per_replica``,
   the weights or the longest request do not fit (``plan_memory``), or (unless ``all_layouts``)
   the same GPU count already fits with a larger TP.
2. *Bound* (perf model only): an unloaded lower bound on the SLO's latencies — an isolated
   prefill of the percentile prompt, a batch-1 decode step — already above the limit fails the
   layout without simulating it.
3. *Simulate*: from a replica count estimated from the layout's saturated throughput, step down
   while it passes and up while it fails (then bisect), judging each simulation with
   ``SLO.check`` on the requests after the warm-up. The answer is the fewest replicas that pass.

Costs are ``price_per_hour_usd x GPUs per replica x replicas`` (disaggregated: prefill +
decode replicas). Everything a worker needs travels in a picklable ``Sweep``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from etalon.capacity_search.slo import SLO
from etalon.cli_errors import UserError
from etalon.simulator.config import DisaggregationConfig, SimConfig
from etalon.workload.request import Request

PASS, FAIL, PRUNED = "pass", "fail", "pruned"
# the leading words of the reasons a layout is pruned for (the console groups them)
NO_FIT, TOO_BIG, SAME_GPUS, INVALID = "does not fit", "too many GPUs", "same GPU count", "invalid"
PROFILED, ROOFLINE = "profiled", "roofline"
TARGET_UTILIZATION = 0.8  # the search starts where the estimated capacity is rate / this


@dataclass(frozen=True)
class Layout:
    """One deployment shape: an accelerator, TP x PP per replica, and for disaggregated serving
    the prefill:decode replica ratio (``split``); ``profile`` times it when set."""

    hardware: str
    tp: int
    pp: int
    price_per_gpu_hour: float
    split: tuple[int, int] | None = None
    profile: str | None = None

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def trust(self) -> str:
        return PROFILED if self.profile else ROOFLINE

    @property
    def label(self) -> str:
        text = f"{self.hardware} TP{self.tp} x PP{self.pp}"
        return text + (f" P{self.split[0]}:D{self.split[1]}" if self.split else "")

    def replicas_text(self, n: int) -> str:
        return f"{n * self.split[0]}P+{n * self.split[1]}D" if self.split else str(n)

    def gpus(self, n: int) -> int:
        """GPUs of the deployment at scale ``n`` (replicas, or multiples of the split)."""
        return self.gpus_per_replica * (n * sum(self.split) if self.split else n)

    def cost_per_hour(self, n: int) -> float:
        return self.price_per_gpu_hour * self.gpus(n)


@dataclass
class Probe:
    """One simulation: scale ``n``, the verdict, the reasons, the observed latencies (s)."""

    n: int
    passed: bool
    reasons: list[str]
    ttft_s: float | None
    tbt_s: float | None
    fluidity: float | None = None
    slo_margin: float | None = None  # SLO.check's log margin (<= 0: met)


@dataclass
class Outcome:
    """What the sweep found for one layout: ``status`` pass / fail / pruned, the fewest passing
    scale ``n`` and its latencies, or a one-line ``reason``."""

    layout: Layout
    status: str
    reason: str = ""
    n: int | None = None
    ttft_s: float | None = None
    tbt_s: float | None = None
    margin: float | None = None
    probes: list[Probe] = field(default_factory=list)

    @property
    def cost_per_hour(self) -> float | None:
        return None if self.n is None else self.layout.cost_per_hour(self.n)


@dataclass
class Sweep:
    """Everything a worker needs: the base simulator config (model, engine, workload at the
    target rate, warm-up), the schedule it produces, the SLO and the replica cap."""

    base: SimConfig
    requests: list[Request]
    slo: SLO
    target_qps: float
    max_replicas: int
    runs_dir: str | None = None  # write every simulation's outputs here (else judged in memory)

    @property
    def measured(self) -> list[Request]:
        return [r for r in self.requests if r.arrival_time >= self.base.warm_up]


# --- 1. enumerate and prune -------------------------------------------------------------------

def priced_hardware(names: list[str] | None) -> list:
    """The accelerators to sweep: ``names`` (catalog keys or aliases), or every catalog entry
    with a price that is not a generic CPU."""
    from etalon.estimator.hardware import hardware_catalog, load_hardware

    if not names:
        return [h for h in hardware_catalog().values()
                if h.price_per_hour_usd and h.kind != "cpu"]
    specs = []
    for name in names:
        spec = load_hardware(name)
        if not spec.price_per_hour_usd:
            raise UserError(f"hardware '{spec.key}' has no price_per_hour_usd, so it cannot be "
                            "ranked by cost; give it one in a YAML file or leave it out")
        if spec.key not in [s.key for s in specs]:
            specs.append(spec)
    return specs


def _model_key(name: str | None) -> str:
    text = str(name or "").lower().rsplit("/", 1)[-1]
    text = re.sub(r"[-_](instruct|chat|it|hf)$", "", text)
    return re.sub(r"[^a-z0-9.]", "", text)


def find_profile(model_names: list[str], hardware, directory: str | Path | None) -> str | None:
    """A profile in ``directory`` (``*.json``, ``etalon-profile`` files) measured for the model
    (any of ``model_names``: the catalog name, what the user typed) on this accelerator, or None.
    Names match with case, an organisation prefix and an ``-instruct``/``-chat`` suffix aside;
    the profile's hardware must resolve to the same catalog entry."""
    from etalon.estimator.hardware import load_hardware

    if not directory or not Path(directory).is_dir():
        return None
    wanted = {_model_key(name) for name in model_names}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            source = data.get("source") or {}
            if (data.get("kind") != "etalon-profile"
                    or _model_key(source.get("model")) not in wanted):
                continue
            if load_hardware(str(source.get("hardware"))).key == hardware.key:
                return str(path)
        except (OSError, ValueError, AttributeError):
            continue  # not a readable profile, or hardware unknown: not this pair's
    return None


def _memory_problem(model, hardware, tp: int, pp: int, base: SimConfig, longest: int) -> str | None:
    from etalon.estimator.layout import ParallelConfig
    from etalon.estimator.memory import ServingConfig, plan_memory

    d = base.deployment
    plan = plan_memory(model, hardware, ParallelConfig(tp=tp, pp=pp), d.dtype, d.kv_dtype_or_none,
                       ServingConfig.from_engine(base.engine, d.gpu_memory_utilization),
                       context_len=longest)
    if not plan.fits_weights:
        return (f"{NO_FIT}: weights {plan.weights_gib:.1f} GiB + activations "
                f"{plan.activation_gib:.1f} GiB per device exceed the {plan.budget_gib:.1f} GiB "
                f"budget ({d.gpu_memory_utilization:g} of {plan.device_memory_gib:.1f} GiB)")
    if plan.token_capacity // pp < longest:
        return (f"{NO_FIT}: the KV pool ({plan.kv_pool_gib:.2f} GiB per device) holds "
                f"{plan.token_capacity // pp} tokens per engine, the longest request needs "
                f"{longest}")
    return None


def enumerate_layouts(model, hardware: list, base: SimConfig, *, tp_sizes, pp_sizes,
                      max_gpus_per_replica: int, longest: int, all_layouts: bool = False,
                      splits: list[tuple[int, int]] | None = None,
                      profiles_dir: str | None = None) -> tuple[list[Layout], list[Outcome]]:
    """``(layouts to simulate, pruned outcomes with their reasons)``."""
    from etalon.estimator.layout import tp_problem

    keep: list[Layout] = []
    pruned: list[Outcome] = []
    for hw in hardware:
        profile = find_profile([model.name, base.deployment.model or ""], hw, profiles_dir)
        fitting: dict[int, Layout] = {}  # GPUs per replica -> the largest-TP layout that fits
        for tp in sorted(set(tp_sizes), reverse=True):  # the largest TP of a GPU count first
            if tp > hw.devices_per_node:
                continue  # tensor parallelism stays within a node
            for pp in sorted(set(pp_sizes)):
                layout = Layout(hw.key, tp, pp, float(hw.price_per_hour_usd),
                                profile=profile if (tp, pp) == (1, 1) else None)
                problem = tp_problem(model, tp)
                if problem is not None:
                    problem = f"{INVALID} TP: {problem}"
                elif pp > model.num_layers:
                    problem = f"{INVALID} PP: {model.name} has {model.num_layers} layers"
                elif tp * pp > max_gpus_per_replica:
                    problem = (f"{TOO_BIG}: {tp * pp} per replica > --max-gpus-per-replica "
                               f"{max_gpus_per_replica}")
                else:
                    problem = _memory_problem(model, hw, tp, pp, base, longest)
                if problem is not None:
                    pruned.append(Outcome(layout, PRUNED, problem))
                    continue
                g = tp * pp
                if not all_layouts and g in fitting:
                    other = fitting[g]
                    pruned.append(Outcome(layout, PRUNED, f"{SAME_GPUS} as TP{other.tp} x "
                                                          f"PP{other.pp}, which fits with a "
                                                          "larger TP (--all-layouts tries it)"))
                    continue
                fitting[g] = layout
                keep.append(layout)
    order = {h.key: i for i, h in enumerate(hardware)}

    def key(o: Layout) -> tuple:
        return order[o.hardware], o.gpus_per_replica, o.pp

    keep.sort(key=key)
    pruned.sort(key=lambda o: key(o.layout))
    if splits:
        keep += [replace(layout, split=s, profile=None) for layout in keep for s in splits]
    return keep, pruned


# --- 2. bound and estimate ------------------------------------------------------------------

def sim_config(sweep: Sweep, layout: Layout, n: int) -> SimConfig:
    """The simulator config of ``layout`` at scale ``n``."""
    base = sweep.base
    cfg = replace(base, deployment=replace(base.deployment, hardware=layout.hardware,
                                           tp=layout.tp, pp=layout.pp),
                  perf=replace(base.perf, profile=layout.profile, perf_model_file=None))
    if layout.split:
        p, d = layout.split
        return replace(cfg, num_replicas=1, disaggregation=DisaggregationConfig(
            disaggregated=True, prefill_replicas=n * p, decode_replicas=n * d))
    return replace(cfg, num_replicas=n, disaggregation=DisaggregationConfig())


def _percentile_low(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, float), q, method="lower"))


def lower_bound_problem(sweep: Sweep, layout: Layout, plans) -> str | None:
    """Why ``layout`` cannot meet the SLO even unloaded, or None. Every measured TTFT is at
    least its prompt's isolated prefill (one step, before any queueing), and every TBT sample
    at least one batch-1 decode step; both grow with the prompt, so the SLO's percentile of
    those bounds bounds the SLO's percentile."""
    from etalon.perf.base import StepBatch

    slo, measured = sweep.slo, sweep.measured
    if not measured:
        return None
    prompts = [r.prompt_tokens for r in measured]
    first, last = plans[0].perf, plans[-1].perf  # prefill pool times the TTFT, decode the TBT
    if slo.ttft_max_s is not None:
        n = int(_percentile_low(prompts, slo.ttft_percentile))
        bound = first.prefill_time(n) + first.request_path_s
        if bound > slo.ttft_max_s:
            return (f"even unloaded, a {n}-token prompt's prefill takes {bound * 1e3:.1f} ms > "
                    f"p{slo.ttft_percentile:g} TTFT max {slo.ttft_max_s * 1e3:.1f} ms")
    if slo.tbt_max_s is not None:
        bound = last.step_time(StepBatch.decode(1, min(prompts) + 1))
        if bound > slo.tbt_max_s:
            return (f"even unloaded, one decode step takes {bound * 1e3:.1f} ms > "
                    f"p{slo.tbt_percentile:g} TBT max {slo.tbt_max_s * 1e3:.1f} ms")
    return None


def _engine_rate(perf, blocks: int, block_size: int, max_batch: int, prompt: float, output: float,
                 prefill: bool, decode: bool) -> float:
    """Requests/s one engine sustains at saturation, roughly: each request costs its prefill
    step and its share of ``output`` decode steps at the largest batch its KV cache holds."""
    from etalon.perf.base import StepBatch

    batch = max(1, min(max_batch, int(blocks * block_size // max(prompt + output, 1))))
    seconds = perf.prefill_time(max(int(prompt), 1)) if prefill else 0.0
    if decode and output > 1:
        step = perf.step_time(StepBatch.decode(batch, int(batch * (prompt + output / 2))))
        seconds += (output - 1) * step / batch
    return 1.0 / max(seconds, 1e-9)


def first_scale(sweep: Sweep, layout: Layout, plans) -> int:
    """The replica count (or split multiple) whose estimated capacity is the target rate over
    ``TARGET_UTILIZATION``: where the search starts, not a bound."""
    quiet = logging.getLogger("etalon.perf.profiled")  # an estimate may leave a profile's range
    was, quiet.disabled = quiet.disabled, True
    try:
        return _first_scale(sweep, layout, plans)
    finally:
        quiet.disabled = was


def _first_scale(sweep: Sweep, layout: Layout, plans) -> int:
    prompt = float(np.mean([r.prompt_tokens for r in sweep.requests]))
    output = float(np.mean([r.output_tokens for r in sweep.requests]))
    e, pp = sweep.base.engine, layout.pp
    wanted = sweep.target_qps / TARGET_UTILIZATION
    if not layout.split:
        plan = plans[0]
        rate = pp * _engine_rate(plan.perf, plan.num_kv_blocks // pp, e.block_size,
                                 e.max_batch_size, prompt, output, True, True)
        return max(1, math.ceil(wanted / rate))
    p, d = layout.split
    need = 1
    for plan, count, pre in ((plans[0], p, True), (plans[1], d, False)):
        rate = pp * count * _engine_rate(plan.perf, plan.num_kv_blocks // pp, e.block_size,
                                         e.max_batch_size, prompt, output, pre, not pre)
        need = max(need, math.ceil(wanted / rate))
    return need


# --- 3. simulate ------------------------------------------------------------------------------

def _observe(sweep: Sweep, records, fell_behind: bool, n: int) -> Probe:
    from etalon.metrics.latency import latency_series

    slo = sweep.slo
    passed, observed = slo.check(records, fell_behind)
    series = latency_series(records)
    values = {}
    for metric, q in (("ttft", slo.ttft_percentile), ("tbt", slo.tbt_percentile)):
        samples = series[metric].values
        values[metric] = float(np.percentile(samples, q)) if len(samples) else None
    fluidity = next((v for k, v in observed.items() if k.startswith("fluidity_p")), None)
    return Probe(n, passed, list(observed.get("reasons", [])), values["ttft"], values["tbt"],
                 fluidity, observed.get("margin"))


def simulate_once(sweep: Sweep, layout: Layout, n: int) -> Probe:
    """Simulates ``layout`` at scale ``n`` on the sweep's schedule and judges the SLO on the
    requests scheduled after the warm-up. With ``runs_dir`` it goes through ``etalon.simulate``
    (every output file written, the SLO judged on the table read back, as capacity search
    does); without, the same simulation is judged on its records in memory."""
    cfg = sim_config(sweep, layout, n)
    if sweep.runs_dir:
        from etalon.record_table import read_table
        from etalon.simulate import simulate

        safe = re.sub(r"[^A-Za-z0-9.]+", "_", layout.label).strip("_")
        out = Path(sweep.runs_dir) / safe / f"scale_{n}"
        cfg = replace(cfg, outputs=replace(cfg.outputs, output_dir=str(out), no_plots=True,
                                           should_use_given_dir=True))
        summary = simulate(cfg, quiet=True)
        table = read_table(out)
        measured = table.select(table.numbers("scheduled_at") >= cfg.warm_up)
        return _observe(sweep, measured, summary["load"]["fell_behind"], n)
    from etalon.metrics.throughput import check_load
    from etalon.simulator.deployment import build_simulation

    table = build_simulation(cfg).run(sweep.requests).table
    measured = table.select(table.numbers("scheduled_at") >= cfg.warm_up)
    return _observe(sweep, measured, check_load(measured).fell_behind, n)


def margin(probe: Probe) -> float | None:
    """Headroom of the tightest target as a fraction of it (0.2: 20 % below the limit): the
    SLO's own log margin m (worst value = limit * e^m) read as 1 - e^m."""
    return None if probe.slo_margin is None else 1.0 - math.exp(probe.slo_margin)


def search_layout(sweep: Sweep, layout: Layout) -> Outcome:
    """The fewest replicas (or split multiples) of ``layout`` that meet the SLO, searched from
    the estimate down while it passes and up while it fails; assumes more never hurts."""
    from etalon.simulator.deployment import pool_plans

    try:
        plans = pool_plans(sim_config(sweep, layout, 1))
    except UserError as exc:
        return Outcome(layout, PRUNED, f"{NO_FIT}: {exc}")
    problem = lower_bound_problem(sweep, layout, plans)
    if problem:
        return Outcome(layout, FAIL, problem)
    cap = sweep.max_replicas
    done: dict[int, Probe] = {}

    def probe(n: int) -> Probe:
        if n not in done:
            done[n] = simulate_once(sweep, layout, n)
        return done[n]

    n = min(first_scale(sweep, layout, plans), cap)
    lo, hi = 0, None  # lo: the largest scale known to fail; hi: the smallest known to pass
    while hi is None:
        if probe(n).passed:
            hi = n
        else:
            lo = n
            if n >= cap:
                break
            n = min(cap, max(n + 1, math.ceil(n * 1.5)))
    if hi is not None and lo == 0 and hi > 1:  # passed at the first try: look below it
        n = hi - 1
        while n >= 1 and probe(n).passed:
            hi, n = n, max(0, n - max(1, n // 2))
        lo = max(lo, n)
    while hi is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid).passed:
            hi = mid
        else:
            lo = mid
    probes = [done[k] for k in sorted(done)]
    if hi is None:
        what = "replicas" if not layout.split else "times the split"
        reasons = "; ".join(done[cap].reasons) or "fails"
        return Outcome(layout, FAIL, f"fails even at {cap} {what} (--max-replicas): {reasons}",
                       probes=probes)
    best = done[hi]
    return Outcome(layout, PASS, n=hi, ttft_s=best.ttft_s, tbt_s=best.tbt_s,
                   margin=margin(best), probes=probes)


def run_sweep(sweep: Sweep, layouts: list[Layout], jobs: int = 1) -> list[Outcome]:
    """``search_layout`` over ``layouts``, in ``jobs`` processes when more than one."""
    if jobs <= 1 or len(layouts) <= 1:
        return [search_layout(sweep, layout) for layout in layouts]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers start in milliseconds with everything imported (where it exists)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(search_layout, sweep, layout) for layout in layouts]
        return [f.result() for f in futures]


# --- ranking ----------------------------------------------------------------------------------

def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both minimised): ``j``
    dominates ``i`` when it is no worse on either and better on one. Sorted by the first."""
    front = [i for i, (c, l) in enumerate(points)
             if not any(c2 <= c and l2 <= l and (c2 < c or l2 < l) for c2, l2 in points)]
    return sorted(front, key=lambda i: (points[i][0], points[i][1], i))


def rank(outcomes: list[Outcome]) -> list[Outcome]:
    """Passing outcomes, cheapest first (ties: lower TTFT, then fewer GPUs, then the label)."""
    passing = [o for o in outcomes if o.status == PASS]
    return sorted(passing, key=lambda o: (round(o.cost_per_hour, 6), o.ttft_s or 0.0,
                                          o.layout.gpus(o.n), o.layout.label))

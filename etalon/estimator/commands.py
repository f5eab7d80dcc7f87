"""The ``memory``, ``latency``, ``plan`` and ``catalog`` subcommands of ``python -m etalon.estimate``.

Each command turns its typed config (``etalon.estimator.command_configs``) into library calls
and returns a ``Report``: a JSON-able dict for ``--json`` and the readable text otherwise, plus
the plots it wrote. The flags come from the configs (``etalon.estimate``); the numbers live in
the library modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from etalon.estimator import plots
from etalon.estimator.command_configs import (
    CatalogConfig,
    LatencyConfig,
    MemoryConfig,
    PlanConfig,
    ReportOptions,
)
from etalon.estimator.dtypes import DTYPES
from etalon.estimator.flops import decode_flops, linear_flops_per_token, prefill_flops
from etalon.estimator.hardware import GiB, HardwareSpec, hardware_catalog, load_hardware
from etalon.estimator.latency import chunked_prefill, estimate_latency
from etalon.estimator.layout import valid_tp_sizes, validate_layout
from etalon.estimator.memory import MemoryPlan, max_concurrency_curve, plan_memory
from etalon.estimator.models import catalog_names, load_model
from etalon.estimator.parallelism import min_gpus, recommend_layout
from etalon.estimator.render import block, fmt, table
from etalon.estimator.shards import stage_shards
from etalon.estimator.spec import ModelSpec


@dataclass
class Report:
    """What a command produced: ``data`` for --json, ``text`` for people, ``files`` written."""

    data: dict
    text: str
    files: list[str] = field(default_factory=list)


# --- shared pieces -----------------------------------------------------------------------------------

def model_line(model: ModelSpec) -> str:
    p = model.params
    active = f" ({p.active / 1e9:.2f}B active)" if model.is_moe else ""
    moe = f", MoE {model.moe.num_experts} experts top-{model.moe.experts_per_token}" if model.moe else ""
    return (f"Model     {model.name} [{model.source}]: {p.total / 1e9:.2f}B params{active}, {model.attention_layout}"
            f"{moe}, {model.num_layers} layers, max context {model.max_context:,}")


def hardware_line(hw: HardwareSpec) -> str:
    fp8 = f", {fmt(hw.tflops_fp8)} fp8" if hw.tflops_fp8 else ""
    return (f"Hardware  {hw.key}: {hw.name}, {hw.memory_bytes / GiB:.2f} GiB visible, "
            f"{fmt(hw.memory_bandwidth_gb_s)} GB/s, {fmt(hw.tflops_bf16)} TFLOP/s bf16{fp8}")


def context_grid(max_context: int) -> list[int]:
    """Powers of two from 512 up to the model's maximum context."""
    grid, n = [], 512
    while n < max_context:
        grid.append(n)
        n *= 2
    return grid + [max_context]


def output_dir(report: ReportOptions) -> Path | None:
    return Path(report.output_dir) if report.output_dir else None


def _memory_bars(rows: list[tuple[str, float, float, float, float]], limit_gib: float, title: str, path: Path) -> Path:
    """Stacked per-device memory bars; each row is (label, weights, activation, overhead, KV pool) in GiB."""
    return plots.stacked_bars(
        [r[0] for r in rows],
        {
            "weights": [r[1] for r in rows],
            "peak activation": [r[2] for r in rows],
            "non-torch + CUDA graphs": [r[3] for r in rows],
            "KV pool": [max(r[4], 0.0) for r in rows],
        },
        title, "GiB per device", path, limit=limit_gib, limit_label="device memory",
    )


def _plan_bar(label: str, plan: MemoryPlan) -> tuple[str, float, float, float, float]:
    return label, plan.weights_gib, plan.activation_gib, plan.overhead_gib, plan.kv_pool_gib


def _plan_text(plan: MemoryPlan) -> str:
    fits = "fits" if plan.fits_batch else ("does NOT fit" if plan.fits_weights else "weights do NOT fit")
    items = [
        ("device memory (visible)", f"{plan.device_memory_gib:.2f} GiB"),
        (f"budget (x {plan.gpu_memory_utilization:.2f})", f"{plan.budget_gib:.2f} GiB"),
        ("weights", f"{plan.weights_gib:.2f} GiB"),
        ("peak activation", f"{plan.activation_gib:.2f} GiB"),
        ("non-torch memory", f"{plan.non_torch_gib:.2f} GiB"),
        ("CUDA graphs", f"{plan.cuda_graph_gib:.2f} GiB"),
        ("KV pool", f"{plan.kv_pool_gib:.2f} GiB"),
        ("KV bytes/token (model)", f"{plan.kv_bytes_per_token:,.0f}"),
        ("KV bytes/token (device)", f"{plan.kv_bytes_per_token_per_device:,.0f}"),
        (f"KV blocks ({plan.block_size} tokens)", f"{plan.num_blocks:,}"),
        ("KV token capacity", f"{plan.token_capacity:,}"),
        (f"KV per request @ {plan.context_len:,}", f"{plan.kv_per_request_gib:.3f} GiB"),
        ("max concurrency", f"{plan.max_concurrency:.2f} per replica, {plan.max_concurrency_all_replicas:.2f} over DP{plan.layout.dp}"),
        (f"batch of {plan.batch_size} needs", f"{plan.required_gib:.2f} GiB per device: {fits}"),
    ]
    return block(f"Per-device memory: {plan.layout.label()}, {plan.layout.gpus} device(s), "
                 f"{plan.vllm_accounting} memory accounting", items)


# --- memory ------------------------------------------------------------------------------------------

def run_memory(cfg: MemoryConfig) -> Report:
    d = cfg.deployment
    model, hw = load_model(d.model), load_hardware(d.hardware)
    layout, config = cfg.layout(), cfg.serving()
    plan = plan_memory(model, hw, layout, d.dtype, d.kv_dtype, config, cfg.context_len, cfg.batch_size)
    by_dtype = []
    for name in DTYPES:
        shards = stage_shards(model, layout.tp, layout.pp, layout.ep, name, plan.kv_dtype)
        total = sum(s.weight_bytes for s in stage_shards(model, dtype=name, kv_dtype=plan.kv_dtype))
        by_dtype.append((name, total / GiB, max(s.weight_bytes for s in shards) / GiB))
    grid = context_grid(model.max_context)
    curve = max_concurrency_curve(model, hw, grid, layout, d.dtype, d.kv_dtype, config)
    data = {
        "command": "memory",
        "model": model.summary(),
        "hardware": hw.summary(),
        "plan": plan.to_dict(),
        "weights_by_dtype_gib": [{"dtype": d, "total": t, "per_device": p} for d, t, p in by_dtype],
        "max_concurrency_by_context": [{"context_len": c, "max_concurrency": v} for c, v in zip(grid, curve)],
    }
    text = "\n\n".join([
        f"{model_line(model)}\n{hardware_line(hw)}\nWeights {plan.dtype}, KV cache {plan.kv_dtype}",
        _plan_text(plan),
        "Weights by dtype (GiB)\n" + table(["dtype", "total", "per device"], by_dtype),
        "Max concurrency by context length\n" + table(["context", "requests/replica"], [[c, int(v)] for c, v in zip(grid, curve)]),
    ])
    report = Report(data, text)
    out = output_dir(cfg.report)
    if out:
        rows = [(f"PP stage {i}" if layout.pp > 1 else layout.label(), st.weights / GiB, st.activation / GiB,
                 st.overhead / GiB, st.kv_pool / GiB) for i, st in enumerate(plan.stages)]
        report.files.append(str(_memory_bars(rows, plan.device_memory_gib, f"{model.name} on {hw.key}: memory per device",
                                             out / "memory_breakdown.png")))
        report.files.append(str(plots.line_plot(
            {f"{model.name} {layout.label()} on {hw.key}": (grid, curve)},
            "Max concurrent requests vs context length", "context length (tokens)", "requests per replica",
            out / "max_concurrency_vs_context.png", logy=True)))
    return report


# --- latency -----------------------------------------------------------------------------------------

def run_latency(cfg: LatencyConfig) -> Report:
    d, eff = cfg.deployment, cfg.efficiency
    model, hw = load_model(d.model), load_hardware(d.hardware)
    validate_layout(model, cfg.layout())
    common = dict(tp=d.tp, pp=d.pp, dtype=d.dtype, kv_dtype=d.kv_dtype, batch_size=cfg.batch_size,
                  prompt_len=cfg.context_len, output_len=cfg.output_len,
                  max_num_batched_tokens=cfg.engine.max_batched_tokens, micro_batches=cfg.micro_batches)
    ideal = estimate_latency(model, hw, mfu=1.0, mbu=1.0, step_overhead=0.0, **common)
    real = estimate_latency(model, hw, **eff.roofline_kwargs(), **common)
    pre, dec = prefill_flops(model, cfg.context_len), decode_flops(model, cfg.context_len)
    rows = []
    for label, e in (("theoretical (mfu=mbu=1)", ideal), (f"mfu={eff.mfu}, mbu={eff.mbu}", real)):
        rows.append([label, e.ttft_s * 1e3, e.tpot_s * 1e3, e.e2e_s, e.prefill_tokens_per_s, e.decode_tokens_per_s,
                     e.pipelined_decode_tokens_per_s, e.decode_bound])
    first = real.first_decode_step
    data = {
        "command": "latency",
        "model": model.summary(),
        "hardware": hw.summary(),
        "flops": {"linear_per_token": linear_flops_per_token(model), "prefill": pre.to_dict(), "decode_token": dec.to_dict()},
        "theoretical": ideal.to_dict(),
        "estimate": real.to_dict(),
    }
    text = "\n\n".join([
        f"{model_line(model)}\n{hardware_line(hw)}\nLayout TP{d.tp} x PP{d.pp}, weights {real.dtype}, KV {real.kv_dtype}; "
        f"batch {cfg.batch_size}, prompt {cfg.context_len:,}, output {cfg.output_len:,} tokens",
        block("FLOPs", [
            ("matmul per token", f"{linear_flops_per_token(model) / 1e9:.2f} GFLOP"),
            (f"prefill of {cfg.context_len:,} tokens", f"{pre.total / 1e12:.2f} TFLOP (attention {pre.attention / pre.total:.1%})"),
            (f"decode token @ {cfg.context_len:,}", f"{dec.total / 1e9:.2f} GFLOP"),
        ]),
        table(["model", "TTFT ms", "TPOT ms", "e2e s", "prefill tok/s", "decode tok/s", "pipelined tok/s", "decode bound"], rows),
        block("First decode step (with efficiencies)", [
            ("compute (at peak)", f"{first['compute_s'] * 1e3:.3f} ms"),
            ("memory (at peak)", f"{first['memory_s'] * 1e3:.3f} ms"),
            ("TP/PP communication", f"{first['comm_s'] * 1e3:.3f} ms"),
            ("fixed overhead", f"{first['overhead_s'] * 1e3:.3f} ms"),
            ("PP bubble", f"{real.pp_bubble_fraction:.1%} with {cfg.micro_batches or d.pp} micro-batch(es)"),
        ]),
    ])
    if cfg.operators:
        data["operators"], section = _operator_breakdown(cfg, model, hw)
        text += "\n\n" + section
    report = Report(data, text)
    out = output_dir(cfg.report)
    if out:
        batches = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if b <= max(cfg.batch_size, 256)]
        tput = {}
        for label, kwargs in (("theoretical", dict(mfu=1.0, mbu=1.0, step_overhead=0.0)),
                              ("with efficiencies", eff.roofline_kwargs())):
            vals = [estimate_latency(model, hw, **kwargs, **{**common, "batch_size": b, "output_len": 2}).decode_tokens_per_s
                    for b in batches]
            tput[label] = (batches, vals)
        report.files.append(str(plots.line_plot(tput, f"{model.name} on {hw.key}: decode throughput @ {cfg.context_len:,} context",
                                                "batch size", "tokens/s", out / "decode_throughput_vs_batch.png")))
    return report


def _operator_breakdown(cfg: LatencyConfig, model: ModelSpec, hw: HardwareSpec) -> tuple[dict, str]:
    """The operator roofline's time per operator for the batch's first prefill step and its
    first decode step, next to the global roofline's step times (``--operators``)."""
    from etalon.perf.base import StepBatch
    from etalon.perf.operator_roofline import OperatorRooflinePerfModel
    from etalon.perf.roofline import RooflinePerfModel

    d = cfg.deployment
    layout = dict(tp=d.tp, pp=d.pp, dtype=d.dtype, kv_dtype=d.kv_dtype)
    ops = OperatorRooflinePerfModel(model, hw, ep=cfg.ep, **layout)
    roof = RooflinePerfModel(model, hw, **layout, **cfg.efficiency.roofline_kwargs())
    steps = {"prefill": chunked_prefill(cfg.batch_size, cfg.context_len, cfg.engine.max_batched_tokens)[0],
             "decode": StepBatch.decode(cfg.batch_size, cfg.batch_size * (cfg.context_len + 1))}
    data: dict = {"perf_model": ops.describe()}
    by_name: dict[str, dict] = {}
    for phase, batch in steps.items():
        times = ops.operator_times(batch)
        total = ops.step_time(batch)
        data[phase] = {"prefill_tokens": batch.prefill_tokens, "decode_batch": batch.decode_batch,
                       "step_s": total, "roofline_step_s": roof.step_time(batch),
                       "operators": [t.__dict__ for t in times]}
        for t in times:
            by_name.setdefault(t.name, {"count": t.count})[phase] = (t.seconds, t.seconds / total, t.bound)
    rows = []
    for name, row in by_name.items():
        cells: list[object] = [name, row["count"]]
        for phase in steps:
            s, share, bound = row.get(phase, (0.0, 0.0, "-"))
            cells += [s * 1e3, f"{share:.1%}", bound]
        rows.append(cells)
    pre, dec = data["prefill"], data["decode"]
    rows.append(["total (operator roofline)", "", pre["step_s"] * 1e3, "100%", "", dec["step_s"] * 1e3, "100%", ""])
    rows.append(["global roofline, same step", "", pre["roofline_step_s"] * 1e3, "", "",
                 dec["roofline_step_s"] * 1e3, "", ""])
    title = (f"Per-operator times (operator roofline): prefill step of {pre['prefill_tokens']:,} tokens, "
             f"decode step of {dec['decode_batch']} sequence(s) @ {cfg.context_len + 1:,} context")
    return data, title + "\n" + table(["operator", "launches", "prefill ms", "share", "bound",
                                       "decode ms", "share", "bound"], rows)


# --- plan --------------------------------------------------------------------------------------------

def run_plan(cfg: PlanConfig) -> Report:
    d = cfg.deployment
    model, hw = load_model(d.model), load_hardware(d.hardware)
    config = cfg.serving()
    rec = recommend_layout(model, hw, cfg.context_len, cfg.concurrency, d.dtype, d.kv_dtype, config,
                           cfg.devices_per_node)
    smallest = min_gpus(model, hw, cfg.context_len, d.dtype, d.kv_dtype, config)
    valid = valid_tp_sizes(model, max(64, rec.devices_per_node))
    price = hw.price_per_hour_usd
    cost = price * rec.gpus if price else None
    cand_rows = [[c.layout.label(), c.kv_pool_gib, c.required_gib, c.max_concurrency, c.fits] for c in rec.candidates]
    data = {
        "command": "plan",
        "model": model.summary(),
        "hardware": hw.summary(),
        "recommended": {"tp": rec.layout.tp, "pp": rec.layout.pp, "ep": rec.layout.ep, "gpus": rec.gpus,
                        "nodes": rec.nodes, "reasons": list(rec.reasons), "usd_per_hour": cost},
        "min_gpus": {"tp": smallest.layout.tp, "pp": smallest.layout.pp, "gpus": smallest.gpus},
        "valid_tp_sizes": valid,
        "plan": rec.plan.to_dict(),
        "candidates": [{"layout": c.layout.label(), "kv_pool_gib": c.kv_pool_gib, "required_gib": c.required_gib,
                        "max_concurrency": c.max_concurrency, "fits": c.fits} for c in rec.candidates],
    }
    cost_text = f", ~${cost:.2f}/hour (indicative)" if cost else ""
    text = "\n\n".join([
        f"{model_line(model)}\n{hardware_line(hw)}\nTarget: {cfg.concurrency} concurrent request(s) of "
        f"{rec.context_len:,} tokens, {rec.devices_per_node} devices per node",
        f"Recommended: {rec.layout.label()} = {rec.gpus} device(s) on {rec.nodes} node(s){cost_text}\n  why: {rec.reasons[0]}",
        f"Minimum for one request of {smallest.context_len:,} tokens: {smallest.layout.label()} = {smallest.gpus} device(s)",
        f"Valid TP sizes: {', '.join(map(str, valid))}",
        "Layouts considered\n" + table(["layout", "KV pool GiB", "needs GiB/device", "max concurrency", "fits"], cand_rows),
        _plan_text(rec.plan),
    ])
    report = Report(data, text)
    out = output_dir(cfg.report)
    if out:
        shown = [_plan_bar(c.layout.label(), plan_memory(model, hw, c.layout, d.dtype, d.kv_dtype, config,
                                                         rec.context_len, cfg.concurrency)) for c in rec.candidates[-6:]]
        report.files.append(str(_memory_bars(shown, rec.plan.device_memory_gib, f"{model.name} on {hw.key}: candidate layouts",
                                             out / "memory_breakdown.png")))
        grid = context_grid(model.max_context)
        curves = {c.layout.label(): (grid, max_concurrency_curve(model, hw, grid, c.layout, d.dtype, d.kv_dtype, config))
                  for c in rec.candidates[-4:] if c.kv_pool_gib > 0}
        if curves:
            report.files.append(str(plots.line_plot(curves, "Max concurrent requests vs context length",
                                                    "context length (tokens)", "requests per replica",
                                                    out / "max_concurrency_vs_context.png", logy=True)))
    return report


# --- catalog -----------------------------------------------------------------------------------------

def run_catalog(cfg: CatalogConfig | None = None) -> Report:
    models = [load_model(n) for n in catalog_names()]
    hws = list(hardware_catalog().values())
    model_rows = [[m.name, m.params.total / 1e9, m.params.active / 1e9, m.attention_type, m.num_layers, m.max_context,
                   m.weight_dtype] for m in models]
    hw_rows = [[h.key, h.memory_gib, h.memory_bandwidth_gb_s, h.tflops_bf16, h.tflops_fp8 or "-", h.interconnect,
                h.price_per_hour_usd or "-"] for h in hws]
    data = {"command": "catalog", "models": [m.summary() for m in models], "hardware": [h.summary() for h in hws]}
    text = "\n\n".join([
        "Models\n" + table(["name", "params B", "active B", "attention", "layers", "max context", "dtype"], model_rows),
        "Hardware\n" + table(["name", "memory GiB", "GB/s", "TFLOP/s bf16", "fp8", "interconnect", "$/h"], hw_rows),
    ])
    return Report(data, text)

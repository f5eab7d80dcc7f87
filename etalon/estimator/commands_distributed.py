"""The ``distributed`` subcommand: Petals-style pipeline throughput and storage, with sweeps.

One base scenario (N servers of one or more GPU types, a client, a network) is reported in
detail; each sweep varies one factor (server count, GPU type, RTT, bandwidth) and yields a
throughput-vs-sequence-length curve, theoretical (all efficiencies 1) and with efficiencies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from etalon.estimator import plots
from etalon.estimator.command_configs import DistributedConfig
from etalon.estimator.commands import Report, model_line, output_dir
from etalon.estimator.distributed import (
    THEORETICAL,
    Efficiency,
    NetworkSpec,
    PipelineScenario,
    build_scenario,
    storage,
    throughput_curve,
    token_latency,
)
from etalon.estimator.hardware import GiB
from etalon.estimator.models import load_model
from etalon.estimator.render import block, table


def _servers(names: list[str], count: int) -> list[str]:
    """``count`` server types, cycling through ``names``."""
    return [names[i % len(names)] for i in range(count)]


def _network(cfg: DistributedConfig, rtt: float | None = None, bandwidth: float | None = None) -> NetworkSpec:
    up = bandwidth or cfg.upload_mbps or cfg.bandwidth_mbps
    down = bandwidth or cfg.download_mbps or cfg.bandwidth_mbps
    return NetworkSpec(rtt_ms=cfg.rtt_ms if rtt is None else rtt, upload_mbps=up, download_mbps=down)


def _scenario(cfg: DistributedConfig, count: int | None = None, hardware: list[str] | None = None,
              rtt: float | None = None, bandwidth: float | None = None) -> PipelineScenario:
    d = cfg.deployment
    return build_scenario(
        d.model, _servers(hardware or cfg.server_hardware, count or cfg.servers), _network(cfg, rtt, bandwidth),
        client=cfg.client_hardware, dtype=d.dtype, kv_dtype=d.kv_dtype, batch_size=cfg.batch_size,
        route=cfg.route, split=cfg.split,
    )


def _sweeps(cfg: DistributedConfig) -> dict[str, tuple[str, list, Callable[[object], PipelineScenario]]]:
    """Sweep name -> (legend label, values, scenario factory)."""
    return {
        "servers": ("servers", cfg.sweep_servers, lambda v: _scenario(cfg, count=int(v))),
        "gpu": ("GPU", cfg.sweep_hardware, lambda v: _scenario(cfg, hardware=[str(v)])),
        "rtt": ("RTT ms", cfg.sweep_rtt_ms, lambda v: _scenario(cfg, rtt=float(v))),
        "bandwidth": ("Mbit/s", cfg.sweep_bandwidth_mbps, lambda v: _scenario(cfg, bandwidth=float(v))),
    }


def run_distributed(cfg: DistributedConfig) -> Report:
    model = load_model(cfg.deployment.model)
    eff = Efficiency(mfu=cfg.efficiency.mfu, mbu=cfg.efficiency.mbu, network=cfg.network_efficiency)
    base = _scenario(cfg)
    seq_lens = cfg.seq_lens
    rows, latency = [], []
    for n in seq_lens:
        ideal = token_latency(base, n)
        real = token_latency(base.with_(efficiency=eff), n)
        latency.append({"theoretical": ideal.to_dict(), "with_efficiency": real.to_dict()})
        rows.append([n, sum(real.server_compute_s) * 1e3, real.client_s * 1e3, real.network_s * 1e3, real.total_s * 1e3,
                     ideal.tokens_per_s, real.tokens_per_s])
    stores = [storage(base, n) for n in seq_lens]
    store_rows = [[s.seq_len, max(s.server_weights) / GiB, max(s.server_kv) / GiB, min(s.server_memory) / GiB,
                   (s.client_embedding + s.client_lm_head + s.client_history) / GiB, s.fits] for s in stores]
    sweep_data: dict[str, dict] = {}
    sweep_rows = []
    probe = sorted({seq_lens[0], seq_lens[len(seq_lens) // 2], seq_lens[-1]})
    for name, (label, values, make) in _sweeps(cfg).items():
        sweep_data[name] = {}
        for v in values:
            sc = make(v)
            ideal_curve = throughput_curve(sc, seq_lens)
            real_curve = throughput_curve(sc.with_(efficiency=eff), seq_lens)
            fits = storage(sc, seq_lens[-1]).fits
            sweep_data[name][str(v)] = {"theoretical": ideal_curve.tolist(), "with_efficiency": real_curve.tolist(),
                                        "fits": fits}
            sweep_rows.append([name, f"{v}", *[float(x) for x in throughput_curve(sc.with_(efficiency=eff), probe)],
                               "yes" if fits else "NO"])
    hw_text = ", ".join(f"{h.key} x{b}" for h, b in zip(base.servers, base.blocks))
    data = {
        "command": "distributed",
        "model": model.summary(),
        "scenario": {
            "servers": [h.key for h in base.servers], "blocks": list(base.blocks), "client": base.client.key,
            "rtt_ms": base.network.rtt_ms, "upload_mbps": base.network.upload_mbps,
            "download_mbps": base.network.download_mbps, "route": base.route, "batch_size": base.batch_size,
            "dtype": base.dtype, "kv_dtype": base.kv_dtype,
            "efficiency": {"mfu": eff.mfu, "mbu": eff.mbu, "network": eff.network},
        },
        "seq_lens": list(seq_lens),
        "latency": latency,
        "storage": [s.to_dict() for s in stores],
        "sweeps": sweep_data,
    }
    beyond = [n for n in seq_lens if n > model.max_context]
    note = (f"\nnote: sequence lengths above the model's max context ({model.max_context:,}) are extrapolated: "
            f"{', '.join(map(str, beyond))}") if beyond else ""
    text = "\n\n".join([
        model_line(model) + note,
        block("Pipeline", [
            ("servers (blocks each)", hw_text),
            ("client", f"{base.client.key} (embeddings + LM head)"),
            ("network", f"RTT {base.network.rtt_ms} ms, up {base.network.upload_mbps} / down {base.network.download_mbps} Mbit/s, route {base.route}"),
            ("weights / KV", f"{base.dtype} / {base.kv_dtype}, batch {base.batch_size}"),
            ("efficiencies", f"mfu {eff.mfu}, mbu {eff.mbu}, network {eff.network}"),
        ]),
        "Per-token latency (with efficiencies) and throughput\n" + table(
            ["seq len", "servers ms", "client ms", "network ms", "total ms", "tok/s theoretical", "tok/s"], rows),
        "Storage\n" + table(["seq len", "server weights GiB (max)", "server KV GiB (max)", "server memory GiB",
                             "client GiB", "fits"], store_rows),
        f"Sweeps: tokens/s (with efficiencies) at seq len {', '.join(map(str, probe))}\n" + table(
            ["sweep", "value", *[str(p) for p in probe], f"fits @ {seq_lens[-1]}"], sweep_rows),
    ])
    report = Report(data, text)
    out = output_dir(cfg.report)
    if out:
        report.files += _plot(cfg, seq_lens, eff, base, stores, out)
    return report


def _plot(cfg: DistributedConfig, seq_lens: list[int], eff: Efficiency, base: PipelineScenario, stores, out: Path) -> list[str]:
    files = []
    name = base.model.name
    for sweep, (label, values, make) in _sweeps(cfg).items():
        for prefix, e in (("theoretical_", THEORETICAL), ("", eff)):
            curves = {}
            for v in values:
                sc = make(v)
                tag = (f"{v} {label}" if sweep != "gpu" else str(v)) + ("" if storage(sc, seq_lens[-1]).fits else " (does not fit)")
                curves[tag] = (seq_lens, throughput_curve(sc.with_(efficiency=e), seq_lens))
            kind = "theoretical" if e is THEORETICAL else f"mfu {eff.mfu}, mbu {eff.mbu}, net {eff.network}"
            files.append(str(plots.line_plot(curves, f"{name}: decoding throughput by {sweep} ({kind})",
                                             "sequence length (tokens)", "tokens/s", out / f"{prefix}throughput_by_{sweep}.png")))
    files.append(str(plots.stack_plot(
        seq_lens,
        {"embeddings": [s.client_embedding / GiB for s in stores], "LM head": [s.client_lm_head / GiB for s in stores],
         "hidden-state history": [s.client_history / GiB for s in stores]},
        f"{name}: client storage", "sequence length (tokens)", "GiB", out / "client_storage_stackplot.png")))
    files.append(str(plots.stack_plot(
        seq_lens,
        {"weights (all servers)": [sum(s.server_weights) / GiB for s in stores],
         "KV cache (all servers)": [sum(s.server_kv) / GiB for s in stores]},
        f"{name}: server storage ({len(base.servers)} servers)", "sequence length (tokens)", "GiB",
        out / "server_storage_stackplot.png", limit=sum(stores[0].server_memory) / GiB, limit_label="total server memory")))
    return files

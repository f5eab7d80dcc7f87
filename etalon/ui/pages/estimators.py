"""Latency and distributed estimators page: roofline TTFT/TPOT and decode throughput by batch,
and Petals-style pipeline throughput by servers, GPU, RTT and bandwidth — interactive charts."""

from __future__ import annotations

import streamlit as st

from etalon.cli_errors import UserError
from etalon.estimator import catalog_names, hardware_names
from etalon.estimator.distributed import ROUTES, SPLITS
from etalon.ui import estimators
from etalon.ui.pages.common import facts_table, guarded, record_once


def _numbers(text: str, kind: type) -> list:
    """A comma-separated list from a text box (the estimator's config checks the values)."""
    return [kind(v) for v in text.split(",") if v.strip()]


def _latency() -> None:
    models, gpus = catalog_names(), hardware_names()
    c = st.columns(3)
    settings = {
        "model": c[0].selectbox("Model", models, index=models.index("llama-3.1-8b"), key="lat_model"),
        "hardware": c[1].selectbox("GPU", gpus, index=gpus.index("h100-sxm"), key="lat_hw"),
        "tp": int(c[2].number_input("TP", min_value=1, value=1, key="lat_tp")),
    }
    c = st.columns(5)
    settings["context_len"] = int(c[0].number_input("Prompt tokens", min_value=1, value=1024, key="lat_ctx"))
    settings["output_len"] = int(c[1].number_input("Output tokens", min_value=1, value=256, key="lat_out"))
    settings["batch_size"] = int(c[2].number_input("Batch", min_value=1, value=1, key="lat_batch"))
    settings["mfu"] = float(c[3].number_input("MFU", min_value=0.01, max_value=1.0, value=0.5, key="lat_mfu"))
    settings["mbu"] = float(c[4].number_input("MBU", min_value=0.01, max_value=1.0, value=0.7, key="lat_mbu"))
    est = guarded(lambda: estimators.latency(settings))
    if est is None:
        return
    record_once("latency", est.kind, est.history_inputs(), est.data,  # before it is shown
                f"{settings['model']} on {settings['hardware']}")  # (see the planner's page)
    e = est.data["estimate"]
    m = st.columns(4)
    m[0].metric("TTFT", f"{e['ttft_s'] * 1e3:.2f} ms")
    m[1].metric("TPOT", f"{e['tpot_s'] * 1e3:.2f} ms")
    m[2].metric("End to end", f"{e['e2e_s']:.2f} s")
    m[3].metric("Decode tokens/s", f"{e['decode_tokens_per_s']:,.0f}")
    for title, frame in est.charts.items():
        st.caption(title)
        st.line_chart(frame)


def _distributed() -> None:
    models, gpus = catalog_names(), hardware_names()
    c = st.columns(3)
    model = c[0].selectbox("Model", models, index=models.index("llama-3.1-8b"), key="dist_model")
    servers = int(c[1].number_input("Servers", min_value=1, value=4, key="dist_servers"))
    server_hw = c[2].multiselect("Server GPUs (cycled)", gpus, default=["rtx-4090"], key="dist_hw")
    c = st.columns(4)
    rtt = float(c[0].number_input("RTT ms", min_value=0.0, value=50.0, key="dist_rtt"))
    bw = float(c[1].number_input("Bandwidth Mbit/s", min_value=0.1, value=100.0, key="dist_bw"))
    route = c[2].selectbox("Route", sorted(ROUTES), key="dist_route")
    split = c[3].selectbox("Split", sorted(SPLITS), key="dist_split")
    seq_text = st.text_input("Sequence lengths", "128,512,1024,2048,4096", key="dist_seq")
    sweep_servers = st.text_input("Server counts to compare", "2,4,8", key="dist_sweep_servers")

    def run() -> estimators.Estimate:
        try:
            seq_lens, counts = _numbers(seq_text, int), _numbers(sweep_servers, int)
        except ValueError:
            raise UserError("sequence lengths and server counts are comma-separated integers") from None
        return estimators.distributed({
            "model": model, "servers": servers, "server_hardware": server_hw or ["rtx-4090"],
            "rtt_ms": rtt, "bandwidth_mbps": bw, "route": route, "split": split,
            "seq_lens": seq_lens, "sweep_servers": counts})

    est = guarded(run)
    if est is None:
        return
    record_once("distributed", est.kind, est.history_inputs(), est.data, f"{model} on {servers} servers")
    first = est.data["latency"][0]["with_efficiency"]
    m = st.columns(3)
    m[0].metric(f"tokens/s @ {est.data['seq_lens'][0]}", f"{first['tokens_per_s']:.2f}")
    m[1].metric("network per token", f"{first['network_s'] * 1e3:.1f} ms")
    m[2].metric("fits in memory", "yes" if est.data["storage"][-1]["fits"] else "NO")
    for title, frame in est.charts.items():
        st.caption(title)
        st.line_chart(frame)
    facts_table([(f"blocks on server {i}", b) for i, b in enumerate(est.data["scenario"]["blocks"])])


def page() -> None:
    st.title("Latency and distributed estimators")
    latency_tab, distributed_tab = st.tabs(["Roofline latency", "Distributed pipeline (Petals-style)"])
    with latency_tab:
        _latency()
    with distributed_tab:
        _distributed()

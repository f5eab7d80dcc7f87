"""Capacity planner page: model + accelerator + layout -> memory, KV cache, concurrency, layout."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from etalon.estimator import catalog_names, hardware_names
from etalon.ui import planner
from etalon.ui.pages.common import facts_table, guarded, record_once

CUSTOM = "custom config.json (paste or upload)"


def _inputs() -> planner.PlannerInputs:
    models = catalog_names()
    c1, c2 = st.columns(2)
    model = c1.selectbox("Model", [*models, CUSTOM], index=models.index("llama-3.1-8b"), key="model")
    hardware = c2.selectbox("GPU", hardware_names(), index=hardware_names().index("h100-sxm"),
                            key="hardware")
    config_json = ""
    if model == CUSTOM:
        config_json = st.text_area("Hugging Face config.json", key="config_json", height=160)
        upload = st.file_uploader("or upload config.json", type=["json"], key="config_upload")
        if upload is not None:
            config_json = upload.getvalue().decode("utf-8", errors="replace")
    cols = st.columns(4)
    tp = cols[0].number_input("TP", min_value=1, value=1, step=1, key="tp")
    pp = cols[1].number_input("PP", min_value=1, value=1, step=1, key="pp")
    dp = cols[2].number_input("DP", min_value=1, value=1, step=1, key="dp")
    ep = cols[3].number_input("EP", min_value=1, value=1, step=1, key="ep")
    cols = st.columns(4)
    dtype = cols[0].selectbox("Weights dtype", planner.DTYPE_CHOICES, key="dtype",
                              format_func=lambda d: d or "checkpoint's")
    kv_dtype = cols[1].selectbox("KV-cache dtype", planner.KV_DTYPE_CHOICES, key="kv_dtype",
                                 format_func=lambda d: d or "activation dtype")
    context = cols[2].number_input("Context length (0: model max)", min_value=0, value=8192,
                                   step=1024, key="context_len")
    concurrency = cols[3].number_input("Concurrent requests to hold", min_value=1, value=1,
                                       key="concurrency")
    gmu = st.slider("GPU memory utilization", 0.05, 1.0, 0.9, 0.01, key="gmu")
    return planner.PlannerInputs(
        model="" if model == CUSTOM else model, hardware=hardware, tp=int(tp), pp=int(pp),
        dp=int(dp), ep=int(ep), dtype=dtype, kv_dtype=kv_dtype, context_len=int(context) or None,
        gpu_memory_utilization=float(gmu), concurrency=int(concurrency), config_json=config_json)


def _show(result: planner.PlannerResult) -> None:
    p = result.plan
    st.subheader(f"{result.model.name} on {p.hardware}, {p.layout.label()}")
    for note in result.notes:
        st.warning(note)
    m = st.columns(4)
    m[0].metric("Max concurrency per replica", f"{p.max_concurrency:.2f}")
    m[1].metric("KV pool per device", f"{p.kv_pool_gib:.2f} GiB")
    m[2].metric("KV bytes per token", f"{p.kv_bytes_per_token:,.0f}")
    rec = result.recommendation
    m[3].metric("Recommended layout", rec.layout.label() if rec else "none fits")
    facts_table(result.facts())
    st.caption("Per-device memory (GiB) against the budget "
               f"{p.budget_gib:.1f} of {p.device_memory_gib:.1f} GiB")
    st.bar_chart(pd.DataFrame({"GiB": [v for _, v in result.memory_rows()]},
                              index=[k for k, _ in result.memory_rows()]))
    st.caption("Max concurrent requests per replica by context length")
    st.line_chart(pd.DataFrame({"requests": result.concurrency_curve},
                               index=pd.Index(result.context_grid, name="context length")))
    if rec:
        with st.expander("Why this layout"):
            for reason in rec.reasons:
                st.write(reason)
            st.dataframe(pd.DataFrame([{"layout": c.layout.label(), "KV pool GiB": c.kv_pool_gib,
                                        "max concurrency": c.max_concurrency, "fits": c.fits}
                                       for c in rec.candidates]))


def page() -> None:
    st.title("Capacity planner")
    inputs = _inputs()
    result = guarded(lambda: planner.compute(inputs))
    if result is None:
        return
    # recorded before it is shown: a page left while it draws (its run stopped) keeps its record
    record_once("planner", "planner", inputs.history_inputs(), result.history_outputs(),
                f"{result.model.name} on {inputs.hardware}")
    _show(result)

"""Recommend page: the cheapest deployment that meets an SLO at a request rate — the ranked
table and the Pareto plot of ``etalon recommend``."""

from __future__ import annotations

import streamlit as st

from etalon.capacity_search.recommend_sweep import priced_hardware
from etalon.estimator import catalog_names
from etalon.ui import recommending
from etalon.ui.pages.common import guarded, record, runs_dir


def _priced() -> list[str]:
    return [h.key for h in priced_hardware([])]


def page() -> None:
    st.title("Recommend a deployment")
    models = catalog_names()
    c = st.columns(3)
    model = c[0].selectbox("Model", models, index=models.index("llama-3-8b"), key="rec_model")
    qps = c[1].number_input("Target request rate (req/s)", min_value=0.01, value=4.0, key="rec_qps")
    requests = c[2].number_input("Requests per simulation", min_value=10, value=200, key="rec_n")
    priced = _priced()
    hardware = st.multiselect("Accelerators", priced, default=[h for h in ("l4", "h100-sxm") if h in priced],
                              key="rec_hw")
    c = st.columns(4)
    tps = c[0].multiselect("TP sizes", [1, 2, 4, 8], default=[1, 2], key="rec_tp")
    ttft = c[1].number_input("SLO: p90 TTFT max (s)", min_value=0.001, value=0.5, key="rec_ttft")
    tbt = c[2].number_input("SLO: p99 TBT max (s)", min_value=0.001, value=0.1, key="rec_tbt")
    prompt = c[3].number_input("Prompt tokens", min_value=1, value=512, key="rec_prompt")
    output = st.number_input("Output tokens", min_value=1, value=128, key="rec_output")
    if not st.button("Recommend", key="rec_run", type="primary"):
        return
    settings = {
        "model": model, "target_qps": float(qps), "hardware": hardware or None,
        "tp_sizes": sorted(tps) or [1], "pp_sizes": [1], "output_dir": runs_dir("recommend"),
        "jobs": 1, "slo": {"ttft_max_s": float(ttft), "tbt_max_s": float(tbt)},
        "workload": {"max_num_completed_requests": int(requests),
                     "fixed_request_generator_prefill_tokens": int(prompt),
                     "fixed_request_generator_decode_tokens": int(output)}}
    with st.spinner("simulating every layout..."):
        result = guarded(lambda: recommending.run(settings))
    if result is None:
        return
    record("recommend", result.history_inputs(), result.history_outputs(), f"{model} at {qps:g} req/s",
           result_dir=result.files["json"].parent)
    if result.any_pass:
        best = result.table.iloc[0]
        st.metric("Cheapest that meets the SLO", f"{best['configuration']} x{best['replicas']}",
                  f"${best['cost_per_hour_usd']:.2f}/h", delta_color="off")
    else:
        st.error("no configuration meets the SLO at this rate; see the reasons below")
    st.dataframe(result.table, width="stretch")
    st.image(str(result.files["plot"]), caption="cost against TTFT; the Pareto front in red")
    st.caption(result.roofline_note)
    st.caption(f"files: {', '.join(str(p) for p in result.files.values())}")

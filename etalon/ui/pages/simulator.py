"""Simulator page: a deployment and a workload from a form -> ``simulate`` into a folder ->
the summary and that run's HTML report, embedded."""

from __future__ import annotations

import streamlit as st

from etalon.estimator import catalog_names, hardware_names
from etalon.ui import simulation
from etalon.ui.pages.common import embed_html, facts_table, guarded, record, runs_dir


def _form() -> simulation.SimForm:
    models, gpus = catalog_names(), hardware_names()
    c = st.columns(4)
    form = simulation.SimForm(
        model=c[0].selectbox("Model", models, index=models.index("llama-3.1-8b"), key="sim_model"),
        hardware=c[1].selectbox("GPU", gpus, index=gpus.index("h100-sxm"), key="sim_hw"),
        tp=int(c[2].number_input("TP", min_value=1, value=1, key="sim_tp")),
        num_replicas=int(c[3].number_input("Replicas", min_value=1, value=1, key="sim_replicas")),
    )
    c = st.columns(4)
    form.qps = float(c[0].number_input("Request rate (req/s, Poisson)", min_value=0.01, value=4.0,
                                       key="sim_qps"))
    form.num_requests = int(c[1].number_input("Requests", min_value=1, value=100, key="sim_n"))
    form.prefill_tokens = int(c[2].number_input("Prompt tokens", min_value=1, value=512, key="sim_prefill"))
    form.decode_tokens = int(c[3].number_input("Output tokens", min_value=1, value=128, key="sim_decode"))
    if "sim_out" not in st.session_state:
        st.session_state["sim_out"] = runs_dir("simulate")
    form.output_dir = st.text_input("Output folder", key="sim_out")
    return form


def page() -> None:
    st.title("Simulator")
    form = _form()
    if st.button("Run simulation", key="sim_run", type="primary"):
        with st.spinner("simulating..."):
            run = guarded(lambda: simulation.run(form))
        if run is not None:
            st.session_state["sim_last"] = run
            record("simulate", run.config.to_dict(), run.summary, f"{form.model} on {form.hardware}",
                   result_dir=run.folder)
            st.session_state.pop("sim_out")  # the next run gets a fresh folder
    run = st.session_state.get("sim_last")
    if run is None:
        return
    st.success(f"results in {run.folder}")
    facts_table(run.headline())
    embed_html(run.report_html, 900)

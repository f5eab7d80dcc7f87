"""Simulator page: a deployment and a workload from a form -> ``simulate`` into a folder ->
the summary and that run's HTML report, embedded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

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
    form.output_dir = st.text_input("Output folder (blank: a new folder for each run, under "
                                    f"{Path(runs_dir('simulate')).parent})", key="sim_out").strip()
    return form


def page() -> None:
    st.title("Simulator")
    form = _form()
    extra = st.text_area("More settings: JSON of `etalon simulate` config keys, e.g. "
                         '{"scheduler": "sarathi", "workload": {"seed": 7}}', key="sim_extra")
    if st.button("Run simulation", key="sim_run", type="primary"):
        with st.spinner("simulating..."):
            run = guarded(lambda: simulation.run(replace(
                form, output_dir=form.output_dir or runs_dir("simulate"),
                extra=simulation.parse_extra(extra))))
        if run is not None:
            st.session_state["sim_last"] = run
            record("simulate", run.config.to_dict(), run.summary, f"{form.model} on {form.hardware}",
                   result_dir=run.folder)
    run = st.session_state.get("sim_last")
    if run is None:
        return
    st.success(f"results in {run.folder}")
    facts_table(run.headline())
    embed_html(run.report_html, 900)

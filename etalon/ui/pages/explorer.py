"""Results explorer page: open run / simulation / capacity-search folders by path; filter,
sort, plot, and compare them in the multi-run HTML report."""

from __future__ import annotations

import streamlit as st

from etalon.ui import explorer
from etalon.ui.pages.common import embed_html, guarded


def page() -> None:
    st.title("Results explorer")
    text = st.text_area("Run, simulation or capacity-search folders (one per line)", key="exp_paths")
    paths = explorer.split_paths(text)
    if not paths:
        st.info("give one or more result folders (a run's --output-dir, a simulation's, a "
                "capacity search's)")
        return
    opened = explorer.open_folders(paths)
    for problem in opened.problems:
        st.error(problem)
    if not opened.folders:
        return
    table = explorer.filter_table(opened.table(), st.text_input("Filter (folder or kind)", key="exp_filter"))
    metrics = explorer.metric_columns(table)
    default = [m for m in ("latency.ttft.p50", "latency.tbt.p99", "throughput.requests_per_s") if m in metrics]
    shown = st.multiselect("Columns", metrics, default=default, key="exp_cols")
    sort = st.selectbox("Sort by", ["folder", *metrics], key="exp_sort")
    view = table[["folder", "kind", *shown]].sort_values(sort) if sort in table else table
    st.dataframe(view, width="stretch")
    if shown and len(view):
        st.caption("the chosen columns, per folder")
        st.bar_chart(view.set_index("folder")[shown])
    if st.button("Compare in one HTML report", key="exp_compare"):
        page_html = guarded(lambda: explorer.comparison_report([str(f.path) for f in opened.folders]))
        if page_html:
            embed_html(page_html, 900)

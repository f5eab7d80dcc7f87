"""History page: every calculation made in the app or the CLI (``etalon estimate ...``,
``etalon simulate``), re-opened, compared side by side and plotted."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from etalon.ui import explorer
from etalon.ui.history import compare
from etalon.ui.pages.common import embed_html, guarded, store


def page() -> None:
    st.title("History")
    s = store()
    if s is None:
        st.info("the history is off (ETALON_HISTORY=off); nothing is recorded or shown")
        return
    st.caption(f"history file: {s.path}")
    if not s.path.is_file():
        st.info("no calculations yet: use the planner, the estimators or the simulator here, "
                "or run `etalon estimate ...` / `etalon simulate`")
        return
    kinds = guarded(s.kinds)
    if kinds is None:
        return
    kind = st.selectbox("Kind", ["all", *kinds], key="hist_kind")
    entries = guarded(lambda: s.entries(None if kind == "all" else kind))
    if entries is None:
        return
    if not entries:
        st.info("no calculations of this kind yet")
        return
    st.dataframe(pd.DataFrame([{"id": e.id, "when": e.when, "kind": e.kind, "source": e.source,
                                "label": e.label} for e in entries]),
                 width="stretch", hide_index=True)
    by_id = {e.id: e for e in entries}
    label = {e.id: f"#{e.id} {e.kind}: {e.label} ({e.source}, {e.when})" for e in entries}
    chosen = st.selectbox("Re-open", list(by_id), format_func=label.get, key="hist_open")
    _reopen(by_id[chosen])
    st.header("Compare and plot")
    picked = st.multiselect("Calculations", list(by_id), default=list(by_id)[:2],
                            format_func=label.get, key="hist_compare")
    if len(picked) < 2:
        st.info("pick two or more calculations to compare")
        return
    header, rows = compare([by_id[i] for i in picked])
    if not rows:
        st.warning("these calculations share no numbers (different kinds?)")
        return
    frame = pd.DataFrame(rows, columns=header).set_index("metric")
    st.dataframe(frame, width="stretch")
    metric = st.selectbox("Plot", list(frame.index), key="hist_metric",
                          index=list(frame.index).index("plan.max_concurrency")
                          if "plan.max_concurrency" in frame.index else 0)
    st.bar_chart(frame.loc[[metric]].T.rename(columns={metric: metric}))


def _reopen(entry) -> None:
    st.subheader(f"#{entry.id} {entry.kind}: {entry.label}")
    c = st.columns(2)
    c[0].caption("inputs")
    c[0].json(entry.inputs, expanded=False)
    c[1].caption("outputs")
    c[1].json(entry.outputs, expanded=False)
    numbers = {k: v for k, v in entry.metrics.items() if not k.startswith("parameters.")}
    if numbers:
        with st.expander(f"{len(numbers)} numbers (what comparisons use)"):
            st.dataframe(pd.DataFrame({"value": numbers}), width="stretch")
    if entry.result_dir:
        st.write(f"results folder: `{entry.result_dir}`")
        opened = explorer.open_folders([entry.result_dir])
        for problem in opened.problems:
            st.warning(problem)
        if opened.folders and st.checkbox("show its report", key=f"hist_report_{entry.id}", value=True):
            page_html = guarded(lambda: explorer.comparison_report([entry.result_dir]))
            if page_html:
                embed_html(page_html, 800)

"""The Streamlit app ``etalon ui`` serves: one navigation over the pages in ``etalon.ui.pages``.
Run it through ``etalon ui`` (binds 127.0.0.1), not ``streamlit run`` directly."""

from __future__ import annotations

import streamlit as st

from etalon.ui.pages import estimators, explorer, history, planner, recommend, simulator


def main() -> None:
    st.set_page_config(page_title="etalon", layout="wide")
    pages = [
        st.Page(planner.page, title="Capacity planner", url_path="planner", default=True),
        st.Page(estimators.page, title="Latency and distributed", url_path="estimators"),
        st.Page(simulator.page, title="Simulator", url_path="simulator"),
        st.Page(recommend.page, title="Recommend", url_path="recommend"),
        st.Page(explorer.page, title="Results explorer", url_path="explorer"),
        st.Page(history.page, title="History", url_path="history"),
    ]
    st.navigation(pages).run()


if __name__ == "__main__":  # how `streamlit run` executes the script; importing it draws nothing
    main()

"""What every page shares: turning a mistake into a message on the page, the history store,
and where the app writes its runs."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from etalon.cli_errors import UserError
from etalon.ui.history import HistoryStore, history_path

T = TypeVar("T")


def guarded(fn: Callable[[], T]) -> T | None:
    """Runs ``fn``; a user mistake is ``st.error`` with its one-line message, anything else an
    ``st.error`` naming it with the traceback folded away — never a raw traceback page."""
    try:
        return fn()
    except UserError as exc:  # EstimatorError and ConfigError are UserErrors
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in etalon still must not blank the page
        st.error(f"etalon failed on this input: {type(exc).__name__}: {exc}")
        with st.expander("details (please report)"):
            st.code(traceback.format_exc())
    return None


def store() -> HistoryStore | None:
    """The history file (``$ETALON_HISTORY``, which ``etalon ui --history`` sets); None when
    recording is off."""
    path = history_path()
    return None if path is None else HistoryStore(path)


def record(kind: str, inputs: Mapping, outputs: Mapping, label: str,
           result_dir: str | Path | None = None) -> None:
    """Stores a calculation made in the app; a history problem is a warning, not a failure."""
    s = store()
    if s is None:
        return
    try:
        s.record(kind, inputs, outputs, source="app", label=label, result_dir=result_dir)
    except UserError as exc:
        st.warning(f"not recorded in the history: {exc}")


def record_once(key: str, kind: str, inputs: Mapping, outputs: Mapping, label: str) -> None:
    """Records a calculation the user asked for: not the page's first view with its defaults
    (opening the app is no calculation), and not the same inputs again (a page reruns on every
    widget change; the history keeps each distinct calculation once)."""
    marker = repr(sorted(inputs.items()))
    previous = st.session_state.get(f"recorded_{key}")
    st.session_state[f"recorded_{key}"] = marker
    if previous is not None and previous != marker:
        record(kind, inputs, outputs, label)


def runs_dir(what: str) -> str:
    """A fresh folder for a run made in the app: next to the history file (so a test's
    temporary history keeps its runs there too), else under ./etalon_runs."""
    path = history_path()
    base = path.parent / "runs" if path is not None else Path("etalon_runs")
    return str(base / f"{what}-{time.strftime('%Y%m%d-%H%M%S')}")


def embed_html(page: str, height: int) -> None:
    """An etalon HTML report (escaped by ``etalon.report.html``, never user HTML) in a frame."""
    if hasattr(st, "iframe"):
        st.iframe(page, height=height)
    else:  # Streamlit before st.iframe
        import streamlit.components.v1 as components

        components.html(page, height=height, scrolling=True)


def facts_table(rows: list[tuple[str, Any]]) -> None:
    st.table({"": [r[0] for r in rows], "value": [str(r[1]) for r in rows]})

"""Each page of the web app through Streamlit's own test harness (``AppTest``): the numbers it
shows are the logic modules', a calculation lands in the history once, and bad input is an
``st.error`` on the page, never an exception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the web app needs the 'ui' extra (pip install 'etalon[ui]')")
from streamlit.testing.v1 import AppTest  # noqa: E402

from etalon.estimator import estimate_latency  # noqa: E402
from etalon.ui.history import HistoryStore  # noqa: E402
from etalon.ui.planner import PlannerInputs, compute  # noqa: E402

TIMEOUT = 60


def planner_page():
    from etalon.ui.pages import planner
    planner.page()


def estimators_page():
    from etalon.ui.pages import estimators
    estimators.page()


def simulator_page():
    from etalon.ui.pages import simulator
    simulator.page()


def recommend_page():
    from etalon.ui.pages import recommend
    recommend.page()


def explorer_page():
    from etalon.ui.pages import explorer
    explorer.page()


def history_page():
    from etalon.ui.pages import history
    history.page()


@pytest.fixture
def history(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "history.sqlite"
    monkeypatch.setenv("ETALON_HISTORY", str(path))
    return path


def app(page) -> AppTest:
    at = AppTest.from_function(page, default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def walk(node):
    """Every element under ``node`` (tabs and columns nest them)."""
    for child in getattr(node, "children", {}).values():
        yield child
        yield from walk(child)


def iframes(at: AppTest) -> list[str]:
    return [e.proto.srcdoc for e in walk(at.main) if e.type == "iframe"]


def errors(at: AppTest) -> list[str]:
    assert not at.exception
    return [e.value for e in at.error]


def test_planner_shows_the_planner_numbers_and_records_each_calculation_once(history):
    at = app(planner_page)
    expected = compute(PlannerInputs(model="llama-3.1-8b", hardware="h100-sxm", context_len=8192))
    shown = metrics(at)
    assert shown["Max concurrency per replica"] == f"{expected.plan.max_concurrency:.2f}"
    assert shown["KV bytes per token"] == "131,072"
    assert shown["Recommended layout"] == "TP1 x PP1"
    at.run()  # opening the page and rerunning it with the same inputs is no calculation
    assert not history.exists()
    at.selectbox(key="model").select("qwen2.5-72b")
    at.selectbox(key="hardware").select("a100-80gb")
    at.number_input(key="tp").set_value(4).run()
    assert not errors(at)
    expected = compute(PlannerInputs(model="qwen2.5-72b", hardware="a100-80gb", tp=4, context_len=8192))
    assert metrics(at)["Max concurrency per replica"] == f"{expected.plan.max_concurrency:.2f}"
    at.run()
    [newest] = HistoryStore(history).entries()
    assert newest.kind == "planner" and newest.inputs["tp"] == 4
    assert newest.metrics["plan.max_concurrency"] == pytest.approx(expected.plan.max_concurrency)


def test_planner_bad_input_is_a_message(history):
    at = app(planner_page)
    at.number_input(key="tp").set_value(3).run()
    assert errors(at) == ["--tp 3 is invalid for llama-3.1-8b: 32 attention heads are not divisible "
                          "by 3; valid TP sizes: 1, 2, 4, 8, 16, 32"]
    assert not at.metric
    at.number_input(key="tp").set_value(1)
    at.selectbox(key="model").select("custom config.json (paste or upload)").run()
    at.text_area(key="config_json").input("{ not json").run()
    assert errors(at)[0].startswith("config.json is not valid JSON")
    text = (Path(__file__).resolve().parents[1] / "etalon/data/models/llama-3.1-8b.json").read_text()
    at.text_area(key="config_json").input(text).run()
    assert not errors(at) and metrics(at)["KV bytes per token"] == "131,072"


def test_estimators_page(history):
    at = app(estimators_page)
    e = estimate_latency("llama-3.1-8b", "h100-sxm", tp=1, batch_size=1, prompt_len=1024, output_len=256,
                         mfu=0.5, mbu=0.7)
    assert metrics(at)["TTFT"] == f"{e.ttft_s * 1e3:.2f} ms"
    # one latency chart, then one per distributed sweep and the base scenario
    assert len([e for e in walk(at.main) if e.type == "vega_lite_chart"]) == 6
    assert not history.exists()  # the first view's defaults are not recorded
    at.number_input(key="lat_batch").set_value(8).run()
    [entry] = HistoryStore(history).entries()
    assert entry.kind == "estimate latency" and entry.inputs["batch_size"] == 8
    e8 = estimate_latency("llama-3.1-8b", "h100-sxm", tp=1, batch_size=8, prompt_len=1024, output_len=256,
                          mfu=0.5, mbu=0.7)
    assert entry.metrics["estimate.tpot_s"] == pytest.approx(e8.tpot_s)
    at.number_input(key="lat_tp").set_value(3)
    at.text_input(key="dist_seq").input("128,abc").run()
    found = errors(at)
    assert any("--tp 3 is invalid" in m for m in found)
    assert any("comma-separated integers" in m for m in found)


def test_simulator_runs_shows_the_report_and_records(history, tmp_path):
    at = app(simulator_page)
    at.text_input(key="sim_out").set_value(str(tmp_path / "sim"))
    at.number_input(key="sim_n").set_value(20)
    at.button(key="sim_run").click().run()
    assert not errors(at)
    summary = json.loads((tmp_path / "sim" / "summary.json").read_text())
    table = at.table[0].value
    shown = dict(zip(table.index if "" not in table else table[""], table["value"]))
    assert shown["requests completed"] == f"{summary['counts']['num_completed']} of 20"
    assert shown["E2E p99"] == f"{summary['latency']['e2e_latency']['p99'] * 1e3:.1f} ms"
    [page] = iframes(at)
    assert "<title>etalon report: sim</title>" in page
    [entry] = HistoryStore(history).entries()
    assert entry.kind == "simulate" and entry.result_dir == str((tmp_path / "sim").resolve())
    # settings beyond the form: a typo is named, a real key is applied
    at.text_area(key="sim_extra").input('{"bogus_key": 1}')
    at.button(key="sim_run").click().run()
    assert any("unknown key(s) bogus_key" in m for m in errors(at))
    at.text_area(key="sim_extra").input("{not json")
    at.button(key="sim_run").click().run()
    assert errors(at) == ["more settings: not valid JSON (Expecting property name enclosed in double "
                          "quotes at line 1)"]
    at.text_area(key="sim_extra").input("")
    # a model that cannot fit: a message, nothing written
    at.selectbox(key="sim_model").select("llama-3.1-405b")
    at.selectbox(key="sim_hw").select("l4")
    at.text_input(key="sim_out").set_value(str(tmp_path / "big"))
    at.button(key="sim_run").click().run()
    assert any("does not fit l4" in m for m in errors(at))
    assert len(HistoryStore(history).entries()) == 1


def test_recommend_page(history):
    at = app(recommend_page)
    at.multiselect(key="rec_hw").set_value(["h100-sxm"])
    at.multiselect(key="rec_tp").set_value([1])
    at.number_input(key="rec_n").set_value(60)
    at.button(key="rec_run").click().run()
    assert not errors(at)
    assert metrics(at)["Cheapest that meets the SLO"] == "h100-sxm TP1 x PP1 x1"
    table = at.dataframe[0].value
    assert table.loc[0, "status"] == "pass" and table.loc[0, "cost_per_hour_usd"] == pytest.approx(2.9)
    assert any(e.type == "image" for e in walk(at.main))  # the Pareto plot
    assert HistoryStore(history).entries()[0].kind == "recommend"
    # a model no chosen accelerator can hold: every layout pruned, said on the page
    at.selectbox(key="rec_model").select("llama-3.1-405b")
    at.multiselect(key="rec_hw").set_value(["l4"])
    at.button(key="rec_run").click().run()
    assert errors(at) == ["no configuration meets the SLO at this rate; see the reasons below"]
    assert at.dataframe[0].value.loc[0, "status"] == "pruned"


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    from etalon.ui.simulation import SimForm, run

    out = tmp_path_factory.mktemp("explore") / "run-a"
    run(SimForm(output_dir=str(out), num_requests=20))
    return out


def test_explorer_opens_filters_and_compares(history, sim_dir, tmp_path):
    at = app(explorer_page)
    at.text_area(key="exp_paths").input(f"{sim_dir}\n{tmp_path / 'missing'}").run()
    [problem] = errors(at)
    assert problem.startswith(f"{tmp_path / 'missing'}: not a directory")
    view = at.dataframe[0].value
    summary = json.loads((sim_dir / "summary.json").read_text())
    assert view.loc[0, "kind"] == "simulation"
    assert view.loc[0, "latency.ttft.p50"] == pytest.approx(summary["latency"]["ttft"]["p50"])
    at.button(key="exp_compare").click().run()
    assert "etalon report: run-a" in iframes(at)[0]
    at.text_input(key="exp_filter").input("no-such-folder").run()
    assert len(at.dataframe[0].value) == 0


def test_history_page_reopens_and_compares(history, sim_dir):
    from etalon.ui.planner import PlannerInputs, compute

    store = HistoryStore(history)
    for tp in (1, 2):
        result = compute(PlannerInputs(tp=tp, context_len=8192))
        store.record("planner", PlannerInputs(tp=tp).history_inputs(), result.history_outputs(),
                     label=f"tp{tp}")
    store.record("simulate", {}, json.loads((sim_dir / "summary.json").read_text()),
                 label="sim", result_dir=sim_dir)
    at = app(history_page)
    listing = at.dataframe[0].value
    assert listing["label"].tolist() == ["sim", "tp2", "tp1"]
    assert "etalon report: run-a" in iframes(at)[0]  # the newest, re-opened with its report
    at.multiselect(key="hist_compare").set_value([2, 1]).run()
    compared = at.dataframe[-1].value  # the comparison comes last
    values = compared.loc["plan.max_concurrency"].tolist()
    assert values == pytest.approx([compute(PlannerInputs(tp=t, context_len=8192)).plan.max_concurrency
                                    for t in (2, 1)])


def test_history_page_off_missing_and_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("ETALON_HISTORY", "off")
    assert "history is off" in app(history_page).info[0].value
    monkeypatch.setenv("ETALON_HISTORY", str(tmp_path / "none.sqlite"))
    assert "no calculations yet" in app(history_page).info[0].value
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 200)
    monkeypatch.setenv("ETALON_HISTORY", str(bad))
    [message] = errors(app(history_page))
    assert "not a usable etalon history file" in message and "\n" not in message

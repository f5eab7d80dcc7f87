"""Plots drawn by the helper process are the plots drawn in process, a failing plot costs one
warning line and nothing else, and what a plot shows stays a few thousand points at any size."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from etalon.metrics.summary import summarize
from etalon.records import RequestRecord
from etalon.report.downsample import MAX_POINTS
from etalon.metrics.columns import RunColumns
from etalon.report.figures import RUN_PLOTS, STREAM_PLOTS, run_specs, steps_spec
from etalon.report.files import plot_specs, write_run_outputs
from etalon.report.plot_worker import PlotWorker


def records(n: int, tokens: int = 5) -> list[RequestRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        sent = i * 0.1
        times = sent + 0.05 + np.cumsum(rng.exponential(0.01, tokens))
        out.append(RequestRecord(request_id=i, scheduled_at=sent, sent_at=sent,
                                 completed_at=float(times[-1]), chunk_times=times.tolist(),
                                 chunk_tokens=[1] * tokens, num_prompt_tokens=int(10 + i % 50),
                                 prompt_tokens_source="usage"))
    return out


def test_the_helper_draws_the_same_png_bytes_as_drawing_in_process(tmp_path):
    recs = records(300)
    summary = summarize(recs)
    inline = write_run_outputs(tmp_path / "inline", recs, summary, {})
    with PlotWorker.start() as worker:
        assert worker.parallel  # the test machine has two CPUs
        written = write_run_outputs(tmp_path / "helper", recs, summary, {}, plotter=worker)
        assert not any(k.startswith("plot/") for k in written)  # the helper names them
        before = set(multiprocessing.active_children())
        drawn = worker.finish()
        # every plot is in, and the helper is gone (stopped, not left to exit on its own)
        assert before and not before & set(multiprocessing.active_children())
    plots = {k: v for k, v in inline.items() if k.startswith("plot/")}
    assert len(plots) == 6 and drawn.keys() == plots.keys()
    for name, path in plots.items():
        assert drawn[name] == tmp_path / "helper" / "plots" / path.name
        assert drawn[name].read_bytes() == path.read_bytes(), name


def test_plots_handed_over_before_the_summary_are_not_drawn_twice(tmp_path):
    # simulate hands the plots that need no latency series to the helper before its summary;
    # writing the outputs then hands over only the rest, and every plot is drawn once
    recs = records(300)
    worker = PlotWorker()
    early = plot_specs(RunColumns.of(recs), worker, STREAM_PLOTS)
    assert set(early) == set(STREAM_PLOTS)
    worker.submit(early, tmp_path / "plots")
    submitted = []
    original = worker.submit
    worker.submit = lambda specs, out: (submitted.append(set(specs)), original(specs, out))
    write_run_outputs(tmp_path, recs, summarize(recs), {}, plotter=worker)
    assert submitted == [set(RUN_PLOTS) - set(STREAM_PLOTS)]
    assert set(worker.finish()) == {f"plot/{name}" for name in RUN_PLOTS}


@pytest.mark.parametrize("parallel", [False, True])
def test_a_plot_that_fails_is_one_warning_and_the_others_are_drawn(tmp_path, capsys, parallel):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the plots folder should be")
    good = {"ok": steps_spec([("a", np.arange(3.0), np.ones(3))], xlabel="t", ylabel="v")}
    worker = PlotWorker.start() if parallel else PlotWorker()
    with worker:
        worker.submit(good, blocked)      # mkdir under a file fails
        worker.submit(good, tmp_path / "fine")
        drawn = worker.finish()
    assert drawn == {"plot/ok": tmp_path / "fine" / "ok.png"} and drawn["plot/ok"].exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("etalon: warning: plots were not written ("), err


def test_a_large_runs_plots_hold_a_bounded_number_of_points():
    small, large = run_specs(records(200)), run_specs(records(5000, tokens=20))
    assert small.keys() == large.keys()
    for name, spec in large.items():
        # a CDF's curve through quantiles (plus the summary's percentiles), a thinned scatter,
        # binned tokens: never one point per sample
        assert spec.points <= MAX_POINTS + 10, (name, spec.points)
    assert large["tbt_cdf"].title.endswith("(n=95000)")  # the title counts every sample
    tokens = large["output_tokens_over_time"].lines[0]
    assert tokens.y[-1] == 5000 * 20  # cumulative: every token counted once in the bins


def test_cumulative_tokens_count_one_per_chunk_or_each_chunks_tokens():
    # one token per chunk takes the unweighted path; two-token chunks are weighted: worked
    # from the record counts, small (every chunk drawn) and large (binned)
    for n, tokens in ((200, 5), (5000, 20)):
        unit = run_specs(records(n, tokens))["output_tokens_over_time"].lines[0]
        doubled = records(n, tokens)
        for r in doubled:
            r.chunk_tokens = [2] * tokens
        pairs = run_specs(doubled)["output_tokens_over_time"].lines[0]
        assert unit.y[-1] == n * tokens and pairs.y[-1] == 2 * n * tokens
        np.testing.assert_array_equal(pairs.y, 2 * unit.y)
        if n * tokens <= MAX_POINTS:
            np.testing.assert_array_equal(unit.y, np.arange(1, n * tokens + 1))

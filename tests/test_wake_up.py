"""The first step after a pause: the engine charges the perf model's wake-up cost, the prefill
profiler's idle probe measures it on a server with a known one, and a profile carries it."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from etalon.calibration.prefill import fit_prefill
from etalon.engine import Engine, EngineConfig
from etalon.perf import ParametricPerfModel
from etalon.perf.profiled import ProfiledPerfModel
from etalon.prefill_profiler import main as prefill_main
from etalon.profiles import Profile, WakeUpResult, load_profile, save_profile
from etalon.server.process import LocalServer
from etalon.simulator import Replica, Simulation, make_router
from etalon.workload.request import Request

from test_calibration_fit import decode_section, prefill_meas


def test_engine_charges_the_wake_up_on_the_first_step_after_a_pause():
    # Steps cost 10 ms + 1 ms per prompt token; the first step after >= 0.5 s idle 30 ms more.
    model = ParametricPerfModel(step_overhead=0.01, per_prefill_token=1e-3, per_attention_pair=0.0,
                                per_decode_seq=0.0, per_context_token=0.0, wake_up=0.03,
                                wake_up_after=0.5)
    sim = Simulation([Replica(0, Engine(EngineConfig(), model))],
                     router=make_router("round_robin", np.random.default_rng(0)))
    res = sim.run([Request(0, 0.0, 100, 2),    # idle since start: 0.03 + 0.11, then 0.01
                   Request(1, 0.2, 100, 2),    # 0.05 s after A finished: no wake-up
                   Request(2, 2.0, 100, 2)])   # 1.67 s idle: wake-up again
    a, b, c = res.records
    np.testing.assert_allclose(a.chunk_times, [0.14, 0.15])
    np.testing.assert_allclose(b.chunk_times, [0.31, 0.32])
    np.testing.assert_allclose(c.chunk_times, [2.14, 2.15])


def test_idle_probe_recovers_a_servers_wake_up(tmp_path):
    truth = ParametricPerfModel(step_overhead=0.004, per_prefill_token=2e-5, per_attention_pair=2e-8,
                                wake_up=0.02, wake_up_after=0.3)
    truth_file = tmp_path / "truth.json"
    truth_file.write_text(json.dumps(truth.describe()))
    with LocalServer(["--perf-model-file", str(truth_file)]) as srv:
        assert prefill_main(["--server", srv.base_url, "--model", "etalon-embedded",
                             "--prefill-lengths", "256", "512", "1024", "--no-batching-probe",
                             "--idle-probe-gaps", "0", "0.1", "0.6", "1.2",
                             "--output-dir", str(tmp_path), "--no-plots"]) == 0
    section = load_profile(tmp_path / "prefill_profile.json").prefill
    w = section.wake_up
    assert w.planned_gaps_s == (0.0, 0.1, 0.6, 1.2)
    # measured idle is close to the plan (the client holds a request until the last finished)
    assert w.gaps_s[0] < 0.02 and w.gaps_s[-1] == pytest.approx(1.2, abs=0.1)
    assert w.penalty_s[:2] == pytest.approx([0.0, 0.0], abs=0.006)  # below wake_up_after
    assert w.penalty_s[2:] == pytest.approx([0.02, 0.02], abs=0.006)
    assert ProfiledPerfModel(Profile(prefill=section, decode=decode_section(noise=0.0, seed=1))
                             ).wake_up_s(float("inf")) == pytest.approx(0.02, abs=0.006)


def test_wake_up_entry_interpolates_round_trips_and_is_validated(tmp_path):
    profile = Profile(source={"model": "m"}, prefill=fit_prefill(prefill_meas(noise=0.002, seed=2)),
                      decode=decode_section(noise=0.002, seed=2))
    profile.prefill.attach(WakeUpResult(gaps_s=(0.0, 1.0, 3.0), penalty_s=(0.0, 0.04, 0.1)))
    path = save_profile(profile, tmp_path / "p.json")
    model = ProfiledPerfModel(load_profile(path))
    # linear between probed gaps, flat past the longest, nothing when back to back
    assert [model.wake_up_s(x) for x in (0.0, 0.5, 2.0, 10.0, float("inf"))] == pytest.approx(
        [0.0, 0.02, 0.07, 0.1, 0.1])
    bad = copy.deepcopy(json.loads(path.read_text()))
    bad["prefill"]["wake_up"]["gaps_s"] = [0.0, 3.0, 1.0]
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"p\.json.*prefill.*wake_up.*gaps_s.*increasing"):
        load_profile(path)
    bad["prefill"]["wake_up"] = {"gaps_s": [0.0, 1.0], "penalty_s": [0.0]}
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"penalty_s: expected 2 numbers"):
        load_profile(path)

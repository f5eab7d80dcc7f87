"""Roofline calibration: efficiency factors recovered from measurements a roofline produced."""

from __future__ import annotations

import json

import numpy as np
import pytest

from etalon.calibration.fitting import fit_section
from etalon.calibration.roofline_fit import fit_roofline, main, minimise_1d
from etalon.perf import StepBatch
from etalon.profiles import AnchorResult, JoinResult, Profile

roofline = pytest.importorskip("etalon.perf.roofline")


def synthetic_profile(truth, request_overhead: float, noise: float, seed: int) -> Profile:
    rng = np.random.default_rng(seed)
    n = np.repeat([256, 512, 1024, 2048, 4096], 3)
    ttft = np.array([truth.prefill_time(int(k)) for k in n]) + request_overhead
    ttft *= 1 + noise * rng.standard_normal(len(n))
    pre = fit_section("prefill", n.reshape(-1, 1).astype(float), ttft, n,
                      measurements={"prompt_tokens": n.tolist(), "ttft_s": ttft.tolist()})
    b = np.repeat([1, 2, 4, 8, 16, 32], 4)
    ctx = b * np.tile([200, 600, 1200, 2000], 6)
    step = np.array([truth.step_time(StepBatch.decode(int(x), int(c))) for x, c in zip(b, ctx)])
    step *= 1 + noise * rng.standard_normal(len(b))
    dec = fit_section("decode", np.column_stack([b, ctx]).astype(float), step, b,
                      measurements={"decode_batch": b.tolist(), "decode_context": ctx.tolist(),
                                    "step_time_s": step.tolist()})
    return Profile(source={"model": "llama-3.1-8b"}, prefill=pre, decode=dec)


def test_minimise_1d_finds_a_bounded_minimum():
    assert minimise_1d(lambda x: (np.log(x) - np.log(0.37)) ** 2) == pytest.approx(0.37, rel=1e-4)
    assert minimise_1d(lambda x: -x) == pytest.approx(1.0)  # at the bound


def test_fit_recovers_mfu_mbu_and_overheads():
    truth = roofline.RooflinePerfModel("llama-3.1-8b", "h100-sxm", mfu=0.42, mbu=0.63,
                                       step_overhead=0.002)
    profile = synthetic_profile(truth, request_overhead=0.003, noise=0.005, seed=1)
    start = roofline.RooflinePerfModel("llama-3.1-8b", "h100-sxm")  # mfu 0.5, mbu 0.8
    fit = fit_roofline(start, profile)
    assert fit.mfu == pytest.approx(0.42, rel=0.02)
    assert fit.mbu == pytest.approx(0.63, rel=0.02)
    assert fit.step_overhead == pytest.approx(0.002, abs=5e-4)
    assert fit.request_overhead == pytest.approx(0.003, abs=1e-3)
    assert fit.prefill_mape < 0.01 and fit.decode_mape < 0.01 and fit.at_bound == []
    before = fit_roofline(start, profile, rounds=0)
    assert before.decode_mape > 5 * fit.decode_mape  # the fit really improved on the defaults
    assert fit.to_dict()["model"]["mfu"] == pytest.approx(fit.mfu)


def test_fit_to_a_re_anchored_profile_is_the_engine_at_its_new_speed():
    # every time 1.5x: the roofline's efficiencies / 1.5, its overheads x 1.5
    from etalon.calibration.anchor import anchored

    truth = roofline.RooflinePerfModel("llama-3.1-8b", "h100-sxm", mfu=0.42, mbu=0.63,
                                       step_overhead=0.002)
    slow = anchored(synthetic_profile(truth, request_overhead=0.003, noise=0.0, seed=1),
                    {"prefill": AnchorResult(scale=1.5), "decode": AnchorResult(scale=1.5)})
    fit = fit_roofline(roofline.RooflinePerfModel("llama-3.1-8b", "h100-sxm"), slow)
    assert fit.mfu == pytest.approx(0.28, rel=0.02) and fit.mbu == pytest.approx(0.42, rel=0.02)
    assert fit.step_overhead == pytest.approx(0.003, abs=5e-4)
    assert fit.request_overhead == pytest.approx(0.0045, abs=1e-3)


def test_a_measured_join_moves_out_of_the_request_path_into_the_steps():
    # 3 ms outside the engine per request; the profile's join probe says 2 ms of it runs in the
    # step with the prompt: an isolated TTFT is unchanged, two prompts in a step cost 4 ms more
    truth = roofline.RooflinePerfModel("llama-3.1-8b", "h100-sxm", mfu=0.42, mbu=0.63,
                                       step_overhead=0.002)
    profile = synthetic_profile(truth, request_overhead=0.003, noise=0.0, seed=1)
    start = roofline.RooflinePerfModel("llama-3.1-8b", "h100-sxm")
    plain = fit_roofline(start, profile)
    profile.prefill.attach(JoinResult(per_join_s=0.002))
    joined = fit_roofline(start, profile)
    assert joined.request_overhead == pytest.approx(plain.request_overhead)
    assert joined.per_prefill_seq == pytest.approx(0.002) and plain.per_prefill_seq == 0.0
    assert joined.model.request_path == pytest.approx(plain.request_overhead - 0.002)
    assert joined.prefill_mape == pytest.approx(plain.prefill_mape)
    one = StepBatch.prefill(1024)
    assert (joined.model.request_path + joined.model.step_time(one)
            == pytest.approx(plain.model.request_path + plain.model.step_time(one)))
    two = StepBatch(1024, 2 * StepBatch.attention_pairs(512, 0), 2, 8, 8 * 600)
    assert joined.model.step_time(two) == pytest.approx(plain.model.step_time(two) + 0.004)
    decode = StepBatch.decode(8, 4800)
    assert joined.model.step_time(decode) == pytest.approx(plain.model.step_time(decode))
    assert joined.model.describe()["per_prefill_seq"] == pytest.approx(0.002)
    # a join above the whole request overhead is capped there, as the profiled model caps it
    profile.prefill.attach(JoinResult(per_join_s=0.010))
    over = fit_roofline(start, profile)
    assert over.per_prefill_seq == pytest.approx(plain.request_overhead)
    assert over.model.request_path == 0.0


def test_cli_prints_the_fit_and_rejects_unknown_hardware(tmp_path, capsys):
    from etalon.profiles import save_profile

    truth = roofline.RooflinePerfModel("llama-3.1-8b", "h100-sxm", mfu=0.5, mbu=0.7)
    path = save_profile(synthetic_profile(truth, 0.0, 0.0, 0), tmp_path / "p.json")
    assert main([str(path), "--model", "llama-3.1-8b", "--hardware", "h100-sxm"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mbu"] == pytest.approx(0.7, rel=1e-3) and printed["model"]["kind"] == "roofline"
    assert main([str(path), "--model", "llama-3.1-8b", "--hardware", "no-such-gpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("etalon.calibration.roofline_fit: error:")

"""The operator profile (what ``etalon profile ops`` writes) and the operator roofline's fit to it.

No PyTorch here: the rows' FLOPs and bytes are checked against hand-worked shapes, the fit
against timings synthesised from known constants, bad files and a missing PyTorch against their
one-line errors. Timing real kernels is tests/real_engine/test_operator_profiler_cpu.py (the
vLLM venv has PyTorch).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

from etalon.calibration.operator_profile import (
    OperatorMeasurement,
    OperatorProfile,
    fit_operator_profile,
    grid,
    load_operator_profile,
    point_kernels,
)
from etalon.cli_errors import UserError
from etalon.operator_profiler import match_hardware
from etalon.perf.base import StepBatch
from etalon.perf.operator_roofline import OperatorEfficiency, OperatorRooflinePerfModel

SMOL = {"model": "smollm2-135m", "hardware": "cpu-2core", "tp": 1, "dtype": "fp32"}


def test_rows_charge_the_hand_worked_work_of_each_operator():
    # SmolLM2-135M: hidden 576, 9 query heads and 3 KV heads of 64, MLP 1536, vocab 49152; fp32.
    model = OperatorProfile(dict(SMOL)).model()
    pre, dec = grid([16], [8], [256])
    k = point_kernels(model, pre)
    qkv_out = 576 + 2 * 3 * 64  # 960
    assert k["qkv_proj"].flops == 2 * 16 * 576 * qkv_out
    assert k["qkv_proj"].bytes == 4 * (576 * qkv_out + 16 * (576 + qkv_out))
    assert k["gate_up_proj"].flops == 2 * 16 * 576 * 2 * 1536
    assert k["attention"].flops == 16 * 17 / 2 * 4 * 9 * 64  # causal pairs, QK and PV
    assert k["lm_head"].flops == 2 * 1 * 576 * 49152  # one sampled row
    assert k["residual_add"].bytes == 3 * 16 * 576 * 4
    d = point_kernels(model, dec)
    assert d["attention"].flops == 8 * 256 * 4 * 9 * 64  # every sequence reads its 256 keys
    assert d["lm_head"].flops == 2 * 8 * 576 * 49152
    assert "tp_all_reduce" not in d  # one device: no collectives timed
    assert [p.label() for p in grid([16], [8], [256, 1024])] == ["prefill 16", "decode 8 x 256", "decode 8 x 1024"]


TRUE = OperatorEfficiency(gemm_efficiency=0.55, gemm_half_rows=30.0, attention_efficiency=0.35,
                          bandwidth_efficiency=0.6, bandwidth_half_bytes=2.0 * 2**20, kernel_floor=6e-6)


def _synthetic(eff: OperatorEfficiency, noise: float = 0.0) -> OperatorProfile:
    """Llama-3-8B on an H100, timed by the operator roofline with ``eff`` (times ``1 ± noise``
    alternately): what a profile of a GPU that follows the model would hold."""
    profile = OperatorProfile({"model": "llama-3-8b", "hardware": "h100-sxm", "tp": 1, "dtype": "bf16"})
    truth = profile.model(efficiency=eff)
    sign = 1.0
    for point in grid([1, 16, 64, 256, 1024, 4096], [1, 8, 32, 128], [512, 4096]):
        for name, k in point_kernels(truth, point).items():
            t = float(truth.seconds_each(truth.kernel_arrays([k]))[0]) * (1 + sign * noise)
            sign = -sign
            profile.measurements.append(OperatorMeasurement(
                name, k.kind, point.phase, point.tokens, point.batch, point.context,
                k.flops, k.bytes, k.rows, t, t, t, 1))
    return profile


def test_fit_recovers_the_constants_the_timings_were_made_with(tmp_path):
    path = tmp_path / "operator_profile.json"
    _synthetic(TRUE).save(path)
    fit = fit_operator_profile(load_operator_profile(path))
    for name in ("gemm_efficiency", "gemm_half_rows", "attention_efficiency",
                 "bandwidth_efficiency", "bandwidth_half_bytes", "kernel_floor"):
        assert getattr(fit.efficiency, name) == pytest.approx(getattr(TRUE, name), rel=0.01), name
    assert fit.fitted_error < 1e-3 and fit.unconstrained == []
    # the defaults (0.70 / 64 / 0.50 / 0.85 / 1 MiB / 3 us) are fast against this device
    assert fit.default_error > 0.2
    assert all(row["default_mean_signed_error"] < 0 for row in fit.per_operator.values())
    assert fit.model.describe()["efficiency"]["kernel_floor"] == pytest.approx(6e-6, rel=0.01)


def test_fit_with_measurement_noise_stays_near_the_truth():
    # +-5 % alternating noise: the constants move by about that much, not by the fit's whim
    fit = fit_operator_profile(_synthetic(TRUE, noise=0.05))
    assert fit.efficiency.gemm_efficiency == pytest.approx(0.55, rel=0.08)
    assert fit.efficiency.bandwidth_efficiency == pytest.approx(0.6, rel=0.08)
    assert fit.efficiency.attention_efficiency == pytest.approx(0.35, rel=0.08)
    assert fit.fitted_error == pytest.approx(0.05, abs=0.01)


def test_refit_writes_the_fit_and_a_perf_model_file_the_simulator_reads(tmp_path):
    _synthetic(TRUE).save(tmp_path / "p.json")
    res = subprocess.run([sys.executable, "-m", "etalon", "profile", "ops", "--refit", str(tmp_path / "p.json"),
                          "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "all" in res.stdout and "gate_up_proj" in res.stdout
    fit = json.loads((tmp_path / "out" / "operator_fit.json").read_text())
    assert fit["fitted_mean_abs_error"] < 1e-3
    model_file = tmp_path / "fitted.json"
    model_file.write_text(json.dumps(fit["model"]))
    sim = subprocess.run([sys.executable, "-m", "etalon.simulate", "--perf-model-file", str(model_file),
                          "--poisson-request-interval-generator-qps", "2", "--max-num-completed-requests", "20",
                          "--fixed-request-generator-prefill-tokens", "512",
                          "--fixed-request-generator-decode-tokens", "16", "--no-plots",
                          "--output-dir", str(tmp_path / "sim")], capture_output=True, text=True, timeout=120)
    assert sim.returncode == 0, sim.stderr
    summary = json.loads((tmp_path / "sim" / "summary.json").read_text())
    # the quickest TTFT is a prefill alone in its step: 512 tokens of Llama-3-8B at the true
    # constants (~18.5 ms of kernels, no request path in a kernel profile)
    truth = _synthetic(TRUE).model(efficiency=TRUE)
    assert summary["latency"]["ttft"]["min"] == pytest.approx(truth.step_time(StepBatch.prefill(512)), rel=0.02)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.update(kind="profile"), "not an operator profile"),
    (lambda d: d["measurements"][0].pop("median_s"), "measurements[0]: missing median_s"),
    (lambda d: d["measurements"][1].update(flops="many"), "measurements[1].flops"),
    (lambda d: d["measurements"][2].update(median_s=0), "measurements[2].median_s: must be > 0"),
    (lambda d: d["measurements"][0].update(phase="train"), "measurements[0].phase"),
    (lambda d: d.update(measurements=[]), "non-empty list"),
])
def test_a_malformed_profile_is_one_line_naming_the_field(tmp_path, mutate, needle):
    data = _synthetic(TRUE).to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="bad.json") as e:
        load_operator_profile(path)
    assert needle in str(e.value)
    res = subprocess.run([sys.executable, "-m", "etalon.operator_profiler", "--refit", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="PyTorch is installed here")
def test_without_pytorch_profiling_is_one_line_and_exit_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "etalon.operator_profiler", "--model", "smollm2-135m",
                          "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "etalon.operator_profiler: error: timing operators needs PyTorch: PyTorch is not installed "
        "(pip install torch); --refit FILE fits a profile measured elsewhere"]


def test_the_gpu_name_picks_its_catalog_entry():
    assert match_hardware("cuda", "NVIDIA H200") == "h200"
    assert match_hardware("cuda", "NVIDIA A100-SXM4-80GB") == "a100-80gb"
    assert match_hardware("cuda", "NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert match_hardware("cpu", "AMD EPYC (2 threads)") == "cpu-2core"
    with pytest.raises(UserError, match="give --hardware"):
        match_hardware("cuda", "Tesla K80")


def test_fitted_model_round_trips_through_its_description():
    fit = fit_operator_profile(_synthetic(TRUE))
    again = OperatorRooflinePerfModel.from_spec({k: v for k, v in fit.model.describe().items() if k != "kind"})
    assert asdict(again.efficiency) == pytest.approx(asdict(fit.efficiency))

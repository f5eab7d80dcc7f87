"""``etalon profile ops`` on this CPU with real PyTorch kernels (the vLLM venv's PyTorch).

SmolLM2-135M's layer shapes, a small grid: every operator is timed at every point, the times
grow with the work the way a hand count says they must, and the fitted operator roofline is
closer to the measurements than the GPU defaults and drives the simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from etalon.calibration.operator_profile import fit_operator_profile, load_operator_profile
from etalon.launchers.vllm_cpu.paths import default_venv, repo_root
from etalon.perf.base import StepBatch
from etalon.perf.operator_roofline import OperatorRooflinePerfModel

pytestmark = pytest.mark.real_engine

OPERATORS = {"norm", "qkv_proj", "rotary", "attention", "o_proj", "residual_add", "gate_up_proj",
             "activation", "down_proj", "embedding", "final_norm", "lm_head"}


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    python = default_venv() / "bin" / "python"
    if not python.exists():
        msg = f"no PyTorch venv at {python.parent.parent} (run `bash scripts/setup_vllm_cpu.sh`)"
        if os.environ.get("ETALON_REQUIRE_REAL_ENGINE") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("ops")
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    res = subprocess.run([str(python), "-m", "etalon.operator_profiler", "--model", "smollm2-135m",
                          "--device", "cpu", "--prefill-tokens", "16", "256", "1024",
                          "--decode-batch-sizes", "1", "16", "--context-lengths", "256", "1024",
                          "--repetitions", "5", "--output-dir", str(out)],
                         capture_output=True, text=True, timeout=600, env=env)
    print(res.stdout, res.stderr, file=sys.stderr)
    assert res.returncode == 0, res.stderr[-2000:]
    return out, res.stdout


def test_every_operator_is_timed_at_every_point(profiled):
    out, _ = profiled
    profile = load_operator_profile(out / "operator_profile.json")
    assert profile.source["dtype"] == "fp32" and profile.source["hardware"] == "cpu-2core"
    assert profile.source["torch"] and "threads" in profile.source["device"]
    points = {(m.phase, m.tokens, m.batch, m.context) for m in profile.measurements}
    assert len(points) == 3 + 2 * 2
    for point in points:
        ops = {m.operator for m in profile.measurements if (m.phase, m.tokens, m.batch, m.context) == point}
        assert ops == OPERATORS
    assert all(m.p10_s <= m.median_s <= m.p90_s for m in profile.measurements)


def test_times_grow_with_the_work(profiled):
    out, _ = profiled
    rows = {(m.operator, m.phase, m.tokens, m.context): m.median_s
            for m in load_operator_profile(out / "operator_profile.json").measurements}
    # 64x the rows of a GEMM whose weights (2.2-7 MB) fit no cache: at least 8x the time
    for op in ("qkv_proj", "gate_up_proj", "down_proj"):
        assert rows[(op, "prefill", 1024, 0)] > 8 * rows[(op, "prefill", 16, 0)], op
    # causal attention over 1024 tokens holds 3,855x the pairs of 16 tokens
    assert rows[("attention", "prefill", 1024, 0)] > 50 * rows[("attention", "prefill", 16, 0)]
    # decode attention of 16 sequences reads 4x the keys at context 1024 as at 256
    assert rows[("attention", "decode", 16, 1024)] > 2 * rows[("attention", "decode", 16, 256)]
    # the LM head reads its 113 MB of weights for one sampled row whatever the prompt length
    lm16, lm1024 = rows[("lm_head", "prefill", 16, 0)], rows[("lm_head", "prefill", 1024, 0)]
    assert 0.5 < lm1024 / lm16 < 2.0


def test_the_fit_beats_the_defaults_and_drives_the_simulator(profiled):
    out, stdout = profiled
    fit = json.loads((out / "operator_fit.json").read_text())
    assert fit["fitted_mean_abs_error"] < fit["default_mean_abs_error"]
    assert set(fit["per_operator"]) == OPERATORS and "all" in stdout
    again = fit_operator_profile(load_operator_profile(out / "operator_profile.json"))
    assert again.fitted_error == pytest.approx(fit["fitted_mean_abs_error"], rel=1e-6)
    model = OperatorRooflinePerfModel.from_spec({k: v for k, v in fit["model"].items() if k != "kind"})
    # a whole 256-token prefill step is 30 layers of the measured kernels plus embedding/LM head
    rows = {(m.operator, m.tokens): m.median_s
            for m in load_operator_profile(out / "operator_profile.json").measurements if m.phase == "prefill"}
    per_layer = sum(t for (op, n), t in rows.items() if n == 256 and op not in ("embedding", "final_norm", "lm_head"))
    measured_step = 30 * (per_layer + rows[("norm", 256)] + rows[("residual_add", 256)]) \
        + rows[("embedding", 256)] + rows[("final_norm", 256)] + rows[("lm_head", 256)]
    assert model.step_time(StepBatch.prefill(256)) == pytest.approx(measured_step, rel=0.5)

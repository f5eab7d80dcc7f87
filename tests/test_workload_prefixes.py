"""The shared-prefix workload: group draws, composition with the length generators, prompt text
whose first P tokens a group shares, and one-line errors naming the flag."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from etalon.cli_errors import UserError
from etalon.workload import ApproxTokenizer, PromptBuilder, WorkloadConfig, build_requests

sys.path.insert(0, str(Path(__file__).parent))

SHARED = dict(request_prefix_generator_provider="shared",
              shared_request_prefix_generator_groups=4,
              shared_request_prefix_generator_prefix_tokens=100)


def workload(**settings) -> WorkloadConfig:
    return WorkloadConfig.of(**{"max_num_completed_requests": 400, "seed": 9, **settings})


def test_prefix_prepends_to_the_length_generators_draws_and_moves_nothing_else():
    uniform = dict(request_length_generator_provider="uniform",
                   uniform_request_length_generator_min_tokens=50,
                   uniform_request_length_generator_max_tokens=300)
    plain = build_requests(workload(**uniform))
    shared = build_requests(workload(**uniform, **SHARED))
    assert [r.arrival_time for r in shared] == [r.arrival_time for r in plain]
    assert [r.prompt_tokens - 100 for r in shared] == [r.prompt_tokens for r in plain]
    assert [r.output_tokens for r in shared] == [r.output_tokens for r in plain]
    assert {r.prefix_tokens for r in shared} == {100}
    assert {r.prefix_group for r in shared} == {0, 1, 2, 3}
    assert all(r.prefix_group is None and r.prefix_tokens == 0 for r in plain)
    assert build_requests(workload(**uniform, **SHARED)) == shared  # same seed, same requests


def test_the_whole_request_stays_within_the_token_cap():
    # The length generator draws up to 1000 tokens; with a 300-token prefix under a 600 cap,
    # suffix + output are clipped to 300, so no request exceeds 600 in all.
    reqs = build_requests(workload(
        request_length_generator_provider="uniform",
        uniform_request_length_generator_min_tokens=900,
        uniform_request_length_generator_max_tokens=1000,
        request_generator_max_tokens=600,
        **{**SHARED, "shared_request_prefix_generator_prefix_tokens": 300}))
    assert max(r.prompt_tokens + r.output_tokens for r in reqs) == 600
    assert min(r.prompt_tokens for r in reqs) >= 301


@pytest.mark.parametrize("s", [0.0, 1.2])
def test_zipf_group_popularity_follows_its_law(s):
    n, groups = 40_000, 5
    reqs = build_requests(workload(max_num_completed_requests=n, **{
        **SHARED, "shared_request_prefix_generator_groups": groups,
        "shared_request_prefix_generator_popularity": "zipf",
        "shared_request_prefix_generator_zipf_s": s}))
    counts = np.bincount([r.prefix_group for r in reqs], minlength=groups)
    weights = np.arange(1, groups + 1, dtype=float) ** -s
    expected = n * weights / weights.sum()  # group 0 has rank 1
    # each count within 4 standard deviations of its binomial mean
    sd = np.sqrt(expected * (1 - expected / n))
    assert np.all(np.abs(counts - expected) < 4 * sd), (counts, expected)


def test_uniform_popularity_is_uniform():
    n = 40_000
    reqs = build_requests(workload(max_num_completed_requests=n, **SHARED))
    counts = np.bincount([r.prefix_group for r in reqs], minlength=4)
    assert np.all(np.abs(counts - n / 4) < 4 * np.sqrt(n / 4 * 0.75)), counts


def test_prompts_of_a_group_share_exactly_their_prefix_text():
    reqs = build_requests(workload(max_num_completed_requests=40, **SHARED,
                                   fixed_request_generator_prefill_tokens=30))
    builder = PromptBuilder(ApproxTokenizer(), seed=9)
    prompts = [builder.build_request(r) for r in reqs]
    assert all(len(p) == 4 * r.prompt_tokens for p, r in zip(prompts, reqs))
    heads = {}
    for p, r in zip(prompts, reqs):
        heads.setdefault(r.prefix_group, set()).add(p[:400])  # 100 tokens x 4 characters
    assert all(len(h) == 1 for h in heads.values())
    assert len({next(iter(h)) for h in heads.values()}) == 4  # groups differ
    # after the prefix, every request's text is its own from the first token on
    assert len({p[400:404] for p in prompts}) == len(prompts)
    # a fresh builder (another process, the simulator's twin) builds the same prompts
    again = PromptBuilder(ApproxTokenizer(), seed=9)
    assert [again.build_request(r) for r in reqs] == prompts
    # and requests without a group are built as before
    plain = build_requests(workload(max_num_completed_requests=3))[0]
    assert builder.build_request(plain) == builder.build(plain.prompt_tokens, plain.request_id)


@pytest.mark.parametrize("kind", ["bytelevel", "metaspace"])
def test_exact_tokenizer_prompts_share_their_first_p_token_ids(tmp_path, kind):
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    from hf_tokenizer import train_tokenizer

    from etalon.workload import load_tokenizer

    tok = load_tokenizer(str(train_tokenizer(tmp_path / kind, kind)))
    reqs = build_requests(workload(max_num_completed_requests=24, **SHARED,
                                   request_length_generator_provider="uniform",
                                   uniform_request_length_generator_min_tokens=20,
                                   uniform_request_length_generator_max_tokens=200))
    builder = PromptBuilder(tok, seed=9)
    ids = {}
    for r in reqs:
        text, counted = builder.build_counted(r.prompt_tokens, r.request_id, r.prefix_group,
                                              r.prefix_tokens)
        got = tok.encode(text)
        assert counted == len(got) == r.prompt_tokens
        ids.setdefault(r.prefix_group, set()).add(tuple(got[:100]))
    assert all(len(v) == 1 for v in ids.values()) and len(ids) == 4


@pytest.mark.parametrize("setting, value, flag", [
    ("shared_request_prefix_generator_groups", 0, "--shared-request-prefix-generator-groups"),
    ("shared_request_prefix_generator_prefix_tokens", 0,
     "--shared-request-prefix-generator-prefix-tokens"),
    ("shared_request_prefix_generator_prefix_tokens", 8191,
     "--shared-request-prefix-generator-prefix-tokens"),
    ("shared_request_prefix_generator_zipf_s", -1.0, "--shared-request-prefix-generator-zipf-s"),
    ("shared_request_prefix_generator_popularity", "pareto",
     "--shared-request-prefix-generator-popularity"),
])
def test_bad_settings_are_one_line_errors_naming_the_flag(setting, value, flag):
    with pytest.raises(UserError) as err:
        workload(**{**SHARED, setting: value}).validate()
    assert flag in str(err.value) and "\n" not in str(err.value)


def test_the_flags_reach_the_simulator_command():
    from etalon.options import config_from_args
    from etalon.simulate import build_parser
    from etalon.simulator.config import SimConfig

    ns = build_parser().parse_args([
        "--request-prefix-generator-provider", "shared",
        "--shared-request-prefix-generator-groups", "3",
        "--shared-request-prefix-generator-popularity", "zipf",
        "--shared-request-prefix-generator-zipf-s", "0.8", "--enable-prefix-caching"])
    cfg = config_from_args(SimConfig, ns)
    assert cfg.engine.enable_prefix_caching is True
    assert cfg.workload.prefixes.groups == 3 and cfg.workload.prefixes.zipf_s == 0.8

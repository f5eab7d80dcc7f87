"""vLLM's startup memory accounting, worked by hand on small made-up models.

Every expected number below is written out from the model's sizes, term by term, so a change to a
term shows up as a wrong number here; the published-log checks are in
``test_vllm_memory_validation.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from etalon.estimator import (
    ModelSpec,
    MoESpec,
    ParallelConfig,
    ServingConfig,
    kv_cache_capacity,
    load_hardware,
    plan_memory,
    weight_bytes,
)
from etalon.estimator.errors import EstimatorError
from etalon.estimator.vllm_memory import accounting_profile, cudagraph_capture_sizes

GiB = 1024**3
MiB = 1024**2
H100 = load_hardware("h100-sxm")

# h=512, I=1536, 4 layers, 8 heads of 64 (4 KV heads), vocab 1000, bf16 (2 bytes), untied head.
TINY = ModelSpec(name="tiny", model_type="llama", hidden_size=512, num_layers=4, num_heads=8,
                 num_kv_heads=4, head_dim=64, intermediate_size=1536, vocab_size=1000, max_context=4096)
# weights: per layer q 512*512 + k 512*256 + v 512*256 + o 512*512 + MLP 3*512*1536 + 2 norms of 512
# = 3,146,752; x4 layers + embedding and LM head 2*1000*512 + final norm 512 = 13,611,520 params.
TINY_WEIGHTS = 13_611_520 * 2
# 1,024 tokens, 64 sequences: the forward holds 4 hidden tensors + the MLP's gate_up and its
# activated half (3*1536 = 4608 > attention 2*8*64 + 2*4*64 = 1536):
FORWARD_1024 = 1024 * 2 * (4 * 512 + 4608)  # 13,631,488
# the sampler: the forward's hidden states + 64 x 1000 logits in bf16 + 13 fp32 scratch bytes each
SAMPLER_64 = 1024 * 512 * 2 + 64 * 1000 * (2 + 13)  # 2,008,576, smaller than the forward


def _plan(model=TINY, layout=None, **serving):
    config = ServingConfig(**{"gpu_memory_utilization": 0.5, "max_num_batched_tokens": 1024,
                              "max_num_seqs": 64, "vllm_version": "0.19", **serving})
    return plan_memory(model, H100, layout or ParallelConfig(), config=config, context_len=1024)


def test_weights_of_the_tiny_model_by_hand():
    assert weight_bytes(TINY) == TINY_WEIGHTS


def test_each_term_of_the_pool_by_hand():
    plan = _plan()
    stage = plan.stages[0]
    assert stage.weights == TINY_WEIGHTS
    assert stage.activation == FORWARD_1024 > SAMPLER_64
    assert stage.non_torch == 0.25 * GiB  # cuBLAS workspaces, vLLM 0.18-0.20
    assert stage.cuda_graph == 0  # deducted from 0.21 on only
    assert stage.kv_pool == pytest.approx(H100.memory_bytes * 0.5 - TINY_WEIGHTS - FORWARD_1024 - 0.25 * GiB)
    # KV per token: 4 layers x 2 (K, V) x 4 heads x 64 x 2 bytes = 4,096; blocks of 16 tokens
    assert stage.num_blocks == int(stage.kv_pool // (4096 * 16))


def test_a_large_vocabulary_makes_the_sampler_the_peak():
    big = replace(TINY, vocab_size=50_000)
    plan = _plan(big, max_num_seqs=512)
    # 1024 x 512 hidden states x 2 + 512 sequences x 50,000 logits x (2 + 13) bytes
    sampler = 1024 * 512 * 2 + 512 * 50_000 * 15  # 385,048,576
    assert plan.stages[0].activation == sampler
    # before 0.17 the profile sample asked for logprobs: 36 scratch bytes per logit
    old = _plan(big, max_num_seqs=512, vllm_version="0.16")
    assert old.stages[0].activation == 1024 * 512 * 2 + 512 * 50_000 * (2 + 36)
    assert old.stages[0].non_torch == 0.13 * GiB


def test_sampled_sequences_are_capped_by_the_token_budget():
    big = replace(TINY, vocab_size=50_000)
    capped = _plan(big, max_num_seqs=4096)  # only 1,024 tokens, so 1,024 sequences at most
    assert capped.stages[0].activation == 1024 * 512 * 2 + 1024 * 50_000 * 15


def test_tensor_parallel_splits_the_mlp_adds_comm_buffers_and_keeps_the_full_vocabulary():
    plan = _plan(replace(TINY, vocab_size=50_000), ParallelConfig(tp=2), max_num_seqs=512)
    stage = plan.stages[0]
    forward = 1024 * 2 * (4 * 512 + 3 * 1536 / 2)  # 8,912,896
    sampler = 1024 * 512 * 2 + 512 * 50_000 * 15  # logits are all-gathered: full vocabulary per rank
    assert stage.activation == max(forward, sampler) == sampler
    assert stage.non_torch == pytest.approx((0.25 + 1.85) * GiB)
    explicit = _plan(layout=ParallelConfig(tp=2), non_torch_gib=0.5, comm_buffer_gib=1.0)
    assert explicit.stages[0].non_torch == pytest.approx(1.5 * GiB)


def test_only_the_last_pipeline_stage_samples():
    plan = _plan(replace(TINY, vocab_size=50_000), ParallelConfig(pp=2), max_num_seqs=512)
    first, last = plan.stages
    assert first.activation == FORWARD_1024
    assert last.activation == 1024 * 512 * 2 + 512 * 50_000 * 15
    assert plan.num_blocks == min(first.num_blocks, last.num_blocks) == last.num_blocks


def test_the_moe_workspace_is_added_to_the_peak():
    moe = replace(TINY, moe=MoESpec(num_experts=8, experts_per_token=2, expert_intermediate_size=256,
                                    moe_layers=(True,) * 4))
    stage = _plan(moe).stages[0]
    # no dense MLP: the widest transient is attention, 2*8*64 + 2*4*64 = 1,536
    forward = 1024 * 2 * (4 * 512 + 1536)
    workspace = 1024 * 2 * (2 * 256 + 512) * 2  # tokens x k x (gate_up 2*I_e + output h) x 2 bytes
    assert stage.activation == max(forward, SAMPLER_64) + workspace


def test_cuda_graph_memory_by_hand():
    # 64 sequences: capture sizes up to 2 x 64 = 128: 1, 2, 4, 8, 16, ..., 128 (19 sizes); the
    # FULL decode graphs stop at 64 (11 sizes)
    assert cudagraph_capture_sizes(64, 1024) == [1, 2, 4, *range(8, 129, 8)]
    piecewise_first = 128 * 2 * (4 * 512 + 4608) + 75 * MiB  # largest batch's activations + fixed
    full_first = 64 * (8 * 64) * 4 * 32 + 4 * MiB  # 32 fp32 split-KV partials per query element
    per_graph = 0.18 * MiB * 4  # per further size and mode, 4 layers
    expected = max(piecewise_first, full_first) + (18 + 10) * per_graph
    plan = _plan(vllm_version="0.21")
    assert plan.stages[0].cuda_graph == pytest.approx(expected)
    assert plan.cuda_graph_gib * GiB == pytest.approx(expected)
    assert plan.kv_pool_gib == pytest.approx(_plan().kv_pool_gib - expected / GiB)
    eager = _plan(vllm_version="0.21", enforce_eager=True)
    assert eager.cuda_graph_gib == 0 and eager.kv_pool_gib == pytest.approx(_plan().kv_pool_gib)
    assert "enforce-eager" in eager.vllm_accounting


def test_fp32_weights_compute_in_fp32():
    plan = _plan(replace(TINY, vocab_size=50_000), max_num_seqs=512)
    fp32 = plan_memory(replace(TINY, vocab_size=50_000), H100, dtype="fp32",
                       config=ServingConfig(gpu_memory_utilization=0.5, max_num_batched_tokens=1024,
                                            max_num_seqs=512, vllm_version="0.19"), context_len=1024)
    assert fp32.stages[0].activation == 1024 * 512 * 4 + 512 * 50_000 * (4 + 13)
    assert fp32.stages[0].activation > plan.stages[0].activation


def test_kv_cache_capacity_is_the_plans_pool():
    config = ServingConfig(max_num_batched_tokens=1024, max_num_seqs=64, vllm_version="0.21")
    pool, blocks = kv_cache_capacity(TINY, H100, gpu_memory_utilization=0.5, config=config)
    plan = _plan(vllm_version="0.21")
    assert pool == pytest.approx(plan.kv_pool_gib * GiB) and blocks == plan.num_blocks


@pytest.mark.parametrize("version, since", [("0.10", (0, 10)), ("0.16.2", (0, 10)), ("v0.17.0", (0, 17)),
                                            ("0.19.1", (0, 18)), ("0.21.0rc1", (0, 21)), ("0.32", (0, 21)),
                                            ("latest", (0, 21))])
def test_a_release_picks_the_newest_profile_at_or_before_it(version, since):
    assert accounting_profile(version).since == since


@pytest.mark.parametrize("version, needle", [("0.6.5", "0.10 and later"), ("banana", "must look like")])
def test_bad_versions_are_one_line_errors(version, needle):
    with pytest.raises(EstimatorError, match=needle) as err:
        ServingConfig(vllm_version=version)
    assert "\n" not in str(err.value)


def test_negative_overrides_are_refused():
    with pytest.raises(EstimatorError, match="non_torch_gib must be >= 0"):
        ServingConfig(non_torch_gib=-1)

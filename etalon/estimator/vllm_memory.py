"""vLLM's startup memory accounting, term by term: what it reserves before the KV cache.

vLLM V1 sizes its KV cache once, at startup (``gpu_worker.Worker.determine_available_memory``):

    requested = total device memory x gpu_memory_utilization
    KV pool   = requested - weights - torch activation peak of the profile run
                - non-torch memory - CUDA-graph memory (vLLM >= 0.21)

The profile run (``gpu_model_runner.profile_run``) pushes ``max_num_batched_tokens`` dummy tokens
through the model (``_dummy_run``) and then samples ``min(max_num_seqs, max_num_batched_tokens)``
sequences from their last hidden states (``_dummy_sampler_run``); ``utils.mem_utils.
memory_profiling`` reads the torch allocator's peak increase over the loaded weights and the
memory that appeared outside torch (cuBLAS workspaces, NCCL and custom all-reduce buffers).
From 0.21 on, ``profile_cudagraph_memory`` also captures a few CUDA graphs into a throw-away KV
cache and reserves what the full set of graphs will take.

The terms are modelled from the model spec here. Where a term depends on kernel internals (the
sampler's scratch tensors, the graph pools) its constant is fitted to vLLM's own startup logs
and says so; the accounting changed between releases, so those constants come per release in
``PROFILES``. Byte counts are per device; a quantity that is only on the last pipeline stage
(the sampler) says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from etalon.estimator.dtypes import DType, get_dtype
from etalon.estimator.errors import EstimatorError
from etalon.estimator.hardware import GiB
from etalon.estimator.spec import ModelSpec

MiB = 1024**2
LATEST = "latest"


@dataclass(frozen=True)
class AccountingProfile:
    """How one range of vLLM releases accounts for non-KV memory (from ``since`` up to the next
    profile).

    ``sampler_bytes_per_logit``: scratch bytes per vocabulary entry per sampled sequence on top
    of the model-dtype logits themselves. ``non_torch_gib``: memory that appears outside torch
    during the profile run on a single device; ``comm_buffer_gib`` is added per device under
    tensor parallelism. ``reserves_cuda_graphs``: the CUDA-graph estimate is deducted.
    """

    since: tuple[int, int]
    sampler_bytes_per_logit: float
    non_torch_gib: float
    comm_buffer_gib: float
    reserves_cuda_graphs: bool
    source: str

    @property
    def label(self) -> str:
        return f"vLLM >= {self.since[0]}.{self.since[1]}"


# Each row is what vLLM's own logs show for the releases it covers (sources in docs/estimator.md).
PROFILES: tuple[AccountingProfile, ...] = (
    # Before 0.17 the profile run's sampler peaks at ~36 bytes per logit beyond the bf16 logits
    # (38.3-38.5 in all: Llama-3.1-8B, Qwen3-0.6B/14B/32B, gpt-oss), as the V1 dummy sampling
    # metadata asks for 20 logprobs (log-softmax and top-k on top of the top-k/top-p sort).
    # NCCL buffers appear inside the profiled window: +0.41 GiB per device at TP 2.
    AccountingProfile((0, 10), 36.0, 0.13, 0.41, False,
                      "llm-d-benchmark empirical-vllm-memory-results (vLLM 0.11, H100); "
                      "llm-d-planner version sweep (Qwen3-14B, v0.15/v0.16)"),
    # From 0.17 the sampler peak is 13 bytes per logit beyond the model-dtype logits (fp32
    # logits 4 + int64 sort indices 8 + a boolean mask 1; the fp32-vs-bf16 Llama runs confirm
    # the model-dtype part). Under TP ~1.85 GiB of all-reduce buffers (NVLink SHARP and custom
    # all-reduce on NVSwitch H100s) appear during the profile run.
    AccountingProfile((0, 17), 13.0, 0.13, 1.85, False,
                      "llm-d-planner version sweep (Qwen3-14B, v0.17)"),
    AccountingProfile((0, 18), 13.0, 0.25, 1.85, False,
                      "llm-d-planner accuracy logs (vLLM 0.18/0.19, H100, 50 runs)"),
    # 0.21 turns VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS on by default ("CUDA graph memory
    # profiling is enabled (default since v0.21.0)" in its startup log).
    AccountingProfile((0, 21), 13.0, 0.25, 1.85, True,
                      "vLLM 0.21 release default; graph estimate fitted to vLLM 0.19's "
                      "'Estimated CUDA graph memory' log lines"),
)

# CUDA-graph pool constants, fitted to the per-mode lines vLLM 0.19 logs ("Estimated PIECEWISE /
# FULL CUDA graph memory: X MiB first-capture + (N-1) x Y MiB per-graph") on H100.
GRAPH_POOL_FIXED = 75 * MiB  # piecewise first capture beyond the largest batch's activations
GRAPH_BYTES_PER_LAYER = 0.18 * MiB  # each further captured size, per decoder layer and mode
FULL_GRAPH_FIXED = 4 * MiB
ATTENTION_SPLITS = 32  # FlashAttention split-KV partial outputs (fp32) kept for a FULL decode graph


def parse_version(text: str) -> tuple[int, int]:
    """``"0.19"``, ``"v0.19.1"``, ``"0.21.0rc1"`` -> ``(0, 19)`` / ``(0, 21)``."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:(?:rc|dev|post|\.post|\.dev|\+)[\w.]*)?", text.strip())
    if not match:
        raise EstimatorError(f"--vllm-version must look like 0.19 or 0.19.1 (or '{LATEST}'), got '{text}'")
    return int(match.group(1)), int(match.group(2))


def accounting_profile(version: str = LATEST) -> AccountingProfile:
    """The profile of the newest release range that starts at or before ``version``."""
    if version == LATEST:
        return PROFILES[-1]
    wanted = parse_version(version)
    if wanted < PROFILES[0].since:
        first = PROFILES[0].since
        raise EstimatorError(f"--vllm-version: the memory accounting is modelled for vLLM "
                             f"{first[0]}.{first[1]} and later (the V1 engine), got '{version}'")
    return [p for p in PROFILES if p.since <= wanted][-1]


def activation_dtype_bytes(model: ModelSpec, weight: DType) -> float:
    """Bytes of one activation element: the weight dtype when it is a plain float format (vLLM's
    ``--dtype`` sets both), else the checkpoint's activation dtype (quantized weights still
    compute in bf16/fp16)."""
    return get_dtype(model.activation_dtype).bytes if weight.quantized else weight.bytes


def forward_peak_bytes(model: ModelSpec, tokens: int, tp: int, a: float) -> float:
    """Torch peak of one forward pass over ``tokens`` tokens (``_dummy_run``), MoE workspace apart.

    While one layer's widest transient is alive, four hidden-size tensors are too: the residual
    stream, its normed copy, the layer input and the output being accumulated. The widest
    transient is the attention projections (q, k, v and the attention output) or the gated MLP
    (``gate_up`` then its activated half: ``3 I / tp``); MoE layers use their shared experts'
    MLP here (the routed experts' buffers are ``moe_workspace_bytes``). Checked against vLLM
    0.19: CodeLlama-7B (vocab 32k, where the forward outweighs the sampler) 0.75 vs 0.77 GiB.
    """
    h = model.hidden_size
    attn = (2 * model.num_heads * model.head_dim + 2 * model.num_kv_heads * model.head_dim) / tp
    widest = attn
    dense_layers = model.moe is None or not all(model.moe.moe_layers)
    if dense_layers:
        widest = max(widest, (3 if model.gated_mlp else 2) * model.intermediate_size / tp)
    if model.moe is not None:
        widest = max(widest, 3 * model.moe.shared_intermediate_size / tp)
    return tokens * a * (4 * h + widest)


def moe_workspace_bytes(model: ModelSpec, tokens: int, tp: int, ep: int, a: float,
                        mxfp4_experts: bool = False) -> float:
    """The fused-MoE workspace vLLM keeps allocated after the profile forward: every token's
    ``k`` expert rows of ``gate_up`` (``2 I_e``) and of the expert outputs (``h``). Experts are
    split by TP unless EP places them whole. Qwen3-30B-A3B: 0.44 GiB on top of the sampler,
    vLLM 0.19 logs 0.48 GiB more than the dense-equivalent peak. MXFP4 checkpoints (gpt-oss)
    run their experts through OpenAI's triton kernels, which keep no such workspace: their
    logged peak is the sampler's alone (7.38 vs 7.33 GiB in vLLM 0.11, 2.87 vs 2.92 in 0.19)."""
    if model.moe is None or mxfp4_experts:
        return 0.0
    m = model.moe
    shard = 1 if ep > 1 else tp
    return tokens * m.experts_per_token * (2 * m.expert_intermediate_size / shard + model.hidden_size) * a


def sampler_peak_bytes(model: ModelSpec, tokens: int, seqs: int, a: float,
                       profile: AccountingProfile) -> float:
    """Torch peak while ``_dummy_sampler_run`` samples ``seqs`` sequences, on the last stage.

    The forward's final hidden states (``tokens x h``) are still referenced; the LM head writes
    ``seqs x vocab`` logits in the model dtype (all-gathered, so the full vocabulary on every TP
    rank) and the sampler adds ``profile.sampler_bytes_per_logit`` of fp32 scratch per logit.
    """
    return tokens * model.hidden_size * a + seqs * model.vocab_size * (a + profile.sampler_bytes_per_logit)


def profile_run_peak_bytes(model: ModelSpec, tokens: int, max_num_seqs: int, tp: int, ep: int, a: float,
                           profile: AccountingProfile, last_stage: bool = True,
                           mxfp4_experts: bool = False) -> float:
    """What ``memory_profiling`` reports as "torch peak memory increase" for one device.

    The forward and the sampler run one after the other, so the peak is the larger of the two;
    the MoE workspace persists across both. Only the last pipeline stage samples.
    ``mxfp4_experts``: the routed experts are stored in MXFP4 (no fused-MoE workspace).
    """
    peak = forward_peak_bytes(model, tokens, tp, a)
    if last_stage:
        seqs = min(max_num_seqs, tokens)
        peak = max(peak, sampler_peak_bytes(model, tokens, seqs, a, profile))
    return peak + moe_workspace_bytes(model, tokens, tp, ep, a, mxfp4_experts)


def non_torch_bytes(tp: int, profile: AccountingProfile, non_torch_gib: float | None = None,
                    comm_buffer_gib: float | None = None) -> float:
    """``non_torch_increase`` of ``memory_profiling``: memory allocated outside torch while the
    profile run executes (cuBLAS/cuBLASLt workspaces; under TP the NCCL channels, NVLink-SHARP
    and custom all-reduce buffers of the first collectives). The CUDA context and buffers that
    exist before the initial snapshot are not counted. Overrides replace the profile's values."""
    base = profile.non_torch_gib if non_torch_gib is None else non_torch_gib
    comm = profile.comm_buffer_gib if comm_buffer_gib is None else comm_buffer_gib
    return (base + (comm if tp > 1 else 0.0)) * GiB


def cudagraph_capture_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> list[int]:
    """vLLM's default capture sizes: 1, 2, 4, then steps of 8 to 256 and of 16 beyond, up to
    ``min(2 x max_num_seqs, 512, max_num_batched_tokens)`` (``CompilationConfig``)."""
    largest = min(2 * max_num_seqs, 512, max_num_batched_tokens)
    sizes = [1, 2, 4, *range(8, 256, 8), *range(256, 513, 16)]
    return [s for s in sizes if s <= largest]


def cuda_graph_bytes(model: ModelSpec, layers: int, tp: int, max_num_seqs: int, max_num_batched_tokens: int,
                     a: float) -> float:
    """What ``GPUModelRunner.profile_cudagraph_memory`` estimates for one device.

    vLLM captures the two largest sizes of each graph mode and extrapolates: the first capture
    allocates the shared pool, every further size adds what the second one added. Mixed batches
    use PIECEWISE graphs at every capture size: the pool holds the largest batch's activations
    plus fixed buffers. Uniform decode batches (up to ``max_num_seqs``) use FULL graphs whose
    pool holds FlashAttention's split-KV partial outputs (fp32, ``ATTENTION_SPLITS`` per query).
    Each further size costs ``GRAPH_BYTES_PER_LAYER`` per layer of the stage. Llama-3.1-8B on
    H100: max(138, 260) MiB + 50 x 6 + 50 x 6 MiB = 0.84 GiB logged, 0.82 GiB here.
    """
    sizes = cudagraph_capture_sizes(max_num_seqs, max_num_batched_tokens)
    if not sizes:
        return 0.0
    full = [s for s in sizes if s <= max_num_seqs]
    piecewise_first = forward_peak_bytes(model, sizes[-1], tp, a) + GRAPH_POOL_FIXED
    q_width = model.num_heads * model.head_dim / tp
    full_first = full[-1] * q_width * 4 * ATTENTION_SPLITS + FULL_GRAPH_FIXED if full else 0.0
    per_graph = GRAPH_BYTES_PER_LAYER * layers
    further = (len(sizes) - 1) + max(len(full) - 1, 0)
    return max(piecewise_first, full_first) + further * per_graph

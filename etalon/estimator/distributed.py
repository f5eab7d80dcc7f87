"""Geo-distributed pipeline inference (the Petals approach): a model's blocks spread over servers.

A client keeps the embeddings and LM head and sends hidden states through servers that each
hold a contiguous span of blocks and its KV cache. Per generated token (batch ``B``, sequence
length ``L``):

- every server computes its blocks as in the roofline: ``max(FLOPs / peak / mfu,
  bytes / bandwidth / mbu)`` with its weights plus ``B * L`` cached tokens read;
- every network hop costs ``RTT / 2 + hidden_bytes * 8 / min(upload, download)``, and every
  server copies the hidden state host->device and back over its host link;
- ``chain`` routing passes the state server to server (``N + 1`` hops); ``client`` routing
  returns to the client between servers (``2N`` hops), as early Petals did;
- the client runs the LM head on its own device.

Storage: servers hold their blocks and the KV cache of their blocks; the client holds the
embedding table, the LM head and (for fault tolerance) the hidden states it sent each server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from etalon.estimator.dtypes import get_dtype
from etalon.estimator.errors import EstimatorError
from etalon.estimator.hardware import GiB, HardwareSpec, load_hardware
from etalon.estimator.models import load_model
from etalon.estimator.shards import StageShard, resolve_dtypes, stage_shards
from etalon.estimator.spec import ModelSpec


@dataclass(frozen=True)
class NetworkSpec:
    """The client's and servers' internet links: round-trip time (ms) and bandwidths (Mbit/s)."""

    rtt_ms: float = 50.0
    upload_mbps: float = 100.0
    download_mbps: float = 100.0

    def __post_init__(self) -> None:
        if self.rtt_ms < 0 or self.upload_mbps <= 0 or self.download_mbps <= 0:
            raise EstimatorError("network: --rtt-ms must be >= 0 and bandwidths > 0")

    def hop_seconds(self, nbytes: float, efficiency: float = 1.0) -> float:
        """One transfer: half a round trip plus the bytes over the slower direction."""
        bits_per_s = min(self.upload_mbps, self.download_mbps) * 1e6 * efficiency
        return self.rtt_ms / 2e3 + nbytes * 8 / bits_per_s


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of peak compute, memory bandwidth and network bandwidth."""

    mfu: float = 1.0
    mbu: float = 1.0
    network: float = 1.0

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if not 0 < value <= 1:
                raise EstimatorError(f"{key} efficiency must be in (0, 1], got {value}")


THEORETICAL = Efficiency()


def _even_split(model: ModelSpec, servers: Sequence[HardwareSpec]) -> list[int]:
    n = len(servers)
    base, extra = divmod(model.num_layers, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _memory_split(model: ModelSpec, servers: Sequence[HardwareSpec]) -> list[int]:
    """Blocks proportional to device memory (largest remainders), at least one each."""
    mem = np.array([s.memory_bytes for s in servers])
    share = mem / mem.sum() * model.num_layers
    counts = np.maximum(np.floor(share).astype(int), 1)
    while counts.sum() < model.num_layers:
        counts[int(np.argmax(share - counts))] += 1
    while counts.sum() > model.num_layers:
        counts[int(np.argmax(counts))] -= 1
    return counts.tolist()


SPLITS: dict[str, Callable[[ModelSpec, Sequence[HardwareSpec]], list[int]]] = {
    "even": _even_split,
    "memory": _memory_split,
}

# Network hops per token for N servers.
ROUTES: dict[str, Callable[[int], int]] = {
    "chain": lambda n: n + 1,
    "client": lambda n: 2 * n,
}


@dataclass(frozen=True)
class PipelineScenario:
    """A model served by ``len(servers)`` servers holding ``blocks[i]`` blocks each."""

    model: ModelSpec
    servers: tuple[HardwareSpec, ...]
    blocks: tuple[int, ...]
    client: HardwareSpec
    network: NetworkSpec
    dtype: str
    kv_dtype: str
    batch_size: int = 1
    route: str = "chain"
    efficiency: Efficiency = THEORETICAL
    client_keeps_history: bool = True

    def shards(self) -> list[StageShard]:
        return stage_shards(self.model, 1, dtype=self.dtype, kv_dtype=self.kv_dtype,
                            layer_counts=self.blocks, include_embeddings=False)

    @property
    def hidden_bytes(self) -> float:
        """Bytes of the hidden states of one step (one token per sequence)."""
        return self.batch_size * self.model.hidden_size * get_dtype(self.model.activation_dtype).bytes

    def with_(self, **changes) -> "PipelineScenario":
        return replace(self, **changes)


def build_scenario(
    model: ModelSpec | str,
    servers: Sequence[HardwareSpec | str],
    network: NetworkSpec | None = None,
    client: HardwareSpec | str = "cpu-16core",
    dtype: str | None = None,
    kv_dtype: str | None = None,
    batch_size: int = 1,
    route: str = "chain",
    split: str = "even",
    efficiency: Efficiency = THEORETICAL,
) -> PipelineScenario:
    """A scenario with blocks assigned by ``split`` (``even`` or ``memory``)."""
    model = load_model(model)
    hw = tuple(load_hardware(s) for s in servers)
    if not hw:
        raise EstimatorError("distributed: need at least one server")
    if len(hw) > model.num_layers:
        raise EstimatorError(f"distributed: {len(hw)} servers for {model.num_layers} blocks; use at most {model.num_layers}")
    if route not in ROUTES:
        raise EstimatorError(f"unknown --route '{route}'; valid: {', '.join(ROUTES)}")
    if split not in SPLITS:
        raise EstimatorError(f"unknown --split '{split}'; valid: {', '.join(SPLITS)}")
    if batch_size < 1:
        raise EstimatorError(f"--batch-size must be positive, got {batch_size}")
    weight, kv = resolve_dtypes(model, dtype, kv_dtype)
    return PipelineScenario(
        model=model, servers=hw, blocks=tuple(SPLITS[split](model, hw)), client=load_hardware(client),
        network=network or NetworkSpec(), dtype=weight.name, kv_dtype=kv.name, batch_size=batch_size,
        route=route, efficiency=efficiency,
    )


@dataclass(frozen=True)
class TokenLatency:
    """Time of one decoding step (one token per sequence) at ``seq_len``; seconds."""

    seq_len: int
    server_compute_s: tuple[float, ...]
    client_s: float
    network_s: float
    host_copy_s: float
    total_s: float
    tokens_per_s: float

    def to_dict(self) -> dict:
        out = asdict(self)
        out["server_compute_s"] = list(self.server_compute_s)
        return out


def _roofline(flops: float, nbytes: float, hw: HardwareSpec, compute: str, eff: Efficiency) -> float:
    return max(flops / (hw.peak_flops(compute) * eff.mfu), nbytes / (hw.bandwidth_bytes_s * eff.mbu))


def token_latency(s: PipelineScenario, seq_len: int) -> TokenLatency:
    """One decoding step of the whole pipeline at sequence length ``seq_len``."""
    b = s.batch_size
    compute = get_dtype(s.dtype).compute
    per_server = []
    for shard, hw in zip(s.shards(), s.servers):
        flops = b * shard.linear_flops_per_token
        nbytes = shard.streamed_weight_bytes(b) + b * shard.kv_bytes_per_token_total
        for window, pair_flops in shard.attention_flops_per_pair.items():
            flops += b * pair_flops * (seq_len if window is None else min(seq_len, window))
        nbytes += b * shard.kv_bytes_for_context(seq_len)
        per_server.append(_roofline(flops, nbytes, hw, compute, s.efficiency))
    act = get_dtype(s.model.activation_dtype).bytes
    head = s.model.vocab_size * s.model.hidden_size
    client = _roofline(2.0 * head * b, head * act, s.client, "bf16", s.efficiency)
    hops = ROUTES[s.route](len(s.servers))
    network = hops * s.network.hop_seconds(s.hidden_bytes, s.efficiency.network)
    copies = sum(2 * s.hidden_bytes / (hw.host_bandwidth_gb_s * 1e9) for hw in s.servers)
    total = sum(per_server) + client + network + copies
    return TokenLatency(seq_len, tuple(per_server), client, network, copies, total, b / total)


def throughput_curve(s: PipelineScenario, seq_lens: Sequence[int]) -> np.ndarray:
    """Decoding throughput (tokens/s over the batch) at each sequence length."""
    return np.array([token_latency(s, int(n)).tokens_per_s for n in seq_lens])


@dataclass(frozen=True)
class StorageBreakdown:
    """Bytes held at ``seq_len``: per server weights and KV; on the client its tables and the
    hidden-state history it keeps to replay a failed server."""

    seq_len: int
    server_weights: tuple[float, ...]
    server_kv: tuple[float, ...]
    server_memory: tuple[float, ...]
    client_embedding: float
    client_lm_head: float
    client_history: float

    @property
    def fits(self) -> bool:
        return all(w + k <= m for w, k, m in zip(self.server_weights, self.server_kv, self.server_memory))

    def to_dict(self) -> dict:
        return {
            "seq_len": self.seq_len,
            "server_weights_gib": [x / GiB for x in self.server_weights],
            "server_kv_gib": [x / GiB for x in self.server_kv],
            "server_memory_gib": [x / GiB for x in self.server_memory],
            "client_embedding_gib": self.client_embedding / GiB,
            "client_lm_head_gib": self.client_lm_head / GiB,
            "client_history_gib": self.client_history / GiB,
            "fits": self.fits,
        }


def storage(s: PipelineScenario, seq_len: int) -> StorageBreakdown:
    """What every party stores when each sequence of the batch is ``seq_len`` tokens long."""
    shards = s.shards()
    act = get_dtype(s.model.activation_dtype).bytes
    table = s.model.vocab_size * s.model.hidden_size * act
    history = s.batch_size * seq_len * s.model.hidden_size * act * len(s.servers) if s.client_keeps_history else 0.0
    return StorageBreakdown(
        seq_len=seq_len,
        server_weights=tuple(sh.weight_bytes for sh in shards),
        server_kv=tuple(s.batch_size * sh.kv_bytes_for_context(seq_len) for sh in shards),
        server_memory=tuple(hw.memory_bytes for hw in s.servers),
        client_embedding=table,
        client_lm_head=0.0 if s.model.tie_word_embeddings else table,
        client_history=history,
    )

"""The Petals-style pipeline estimator."""

from __future__ import annotations

import pytest

from etalon.estimator import (
    Efficiency,
    NetworkSpec,
    build_scenario,
    load_model,
    storage,
    throughput_curve,
    token_latency,
)


def scenario(**kw):
    args = dict(model="llama-3.1-70b", servers=["rtx-4090"] * 4, network=NetworkSpec(100, 100, 100), dtype="int4")
    args.update(kw)
    return build_scenario(**args)


def test_hop_cost_is_half_rtt_plus_bytes_over_slower_link():
    net = NetworkSpec(rtt_ms=80, upload_mbps=10, download_mbps=100)
    assert net.hop_seconds(1_000_000) == pytest.approx(0.040 + 8e6 / 10e6)


def test_network_time_counts_hops_by_route():
    s = scenario()
    hidden = 8192 * 2  # bf16 hidden state of one token
    hop = 0.050 + hidden * 8 / 100e6
    assert token_latency(s, 128).network_s == pytest.approx(5 * hop)  # client -> 4 servers -> client
    assert token_latency(scenario(route="client"), 128).network_s == pytest.approx(8 * hop)


def test_blocks_cover_the_model():
    s = scenario()
    assert s.blocks == (20, 20, 20, 20)
    mixed = scenario(servers=["rtx-4090", "rtx-4060"], split="memory")
    assert sum(mixed.blocks) == 80 and mixed.blocks[0] == 60  # 24 GiB vs 8 GiB of memory


def test_throughput_falls_with_rtt_and_sequence_length_and_rises_with_bandwidth():
    lens = [128, 8192]
    slow = throughput_curve(scenario(network=NetworkSpec(200, 100, 100)), lens)
    fast = throughput_curve(scenario(network=NetworkSpec(10, 100, 100)), lens)
    assert (fast > slow).all()
    assert slow[1] <= slow[0]
    thin = throughput_curve(scenario(network=NetworkSpec(50, 1, 1)), lens)
    wide = throughput_curve(scenario(network=NetworkSpec(50, 1000, 1000)), lens)
    assert (wide > thin).all()


def test_efficiency_only_slows_things_down():
    s = scenario()
    ideal = token_latency(s, 1024)
    real = token_latency(s.with_(efficiency=Efficiency(0.5, 0.5, 0.5)), 1024)
    assert real.total_s > ideal.total_s


def test_storage_breakdown():
    s = scenario()
    model = load_model("llama-3.1-70b")
    st = storage(s, 4096)
    table = 128256 * 8192 * 2
    assert st.client_embedding == table and st.client_lm_head == table  # untied
    assert st.client_history == 4 * 4096 * 8192 * 2  # hidden states sent to each of 4 servers
    assert sum(st.server_kv) == pytest.approx(4096 * 327680)  # the whole model's KV, split by blocks
    assert storage(s, 8192).server_kv[0] == pytest.approx(2 * st.server_kv[0])
    assert sum(st.server_weights) < model.params.total  # int4 blocks, no embeddings on servers
    assert st.fits


def test_too_many_servers_is_an_error():
    from etalon.estimator import EstimatorError

    with pytest.raises(EstimatorError, match="at most 30"):
        build_scenario("smollm2-135m", ["rtx-4090"] * 31)

"""Load generation and simulated searches across a multi-node Ray cluster (two nodes, one host).

``ray.cluster_utils.Cluster`` starts a head and a second node on 127.0.0.1, each a separate
raylet with its own node id, as a real cluster would have. ``run_benchmark --ray-address``
must place its generator actors on both nodes (SPREAD), record every scheduled request exactly
once, and report each generator's clock offset from the driver (~0 here: one host clock); the
records from both nodes must share one timeline (every send at or after its slot, every first
token at least the server's programmed TTFT after its send). A capacity search with two
simulated deployments runs its searches as Ray tasks on the same cluster. The second node
declares two GPUs (Ray's bookkeeping does not look for hardware): a launched configuration that
asks for GPUs must run there, and the server its command starts must see as many devices in
``CUDA_VISIBLE_DEVICES`` as it asked for.

The cluster runs in its own processes and the commands connect to it by address, so this test
never touches the session's shared local cluster. ~40 s.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from etalon.record_table import read_records

pytestmark = pytest.mark.slow

TTFT_S, ITL_S = 0.05, 0.01  # the programmed server's delays


@pytest.fixture(scope="module")
def cluster():
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1, num_gpus=2)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def test_load_generators_spread_over_nodes_and_every_request_is_recorded_once(cluster, programmed_server, tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run(
        [sys.executable, "-m", "etalon.run_benchmark", "--no-progress", "--no-plots",
         "--ray-address", cluster.address, "--num-ray-clients", "4",
         "--server", programmed_server.base_url, "--model", "programmed",
         "--max-num-completed-requests", "40", "--poisson-request-interval-generator-qps", "20",
         "--fixed-request-generator-prefill-tokens", "16",
         "--fixed-request-generator-decode-tokens", "8", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    sync = json.loads((out / "summary.json").read_text())["run"]["clock_sync"]
    nodes = {s["node_id"] for s in sync}
    assert len(sync) == 4 and len(nodes) == 2 and None not in nodes, sync
    for s in sync:  # one host: the clocks agree within the call's own round trip (+ 50 ms)
        assert abs(s["clock_offset_s"]) <= s["clock_offset_uncertainty_s"] + 0.05, s
    records = read_records(out)
    ids = [r.request_id for r in records]
    assert sorted(ids) == list(range(40)), ids
    assert {r.client_id for r in records} == {0, 1, 2, 3}
    for r in records:
        assert r.ok and r.sent_at >= r.scheduled_at - 1e-6, r
        assert r.chunk_times[0] - r.sent_at >= TTFT_S * 0.9, r  # the server's TTFT on one timeline
        assert len(r.chunk_times) == 8 and r.completed_at >= r.chunk_times[-1]


def test_simulated_searches_run_as_tasks_on_the_cluster(cluster, tmp_path):
    job = {"slo": {"ttft_percentile": 90, "ttft_max_s": 0.5},
           "search": {"start_qps": 1, "max_qps": 40, "tolerance": 0.1},
           "num_requests": 300,
           "deployments": [
               {"name": f"tp{tp}", "simulate": {"model": "llama-3-8b", "hardware": "a100", "tp": tp,
                                                "workload": {"seed": 1}}}
               for tp in (1, 2)]}
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(job))
    res = subprocess.run([sys.executable, "-m", "etalon.capacity_search", "--config", str(cfg),
                          "--ray-address", cluster.address, "--output-dir", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "capacity.json").read_text())
    found = {name: d["capacity_qps"] for name, d in report["configurations"].items()}
    assert set(found) == {"tp1", "tp2"} and all(q > 0 for q in found.values()), found
    # two GPUs of tensor parallelism serve at least what one does
    assert found["tp2"] >= found["tp1"] * 0.95, found


def test_launched_configurations_get_the_gpus_they_ask_for(cluster, tmp_path):
    # A `command` deployment: a shell that notes the devices it was given and then runs the
    # embedded server on the port the job picked.
    def deployment(name: str, gpus: int) -> dict:
        note = tmp_path / f"{name}.devices"
        command = (f"sh -c 'echo \"$CUDA_VISIBLE_DEVICES\" > {note}; exec {sys.executable} -m "
                   "etalon.serve --host {host} --port {port}'")
        return {"name": name, "resources": {"gpus": gpus, "cpus": 0},
                "launch": {"kind": "command", "model": "etalon-embedded", "command": command,
                           "startup_timeout_s": 120}}

    job = {"slo": {"ttft_percentile": 90, "ttft_max_s": 5.0},
           "search": {"start_qps": 2, "max_qps": 2, "max_probes": 1},
           "num_requests": 10,
           "workloads": {"short": {"fixed_request_generator_prefill_tokens": 32,
                                   "fixed_request_generator_decode_tokens": 4}},
           "deployments": [deployment("two", 2), deployment("one", 1)]}
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump(job))
    res = subprocess.run([sys.executable, "-m", "etalon.capacity_search", "--config", str(cfg),
                          "--ray-address", cluster.address, "--no-plots",
                          "--output-dir", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "capacity.json").read_text())["configurations"]
    assert {n: c["capacity_qps"] for n, c in report.items()} == {"two": 2.0, "one": 2.0}
    devices = {n: (tmp_path / f"{n}.devices").read_text().split()[0].split(",") for n in report}
    assert len(devices["two"]) == 2 and len(devices["one"]) == 1, devices
    assert set(devices["two"]) == {"0", "1"} and devices["one"][0] in {"0", "1"}

"""``python -m etalon.estimate``: the flags generated from the subcommand configs.

The flag names each subcommand had when they were written by hand are frozen below: a
subcommand may gain flags, but renaming or dropping one must be a deliberate edit of this list.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from etalon.engine.config import EngineConfig
from etalon.estimate import COMMANDS, SUBCOMMANDS, build_parser, main
from etalon.estimator.command_configs import DistributedConfig, LatencyConfig, MemoryConfig
from etalon.estimator.deployment_config import DeploymentConfig
from etalon.estimator.memory import ServingConfig
from etalon.options import config_from_args, to_mapping
from etalon.perf.config import RooflineEfficiency

_DEVICE = ["--batch-size", "--block-size", "--context-len", "--dp", "--dtype", "--ep",
           "--gpu-memory-utilization", "--hardware", "--help", "--json", "--kv-dtype",
           "--max-num-batched-tokens", "--max-num-seqs", "--model", "--output-dir", "--pp", "--tp",
           "-h"]

# The flags of each subcommand before they were generated from configs (etalon.estimate as of
# e6c00a8). Never remove a name from these lists without meaning to break users' scripts.
FROZEN_FLAGS: dict[str, list[str]] = {
    "memory": _DEVICE,
    "latency": _DEVICE + ["--mbu", "--mfu", "--micro-batches", "--output-len", "--step-overhead-ms"],
    "plan": _DEVICE + ["--concurrency", "--devices-per-node"],
    "distributed": ["--bandwidth-mbps", "--batch-size", "--client-hardware", "--download-mbps",
                    "--dtype", "--hardware", "--help", "--json", "--kv-dtype", "--mbu", "--mfu",
                    "--model", "--network-efficiency", "--output-dir", "--route", "--rtt-ms",
                    "--seq-lens", "--server-hardware", "--servers", "--split",
                    "--sweep-bandwidth-mbps", "--sweep-hardware", "--sweep-rtt-ms",
                    "--sweep-servers", "--upload-mbps", "-h"],
    "catalog": ["--help", "--json", "-h"],
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flags(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


def _config(name: str, *argv: str):
    sub = COMMANDS[name]
    ns = build_parser().parse_args([name, *argv])
    return config_from_args(sub.config, ns)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etalon.estimate", *args], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=60)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("etalon.estimate: error: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("name", sorted(FROZEN_FLAGS))
def test_flag_set_is_a_superset_of_the_frozen_one(name):
    missing = set(FROZEN_FLAGS[name]) - _flags(_subparsers()[name])
    assert not missing, f"{name} lost flag(s) {sorted(missing)}"


def test_every_subcommand_is_listed_for_reuse():
    assert [s.name for s in SUBCOMMANDS] == list(FROZEN_FLAGS)
    assert set(_subparsers()) == set(FROZEN_FLAGS)
    for sub in SUBCOMMANDS:
        assert callable(sub.run) and sub.help and hasattr(sub.config, "validate")


def test_vllm_spellings_set_the_engine_fields():
    cfg = _config("memory", "--model", "m", "--hardware", "h", "--max-num-seqs", "7",
                  "--max-num-batched-tokens", "512", "--block-size", "32",
                  "--gpu-memory-utilization", "0.5")
    assert (cfg.engine.max_batch_size, cfg.engine.max_batched_tokens, cfg.engine.block_size) == (7, 512, 32)
    assert cfg.serving() == ServingConfig(gpu_memory_utilization=0.5, block_size=32,
                                          max_num_batched_tokens=512, max_num_seqs=7)
    # EngineConfig's own names are the same settings.
    assert _config("memory", "--max-batch-size", "9").engine.max_batch_size == 9
    # Settings the estimator has no use for are not flags (nor file keys).
    flags = _flags(_subparsers()["memory"])
    assert not {"--scheduler", "--chunk-size", "--num-kv-blocks", "--batch-window"} & flags
    assert "scheduler" not in to_mapping(MemoryConfig())


def test_defaults_come_from_the_shared_configs():
    engine, deployment, roofline = EngineConfig(), DeploymentConfig(), RooflineEfficiency()
    serving = MemoryConfig().serving()
    assert (serving.block_size, serving.max_num_batched_tokens, serving.max_num_seqs) == \
        (engine.block_size, engine.max_batched_tokens, engine.max_batch_size)
    assert ServingConfig() == serving
    assert serving.gpu_memory_utilization == deployment.gpu_memory_utilization == 0.9
    assert LatencyConfig().efficiency == roofline
    assert (roofline.mfu, roofline.mbu, roofline.step_overhead_ms) == (0.5, 0.8, 0.5)
    assert (DistributedConfig().efficiency.mfu, DistributedConfig().efficiency.mbu) == (0.5, 0.8)
    assert "--step-overhead-ms" not in _flags(_subparsers()["distributed"])


def test_distributed_lists_and_hardware_alias():
    cfg = _config("distributed", "--model", "m", "--hardware", "rtx-3090,rtx-4090",
                  "--seq-lens", "128,256", "--sweep-rtt-ms", "5,10.5")
    assert cfg.server_hardware == ["rtx-3090", "rtx-4090"]
    assert cfg.seq_lens == [128, 256] and cfg.sweep_rtt_ms == [5.0, 10.5]
    assert DistributedConfig().seq_lens == [128, 256, 512, 1024, 2048, 4096, 8192]


def test_kv_dtype_auto_is_the_activation_dtype(capsys):
    plans = []
    for extra in ([], ["--kv-dtype", "auto"], ["--kv-dtype", "bf16"]):
        assert main(["memory", "--model", "llama-3.1-8b", "--hardware", "h100-sxm",
                     "--context-len", "4096", "--json", *extra]) == 0
        plans.append(json.loads(capsys.readouterr().out)["plan"])
    assert plans[0] == plans[1] == plans[2]
    assert plans[0]["kv_dtype"] == "bf16"


def test_config_file_then_flags(tmp_path, capsys):
    path = tmp_path / "memory.yaml"
    path.write_text("model: llama-3.1-8b\nhardware: h100-sxm\ncontext-len: 4096\ntp: 4\n")
    assert main(["memory", "--config", str(path), "--tp", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert (plan["context_len"], plan["layout"]["tp"]) == (4096, 2)


def test_missing_model_is_one_line_exit_2():
    assert_one_line_error(run_cli("memory", "--hardware", "h100-sxm"),
                          "the following arguments are required: --model")
    assert_one_line_error(run_cli("distributed"), "required: --model")


def test_wrong_type_is_one_line_exit_2(tmp_path):
    assert_one_line_error(run_cli("latency", "--model", "llama-3.1-8b", "--hardware", "h100-sxm",
                                  "--tp", "two"), "--tp", "invalid int value")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"model": "llama-3.1-8b", "hardware": "h100-sxm", "concurrency": "many"}))
    assert_one_line_error(run_cli("plan", "--config", str(path)), "concurrency", "expected an integer")


def test_config_file_mistakes_are_one_line(tmp_path, capsys):
    cases = [("scheduler: sarathi\n", "unknown key(s) scheduler"),
             ("model: llama-3.1-8b\nseq_lens: [0, 5]\n", "--seq-lens: expected positive integers"),
             ("model: llama-3.1-8b\nroute: nowhere\n", "unknown --route 'nowhere'")]
    for i, (text, needle) in enumerate(cases):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(text)
        assert main(["distributed" if i else "memory", "--config", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err

"""Typed settings: one field is one flag and one file key; files and flags layer over defaults;
mistakes are one line naming the file and the key."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from etalon.engine.config import EngineConfig
from etalon.options import (
    ConfigError,
    add_options,
    apply_namespace,
    config_from_args,
    from_mapping,
    to_mapping,
)
from etalon.run_benchmark import BenchmarkConfig
from etalon.simulator.config import SimConfig


def parse(cls, *argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    add_options(parser, cls)
    return parser.parse_args(list(argv))


def test_defaults_then_file_then_flags(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text("tp: 2\nscheduler: sarathi\nmax-batched-tokens: 512\n"
                    "workload:\n  poisson_request_interval_generator_qps: 3\n  seed: 5\n")
    cfg = config_from_args(SimConfig, parse(SimConfig, "--config", str(path), "--tp", "4",
                                            "--seed", "9"))
    assert cfg.deployment.tp == 4  # the flag beats the file
    assert cfg.engine.scheduler == "sarathi" and cfg.engine.max_batched_tokens == 512  # file
    assert cfg.workload.interval.qps == 3.0 and cfg.workload.seed == 9
    assert cfg.engine.max_batch_size == 256 and cfg.deployment.pp == 1  # defaults
    assert cfg.outputs.output_dir == "simulator_output"  # the command's own default


def test_vllm_spellings_are_aliases_of_the_engine_fields():
    ns = parse(EngineConfig, "--max-num-seqs", "7", "--max-num-batched-tokens", "99")
    cfg = apply_namespace(EngineConfig(), ns)
    assert (cfg.max_batch_size, cfg.max_batched_tokens) == (7, 99)


def test_unknown_key_and_wrong_type_name_the_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^sim\.yaml: unknown key\(s\) tpp; valid: .*tp"):
        from_mapping(SimConfig, {"tpp": 2}, "sim.yaml")
    with pytest.raises(ConfigError, match=r"^sim\.yaml: tp: expected an integer, got 'two'$"):
        from_mapping(SimConfig, {"tp": "two"}, "sim.yaml")
    with pytest.raises(ConfigError, match=r"^sim\.yaml: workload: unknown key\(s\) qps"):
        from_mapping(SimConfig, {"workload": {"qps": 2}}, "sim.yaml")
    with pytest.raises(ConfigError, match=r"workload: seed: expected an integer, got 1.5"):
        from_mapping(SimConfig, {"workload": {"seed": 1.5}}, "sim.yaml")
    cfg = from_mapping(SimConfig, {"mfu": 1, "no_plots": "yes"}, "sim.yaml")
    assert cfg.perf.efficiency.mfu == 1.0 and isinstance(cfg.perf.efficiency.mfu, float)
    assert cfg.outputs.no_plots is True


def test_a_file_round_trips_through_to_mapping():
    cfg = from_mapping(BenchmarkConfig, {"num_ray_clients": 3, "server": "local",
                                         "workload": {"request_length_generator_provider": "zipf",
                                                      "zipf_request_length_generator_theta": 1.2}},
                       "b.yaml")
    again = from_mapping(BenchmarkConfig, to_mapping(cfg), "again")
    assert again == cfg
    assert again.workload.lengths.theta == 1.2 and again.load.num_ray_clients == 3


def test_bool_flags_take_an_optional_value_and_negatable_ones_a_no_form():
    cfg = apply_namespace(BenchmarkConfig(), parse(BenchmarkConfig, "--no-ray",
                                                   "--no-should-use-given-dir"))
    assert cfg.load.no_ray is True and cfg.outputs.should_use_given_dir is False
    cfg = apply_namespace(BenchmarkConfig(), parse(BenchmarkConfig, "--no-ray", "false"))
    assert cfg.load.no_ray is False


def test_help_shows_each_commands_defaults():
    text = argparse.ArgumentParser()
    add_options(text, SimConfig)
    help_text = " ".join(text.format_help().split())
    assert "where results go (default: simulator_output)" in help_text
    assert "batching policy (default: vllm)" in help_text


def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("scheduler: sarathi\nmax_batch_size: lots\n")
    res = subprocess.run([sys.executable, "-m", "etalon", "simulate", "--config", str(path)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip() == (f"etalon.simulate: error: {path}: max_batch_size: expected an "
                                  f"integer, got 'lots'")

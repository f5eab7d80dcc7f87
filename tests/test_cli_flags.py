"""The flag set of every command is frozen here, so renaming or dropping a flag is a deliberate
act (users' scripts and job files name them). ``etalon <command>`` and its module entry point
build the same parser. The estimator's subcommands are frozen in test_estimator_cli_flags.py."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from etalon.commands import SUBCOMMANDS

FLAGS = {
    'etalon.run_benchmark': [
        '--additional-sampling-params',
        '--closed-loop-request-interval-generator-think-time-s',
        '--closed-loop-request-interval-generator-users', '--config',
        '--dataset-request-length-generator-conversations',
        '--dataset-request-length-generator-dataset-file',
        '--dataset-request-length-generator-dataset-tokenizer',
        '--fixed-request-generator-decode-tokens',
        '--fixed-request-generator-prefill-tokens', '--gamma-request-interval-generator-cv',
        '--gamma-request-interval-generator-qps', '--idle-timeout', '--interval-level',
        '--llm-api', '--max-num-completed-requests', '--model', '--no-ignore-eos',
        '--no-plots', '--no-progress', '--no-ray', '--no-report',
        '--no-should-use-given-dir', '--no-should-write-metrics',
        '--num-concurrent-requests-per-client', '--num-ray-clients', '--num-repeats',
        '--output-dir', '--poisson-request-interval-generator-qps', '--prefill-profile',
        '--ray-address', '--repeat-same-seed', '--request-generator-max-tokens',
        '--request-interval-generator-provider', '--request-length-generator-provider',
        '--request-prefix-generator-provider', '--request-timeout',
        '--require-exact-output-lengths', '--seed', '--server', '--server-args',
        '--server-metrics-interval', '--server-metrics-url', '--session-think-time-s',
        '--session-turns', '--shared-request-prefix-generator-groups',
        '--shared-request-prefix-generator-popularity',
        '--shared-request-prefix-generator-prefix-tokens',
        '--shared-request-prefix-generator-zipf-s', '--should-use-given-dir',
        '--should-write-metrics', '--tbt-deadline', '--timeout', '--tokenizer',
        '--trace-request-interval-generator-time-scale-factor',
        '--trace-request-interval-generator-trace-file',
        '--trace-request-length-generator-cycle',
        '--trace-request-length-generator-decode-scale-factor',
        '--trace-request-length-generator-prefill-scale-factor',
        '--trace-request-length-generator-trace-file', '--ttft-deadline', '--ttft-slack',
        '--uniform-request-length-generator-max-tokens',
        '--uniform-request-length-generator-min-tokens',
        '--uniform-request-length-generator-prefill-to-decode-ratio', '--wandb-group',
        '--wandb-project', '--wandb-run-name', '--zipf-request-length-generator-max-tokens',
        '--zipf-request-length-generator-min-tokens',
        '--zipf-request-length-generator-prefill-to-decode-ratio',
        '--zipf-request-length-generator-scramble', '--zipf-request-length-generator-theta',
    ],
    'etalon.simulate': [
        '--batch-window', '--block-size', '--chunk-size',
        '--closed-loop-request-interval-generator-think-time-s',
        '--closed-loop-request-interval-generator-users', '--config',
        '--dataset-request-length-generator-conversations',
        '--dataset-request-length-generator-dataset-file',
        '--dataset-request-length-generator-dataset-tokenizer', '--decode-hardware',
        '--decode-replicas', '--decode-tp', '--disaggregated', '--dtype', '--duration',
        '--enable-prefix-caching', '--fixed-request-generator-decode-tokens',
        '--fixed-request-generator-prefill-tokens', '--gamma-request-interval-generator-cv',
        '--gamma-request-interval-generator-qps', '--gpu-memory-utilization', '--hardware',
        '--interval-level', '--interval-seed', '--interval-sources', '--intervals',
        '--kv-bytes-per-token', '--kv-dtype', '--max-batch-size', '--max-batched-tokens',
        '--max-num-batched-tokens', '--max-num-completed-requests', '--max-num-seqs',
        '--mbu', '--mfu', '--model', '--no-plots', '--no-report',
        '--no-should-use-given-dir', '--num-kv-blocks', '--num-replicas', '--output-dir',
        '--perf-model-file', '--perf-model-kind',
        '--poisson-request-interval-generator-qps', '--pp', '--prefill-hardware',
        '--prefill-replicas', '--prefill-tp', '--profile', '--replay',
        '--request-generator-max-tokens', '--request-interval-generator-provider',
        '--request-length-generator-provider', '--request-prefix-generator-provider',
        '--router', '--scheduler', '--seed', '--session-think-time-s', '--session-turns',
        '--shared-request-prefix-generator-groups',
        '--shared-request-prefix-generator-popularity',
        '--shared-request-prefix-generator-prefix-tokens',
        '--shared-request-prefix-generator-zipf-s', '--should-use-given-dir',
        '--step-overhead-ms', '--tbt-deadline', '--tp',
        '--trace-request-interval-generator-time-scale-factor',
        '--trace-request-interval-generator-trace-file',
        '--trace-request-length-generator-cycle',
        '--trace-request-length-generator-decode-scale-factor',
        '--trace-request-length-generator-prefill-scale-factor',
        '--trace-request-length-generator-trace-file', '--transfer-bandwidth',
        '--transfer-latency', '--ttft-deadline',
        '--uniform-request-length-generator-max-tokens',
        '--uniform-request-length-generator-min-tokens',
        '--uniform-request-length-generator-prefill-to-decode-ratio', '--warm-up',
        '--zipf-request-length-generator-max-tokens',
        '--zipf-request-length-generator-min-tokens',
        '--zipf-request-length-generator-prefill-to-decode-ratio',
        '--zipf-request-length-generator-scramble', '--zipf-request-length-generator-theta',
    ],
    'etalon.serve': [
        '--batch-window', '--block-size', '--chunk-size', '--enable-prefix-caching',
        '--host', '--max-batch-size', '--max-batched-tokens', '--max-num-batched-tokens',
        '--max-num-seqs', '--max-queue', '--mbu', '--mfu', '--model', '--num-kv-blocks',
        '--perf-model-file', '--perf-model-kind', '--port', '--profile', '--scheduler',
        '--step-overhead-ms', '--tokenizer',
    ],
    'etalon.validate': [
        '--batch-window', '--block-size', '--chunk-size', '--enable-prefix-caching',
        '--interval-level', '--interval-seed', '--interval-sources', '--intervals',
        '--max-batch-size', '--max-batched-tokens', '--max-num-batched-tokens',
        '--max-num-seqs', '--num-kv-blocks', '--output-dir', '--profile', '--requests',
        '--roofline-dtype', '--roofline-hardware', '--roofline-model', '--scheduler',
    ],
    'etalon.prefill_profiler': [
        '--additional-sampling-params', '--batching-probe-length',
        '--batching-probe-prompts', '--context-probe-prefixes', '--context-probe-suffix',
        '--cv-folds', '--fixed-request-generator-decode-tokens', '--hardware', '--idle-probe-gaps', '--idle-probe-length',
        '--idle-probe-repetitions', '--idle-timeout', '--join-probe-decode-tokens',
        '--join-probe-decoders', '--join-probe-length', '--llm-api',
        '--max-extrapolation-error', '--merge-into', '--model', '--no-batching-probe',
        '--no-idle-probe', '--no-ignore-eos', '--no-plots', '--no-should-use-given-dir',
        '--num-repetitions', '--num-warmup-requests', '--output-dir', '--prefill-lengths',
        '--request-timeout', '--require-exact-output-lengths', '--seed', '--server',
        '--server-args', '--should-use-given-dir', '--timeout', '--tokenizer',
    ],
    'etalon.decode_profiler': [
        '--additional-sampling-params', '--batch-sizes', '--bins-per-level', '--cv-folds',
        '--fixed-request-generator-decode-tokens', '--hardware', '--idle-timeout',
        '--llm-api', '--max-extrapolation-error', '--merge-into', '--model',
        '--no-ignore-eos', '--no-plots', '--no-should-use-given-dir', '--no-warmup',
        '--num-repetitions', '--output-dir', '--prompt-lengths', '--request-timeout',
        '--require-exact-output-lengths', '--seed', '--server', '--server-args',
        '--should-use-given-dir', '--timeout', '--tokenizer',
    ],
    'etalon.anchor_profile': [
        '--additional-sampling-params', '--hardware', '--idle-timeout', '--llm-api',
        '--model', '--no-ignore-eos', '--num-requests', '--output', '--output-tokens',
        '--profile', '--prompt-tokens', '--records', '--request-timeout',
        '--require-exact-output-lengths', '--seed', '--server', '--server-args',
        '--timeout', '--tokenizer',
    ],
    'etalon.context_profile': [
        '--additional-sampling-params', '--hardware', '--idle-timeout', '--llm-api', '--model',
        '--no-ignore-eos', '--num-repetitions', '--output', '--prefixes', '--profile',
        '--records', '--request-timeout', '--require-exact-output-lengths', '--seed',
        '--server', '--server-args', '--suffix-tokens', '--timeout', '--tokenizer',
    ],
    'etalon.capacity_search.__main__': [
        '--config', '--no-plots', '--no-ray', '--no-report', '--output-dir',
        '--ray-address', '--simulate', '--wandb-project',
    ],
    'etalon.report.__main__': [
        '--output', '--title',
    ],
    'etalon.validation.__main__': [
        '--doc', '--job', '--loads', '--num-requests', '--output-dir', '--profile',
        '--save-profile',
    ],
    'etalon.ui.__main__': [
        '--desktop', '--history', '--host', '--port',
    ],
    'etalon.calibration.merge': [
        '--force', '--output',
    ],
    'etalon.calibration.roofline_fit': [
        '--dtype', '--hardware', '--keep-overhead', '--kind', '--kv-dtype', '--model',
        '--pp', '--tp',
    ],
}


def flags_of(module: str) -> list[str]:
    parser = importlib.import_module(module).build_parser()
    return sorted(k for k in parser._option_string_actions if k.startswith("--") and k != "--help")


@pytest.mark.parametrize("module", sorted(FLAGS))
def test_flag_set_is_frozen(module):
    assert flags_of(module) == FLAGS[module]


def _modules(table) -> list[tuple[list[str], str]]:
    out = []
    for name, entry in table.items():
        if isinstance(entry, dict):
            out += [([name, *words], module) for words, module in _modules(entry)]
        else:
            out.append(([name], entry[0]))
    return out


@pytest.mark.parametrize("words,module", _modules(SUBCOMMANDS))
def test_etalon_subcommand_has_the_modules_flags(words, module):
    def help_flags(argv: list[str]) -> set[str]:
        out = subprocess.run([sys.executable, *argv, "-h"], capture_output=True, text=True,
                             check=True).stdout
        return {w.strip("[],") for w in out.split() if w.startswith(("--", "[--"))}

    sub = ["latency"] if module == "etalon.estimate" else []  # a command group: one of its own
    via_etalon = help_flags(["-m", "etalon", *words, *sub])
    via_module = help_flags(["-m", module.removesuffix(".__main__"), *sub])
    assert via_etalon == via_module and len(via_etalon) >= 3  # --help and its own


def test_etalon_lists_its_commands():
    out = subprocess.run([sys.executable, "-m", "etalon", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for name in ("bench", "simulate", "estimate", "serve", "profile", "validate", "search"):
        assert f"  {name}" in out
    res = subprocess.run([sys.executable, "-m", "etalon", "benchmark"], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "unknown command 'benchmark'" in res.stderr


@pytest.mark.parametrize("env, expected", [(None, False), ("1", True)])
def test_commands_turn_numpys_huge_pages_off_unless_the_user_chose(env, expected):
    # numpy's setter returns the setting it replaces: what the command left in place
    code = ("from etalon.commands import no_transparent_hugepages\n"
            "from numpy._core.multiarray import _set_madvise_hugepage\n"
            "no_transparent_hugepages()\n"
            "print(_set_madvise_hugepage(True))")
    environ = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env is not None:
        environ["NUMPY_MADVISE_HUGEPAGE"] = env
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(expected)

"""The validation job file is strict, and the command checks a user's mistakes before vLLM starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from etalon.cli_errors import UserError
from etalon.launchers.vllm_cpu import VllmSchedulerSettings
from etalon.validation.__main__ import main
from etalon.validation.job import load_job

JOB = Path(__file__).resolve().parents[1] / "validation" / "vllm_cpu_smollm2.yaml"


def _job_file(tmp_path: Path, edit) -> Path:
    """A copy of the shipped job, changed by ``edit(data)``."""
    data = yaml.safe_load(JOB.read_text())
    edit(data)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_job_loads_with_the_loop_s_numbers():
    job = load_job(JOB)
    assert job.hardware == "cpu-2core"
    assert job.prefill.lengths == (1, 4, 16, 32, 64, 96, 128, 192, 256, 384)
    assert (job.prefill.repetitions, job.prefill.batching_probe_length, job.prefill.batching_probe_prompts,
            job.prefill.join_probe_length) == (5, 256, 3, 128)
    assert (job.decode.batch_sizes, job.decode.prompt_lengths, job.decode.output_tokens,
            job.decode.repetitions) == ((1, 2, 4, 8), (64, 256), 32, 3)
    assert (job.anchor.prompt_tokens, job.anchor.output_tokens, job.anchor.num_requests) == (128, 25, 5)
    assert (job.num_requests, job.loads, job.capacity_streams, job.tolerance, job.seed) == (30, (0.3, 0.6), 4, 0.15, 1)
    assert job.settings == VllmSchedulerSettings()
    wl = job.workload_config(request_interval_generator_provider="static", max_num_completed_requests=64)
    assert (wl.request_length_generator_provider, wl.lengths.min_tokens, wl.lengths.max_tokens,
            wl.lengths.prefill_to_decode_ratio) == ("uniform", 112, 224, 6)
    assert (wl.request_interval_generator_provider, wl.seed, wl.max_num_completed_requests) == ("static", 1, 64)
    assert job.with_overrides(num_requests=10, loads=[0.5]).loads == (0.5,)


def test_server_section_overrides_the_launcher_settings(tmp_path):
    job = load_job(_job_file(tmp_path, lambda d: d.update(server={"max_num_seqs": 8, "dtype": "bfloat16"})))
    assert job.settings == VllmSchedulerSettings(max_num_seqs=8, dtype="bfloat16")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(colour="red"), ": unknown key(s) colour; valid: anchor, capacity_streams"),
    (lambda d: d["prefill"].update(lenghts=[1]), ": prefill: unknown key(s) lenghts; valid:"),
    (lambda d: d["server"].update(max_num_seq=4), ": server: unknown key(s) max_num_seq; valid:"),
    (lambda d: d["workload"].update(uniform_min=3), ": workload: unknown key(s) uniform_min; valid:"),
    (lambda d: d["workload"].update(seed=3), ": workload: seed set by the loop"),
    (lambda d: d["prefill"].update(lengths=[16, 0]), ": prefill: lengths[1]: must be >= 1, got 0"),
    (lambda d: d["decode"].update(repetitions="three"), ": decode: repetitions: expected an integer, got 'three'"),
    (lambda d: d.update(loads=[0.3, 1.5]), ": loads[1]: a fraction of the capacity must be in (0, 1), got 1.5"),
    (lambda d: d.update(tolerance=0), ": tolerance: must be in (0, 1), got 0"),
    (lambda d: d.update(prefill=[1]), ": prefill: expected a mapping"),
    (lambda d: d["anchor"].update(num_requests=1), ": anchor: num_requests: must be >= 2, got 1"),
    (lambda d: d["server"].update(max_num_seqs=0), ": server: max_num_seqs must be >= 1, got 0"),
    (lambda d: d["server"].update(max_num_seqs="8"), ": server: max_num_seqs: expected an integer"),
    (lambda d: d["workload"].update(uniform_request_length_generator_min_tokens=500),
     ": workload: --uniform-request-length-generator-min-tokens (500) must be <="),
])
def test_unknown_keys_and_bad_values_are_one_line_errors_naming_file_and_field(tmp_path, edit,
                                                                              message):
    path = _job_file(tmp_path, edit)
    with pytest.raises(UserError) as err:
        load_job(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_a_key_left_out_keeps_the_shipped_value(tmp_path):
    job = load_job(_job_file(tmp_path, lambda d: (d.pop("decode"), d["prefill"].pop("repetitions"))))
    shipped = load_job(JOB)
    assert job.decode == shipped.decode and job.prefill == shipped.prefill


def test_a_missing_or_malformed_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match="cannot read validation job"):
        load_job(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("prefill: [\n")
    with pytest.raises(UserError, match="validation job is not valid YAML"):
        load_job(bad)


def test_command_reports_mistakes_in_one_line_before_starting_vllm(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ETALON_VLLM_STATE_DIR", str(tmp_path / "state"))
    bad_job = _job_file(tmp_path, lambda d: d.update(colour="red"))
    cases = [
        (["--job", str(bad_job)], f"{bad_job}: unknown key(s) colour"),
        (["--job", str(JOB), "--profile", "p.json", "--save-profile", "q.json"], "exclude each other"),
        (["--job", str(JOB), "--profile", str(tmp_path / "missing.json")], "no such file"),
        (["--job", str(JOB), "--doc", str(tmp_path / "no" / "such" / "x.md")], "does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("etalon.validation: error: ") and message in err and "\n" not in err, err
    # vLLM missing: the setup command is named, nothing is started
    monkeypatch.setenv("ETALON_VLLM_VENV", str(tmp_path / "no-venv"))
    assert main(["--job", str(JOB), "--doc", str(tmp_path / "x.md"), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "vLLM on CPU is not set up" in err and "setup_vllm_cpu.sh" in err and "\n" not in err, err
    assert not (tmp_path / "x.md").exists() and not (tmp_path / "o").exists()

"""Fast tests of the launcher code that need no vLLM (they run in the default suite).

A tiny stdlib HTTP server stands in for the real one to check ManagedServer's process
handling: readiness, the log tail on failure, the timeout, stopping the whole process group,
SIGKILL after the grace period, and the parent-death signal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from etalon.launchers.base import ManagedServer, ServerStartError, find_free_port, http_get, stop_process_group
from etalon.launchers.vllm_cpu import (
    VLLM_CPU_DEFAULTS,
    VllmCpuServer,
    VllmCpuUnavailable,
    VllmSchedulerSettings,
    main as vllm_cpu_main,
    read_engine_config,
    vllm_cpu_missing_reason,
)

FAKE_SERVER = textwrap.dedent(
    """
    import http.server, signal, subprocess, sys, time
    port, mode = int(sys.argv[1]), sys.argv[2]
    print("fake server starting", mode, flush=True)
    if mode == "die":
        print("boom: cannot load the model", flush=True)
        sys.exit(3)
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode != "nochild":
        code = "import signal, time\\n"
        if mode == "ignore_term":
            code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        code += "time.sleep(600)\\n"
        child = subprocess.Popen([sys.executable, "-c", code])
        print("child", child.pid, flush=True)
    if mode == "never_ready":
        time.sleep(600)
    time.sleep(0.2)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


class FakeServer(ManagedServer):
    name = "fake"

    def __init__(self, script: Path, mode: str = "ok", **kw):
        super().__init__(**kw)
        self.script = script
        self.mode = mode

    def command(self) -> list[str]:
        return [sys.executable, str(self.script), str(self.port), self.mode]


@pytest.fixture()
def script(tmp_path: Path) -> Path:
    p = tmp_path / "fake_server.py"
    p.write_text(FAKE_SERVER)
    return p


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _child_pid(log: Path) -> int:
    for line in log.read_text().splitlines():
        if line.startswith("child "):
            return int(line.split()[1])
    raise AssertionError(f"no child pid in {log.read_text()!r}")


def test_find_free_port_is_bindable():
    port = find_free_port()
    assert 1024 <= port <= 65535


def test_start_ready_and_stop_whole_group(script: Path, tmp_path: Path):
    log = tmp_path / "fake.log"
    with FakeServer(script, log_path=log, startup_timeout=20) as srv:
        assert srv.running and srv.startup_seconds is not None
        assert http_get(srv.url("/health"))[0] == 200
        assert srv.root_url == f"http://127.0.0.1:{srv.port}"
        child = _child_pid(log)
        assert _alive(child)
        mem = srv.memory()
        assert mem["processes"] >= 2 and mem["pss"] > 0
        pid = srv.pid
    assert not srv.running
    assert not _alive(pid) and not _alive(child)
    assert srv.stop() == "not running"  # idempotent
    assert "starting fake" in log.read_text()


def test_process_that_dies_reports_log_tail(script: Path, tmp_path: Path):
    srv = FakeServer(script, mode="die", log_path=tmp_path / "die.log", startup_timeout=20)
    with pytest.raises(ServerStartError) as err:
        srv.start_and_wait()
    msg = str(err.value)
    assert "exited with code 3" in msg and "boom: cannot load the model" in msg
    assert not srv.running


def test_timeout_stops_the_server(script: Path, tmp_path: Path):
    log = tmp_path / "slow.log"
    srv = FakeServer(script, mode="never_ready", log_path=log, startup_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(ServerStartError, match="not ready after 1s"):
        srv.start_and_wait()
    assert time.monotonic() - t0 < 15
    assert not srv.running
    assert not _alive(_child_pid(log))


def test_sigkill_after_grace_when_sigterm_is_ignored(script: Path, tmp_path: Path):
    log = tmp_path / "stubborn.log"
    srv = FakeServer(script, mode="ignore_term", log_path=log, startup_timeout=20, stop_grace=0.5)
    srv.start_and_wait()
    child = _child_pid(log)
    assert srv.stop() == "killed"
    assert not _alive(child)


def test_server_dies_with_the_process_that_started_it(script: Path, tmp_path: Path):
    log = tmp_path / "orphan.log"
    parent_code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_launchers_unit import FakeServer
        from pathlib import Path
        srv = FakeServer(Path({str(script)!r}), mode="nochild", log_path={str(log)!r}, startup_timeout=20)
        srv.start_and_wait()
        print(srv.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    server_pid = None
    try:
        server_pid = int(parent.stdout.readline())
        assert _alive(server_pid)
        parent.kill()  # SIGKILL: no atexit, no __exit__
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(server_pid), "server outlived its parent"
    finally:
        parent.kill()
        if server_pid and _alive(server_pid):
            stop_process_group(server_pid, grace=1)


# ---- vLLM launcher without vLLM ---------------------------------------------------------------
def test_settings_defaults_mirror_vllm_cpu_except_documented_choices():
    s = VllmSchedulerSettings()
    for key in ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
                "block_size", "scheduling_policy", "long_prefill_token_threshold", "async_scheduling",
                "stream_interval"):
        assert getattr(s, key) == VLLM_CPU_DEFAULTS[key], key
    assert s.enable_prefix_caching is False and VLLM_CPU_DEFAULTS["enable_prefix_caching"] is True
    assert s.dtype == "float32"


def test_settings_cli_args_and_env():
    s = VllmSchedulerSettings(max_num_seqs=4, max_num_batched_tokens=512, enable_prefix_caching=True,
                              kv_cache_space_gib=1.5)
    args = s.cli_args()
    assert args[args.index("--max-num-seqs") + 1] == "4"
    assert args[args.index("--max-num-batched-tokens") + 1] == "512"
    assert "--enable-chunked-prefill" in args and "--enable-prefix-caching" in args
    assert "--no-async-scheduling" in args
    # with prefix caching, vLLM's development endpoints (POST /reset_prefix_cache) come on
    assert s.env() == {"VLLM_CPU_KVCACHE_SPACE": "1.5", "VLLM_SERVER_DEV_MODE": "1"}
    assert VllmSchedulerSettings().env() == {"VLLM_CPU_KVCACHE_SPACE": "2"}
    assert "--no-enable-chunked-prefill" in VllmSchedulerSettings(
        enable_chunked_prefill=False, max_num_batched_tokens=8192).cli_args()


@pytest.mark.parametrize("kw", [
    {"enable_chunked_prefill": False},  # 2048 batched tokens < 8192 max_model_len
    {"max_num_seqs": 4096},
    {"max_num_seqs": 0},
    {"scheduling_policy": "lifo"},
    {"kv_cache_space_gib": 0},
])
def test_settings_validation(kw):
    with pytest.raises(ValueError):
        VllmSchedulerSettings(**kw)


def test_missing_reason_and_command(tmp_path: Path):
    venv, model = tmp_path / "venv", tmp_path / "model"
    assert "no vLLM venv" in vllm_cpu_missing_reason(venv, model)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    assert "not installed" in vllm_cpu_missing_reason(venv, model)
    api = venv / "lib" / "python3.11" / "site-packages" / "vllm" / "entrypoints" / "openai"
    api.mkdir(parents=True)
    (api / "api_server.py").write_text("")
    assert "no prepared model folder" in vllm_cpu_missing_reason(venv, model)
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / ".etalon-prepared").write_text("prep_version=1\n")
    assert vllm_cpu_missing_reason(venv, model) is None

    srv = VllmCpuServer(venv=venv, model_dir=model, port=12345, max_num_seqs=8)
    assert srv.settings.max_num_seqs == 8 and srv.settings.max_num_batched_tokens == 2048
    argv = srv.command()
    assert argv[:3] == [str(venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    for flag in ("--enforce-eager", "--model", "--served-model-name", "--port", "--max-num-seqs"):
        assert flag in argv
    assert argv[argv.index("--port") + 1] == "12345" and argv[argv.index("--host") + 1] == "127.0.0.1"
    env = srv.environment()
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and "PYTHONPATH" not in env
    assert srv.base_url == "http://127.0.0.1:12345/v1" and srv.tokenizer_path == str(model)

    with pytest.raises(VllmCpuUnavailable):
        VllmCpuServer(venv=tmp_path / "nowhere", model_dir=model).start()


def test_read_engine_config_from_log(tmp_path: Path):
    log = tmp_path / "vllm.log"
    log.write_text(
        "(EngineCore pid=1) INFO [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: "
        "model='m', dtype=torch.float32, max_seq_len=8192, enforce_eager=True, "
        "enable_prefix_caching=False, enable_chunked_prefill=True, pooler_config=None\n"
        "(EngineCore pid=1) INFO [kv_cache_utils.py:2327] CPU KV cache size: 46,592 tokens, "
        "Maximum concurrency for 8,192 tokens per request: 5.69x\n"
        "(EngineCore pid=1) INFO [ompmultiprocessing.py:185] \tlocal_rank=0, core ids=[0, 2]\n"
        "(EngineCore pid=1) INFO [ompmultiprocessing.py:185] \treserved_cpus=[1]\n"
        "(EngineCore pid=1) INFO [torch_utils.py:295] Reducing Torch threads from 2 to 1 for serving.\n"
    )
    cfg = read_engine_config(f"http://127.0.0.1:{find_free_port()}/metrics", log)
    assert cfg == {"engine_enable_chunked_prefill": True, "engine_enable_prefix_caching": False,
                   "engine_max_seq_len": 8192, "engine_dtype": "torch.float32", "engine_enforce_eager": True,
                   "engine_max_concurrency_at_max_len": 5.69, "engine_omp_core_ids": [0, 2],
                   "engine_reserved_cpus": [1], "engine_torch_threads": 1}


def test_parse_metrics_reads_the_cache_gauge():
    from etalon.launchers.vllm_cpu.engine_report import parse_metrics

    page = ("# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            'vllm:cache_config_info{block_size="128",cache_dtype="auto",enable_prefix_caching="False",'
            'kv_cache_memory_bytes="2147483648",kv_cache_size_tokens="46592",num_gpu_blocks="364"} 1.0\n')
    assert parse_metrics(page) == {"engine_block_size": 128, "engine_kv_cache_dtype": "auto",
                                   "engine_enable_prefix_caching": False, "engine_kv_cache_bytes": 2**31,
                                   "engine_kv_cache_tokens": 46592, "engine_num_kv_blocks": 364}
    assert parse_metrics("vllm:num_requests_running 0.0\n") == {}


def test_cli_status_and_stop_without_a_server(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("ETALON_VLLM_STATE_DIR", str(tmp_path))
    assert vllm_cpu_main(["status"]) == 1
    assert json.loads(capsys.readouterr().out)["running"] is False
    assert vllm_cpu_main(["stop"]) == 0
    # a stale state file (dead pid) is reported as not running and removed by stop
    (tmp_path / "server.json").write_text(json.dumps({"pid": 2**22 + 7, "pgid": 2**22 + 7, "port": 1,
                                                      "host": "127.0.0.1", "base_url": "x"}))
    assert vllm_cpu_main(["status"]) == 1
    assert vllm_cpu_main(["stop"]) == 0
    assert not (tmp_path / "server.json").exists()


def test_cli_start_without_setup_fails_clearly(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("ETALON_VLLM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("ETALON_VLLM_VENV", str(tmp_path / "no-venv"))
    assert vllm_cpu_main(["start", "--timeout", "5"]) == 2
    assert "setup_vllm_cpu.sh" in capsys.readouterr().err

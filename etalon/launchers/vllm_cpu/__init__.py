"""A real vLLM server on this CPU, serving SmolLM2-135M-Instruct, for etalon's real-engine tests.

vLLM lives in its own virtual environment (``bash scripts/setup_vllm_cpu.sh`` creates it and
the model folder); this package never imports vLLM, it runs the venv's python::

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

Modules, one job each: ``paths`` (where the venv, model and state live; what is missing),
``settings`` (the scheduler settings dataclass and vLLM's defaults), ``server`` (the managed
process), ``engine_report`` (what the running engine reports: /metrics and its log),
``resolve`` with ``resolve_script`` (vLLM's own resolution of its defaults), ``state`` (the
background server's state file) and ``cli``. Imports: standard library only.
"""

from etalon.launchers.vllm_cpu.cli import main
from etalon.launchers.vllm_cpu.engine_report import read_engine_config
from etalon.launchers.vllm_cpu.paths import (
    DEFAULT_MODEL_NAME,
    VLLM_CPU_VERSION,
    VllmCpuUnavailable,
    default_model_dir,
    default_state_dir,
    default_venv,
    vllm_cpu_missing_reason,
)
from etalon.launchers.vllm_cpu.resolve import resolve_engine_config
from etalon.launchers.vllm_cpu.server import VllmCpuServer
from etalon.launchers.vllm_cpu.settings import VLLM_CPU_DEFAULTS, VllmSchedulerSettings

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
    "main",
    "read_engine_config",
    "resolve_engine_config",
    "vllm_cpu_missing_reason",
]

"""Start and stop the servers etalon measures: a real vLLM on CPU, and (later) others.

Importing this package needs only the standard library; vLLM itself runs in its own virtual
environment (see ``scripts/setup_vllm_cpu.sh``) and is started as a subprocess.
"""

from etalon.launchers.base import ManagedServer, ServerStartError, find_free_port

_VLLM_CPU_NAMES = {
    "VLLM_CPU_DEFAULTS",
    "VllmCpuServer",
    "VllmCpuUnavailable",
    "VllmSchedulerSettings",
    "vllm_cpu_missing_reason",
}

__all__ = ["ManagedServer", "ServerStartError", "find_free_port", *sorted(_VLLM_CPU_NAMES)]


def __getattr__(name: str):
    # Imported on first use: the process helpers alone need nothing of the vLLM launcher.
    if name in _VLLM_CPU_NAMES:
        from etalon.launchers import vllm_cpu

        return getattr(vllm_cpu, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

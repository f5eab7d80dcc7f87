"""The state file of a server left running in the background by ``start``, read by ``stop``/``status``.

``start`` and ``stop`` are separate processes, so the pid, process group and port travel in
``<state dir>/server.json``, written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etalon.launchers.base import LOOPBACK, http_get, pid_alive, process_group_memory
from etalon.launchers.vllm_cpu.paths import default_state_dir


def state_file() -> Path:
    return default_state_dir() / "server.json"


def read_state() -> dict[str, Any] | None:
    """The recorded server, or ``None`` when there is no (readable) state file."""
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None


def write_state(state: dict[str, Any]) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def clear_state() -> None:
    state_file().unlink(missing_ok=True)


def state_status(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` plus whether its process lives, answers /health, and its memory."""
    pid = int(state.get("pid") or 0)
    alive = pid > 0 and pid_alive(pid)
    healthy = alive and http_get(f"http://{state.get('host', LOOPBACK)}:{state['port']}/health")[0] == 200
    mem = process_group_memory(int(state.get("pgid") or pid)) if alive else {"rss": 0, "pss": 0, "processes": 0}
    return {**state, "alive": alive, "healthy": healthy, "memory_pss_bytes": mem["pss"],
            "memory_rss_bytes": mem["rss"], "processes": mem["processes"]}


def export_lines(state: dict[str, Any]) -> str:
    """The shell lines that point etalon's commands at the recorded server."""
    return "\n".join([
        f"export OPENAI_API_BASE={state['base_url']}",
        "export OPENAI_API_KEY=${OPENAI_API_KEY:-EMPTY}",
        f"export ETALON_MODEL={state['model_name']}",
        f"export ETALON_TOKENIZER={state['tokenizer_path']}",
    ])

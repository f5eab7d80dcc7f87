"""What a profile records about the server: engine and version if it says, never its address.

Engines report themselves differently: vLLM answers ``GET /version`` and names itself in
``/v1/models``' ``owned_by``; SGLang answers ``/get_server_info``'s ``version``;
Text Generation Inference answers ``GET /info``. Each probe is best-effort with a short
timeout: a server that reports nothing gets ``null`` fields, not an error.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0


def redact_url(base_url: str) -> str:
    """``http://10.1.2.3:8000/v1`` -> ``http://<redacted>/v1``: the path says which API, the
    host is nobody's business once the profile is shared."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://<redacted>{parts.path}" if parts.scheme else "<redacted>"


def _get_json(url: str, api_key: str | None) -> object | None:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S) as resp:
            return json.loads(resp.read(1 << 20).decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def describe_server(base_url: str, model: str, api_key: str | None = None) -> dict:
    """``{"engine": ..., "engine_version": ...}`` from whatever the server reports."""
    parts = urlsplit(base_url)
    root = f"{parts.scheme}://{parts.netloc}"
    engine = version = None
    models = _get_json(base_url.rstrip("/") + "/models", api_key)
    if isinstance(models, dict) and isinstance(models.get("data"), list):
        entries = [m for m in models["data"] if isinstance(m, dict)]
        match = [m for m in entries if m.get("id") == model] or entries
        if match and isinstance(match[0].get("owned_by"), str):
            engine = match[0]["owned_by"]
    for path, key in (("/version", "version"), ("/get_server_info", "version"), ("/info", "version")):
        info = _get_json(root + path, api_key)
        if isinstance(info, dict) and isinstance(info.get(key), (str, int, float)):
            version = str(info[key])
            if engine is None and path == "/info":
                engine = "tgi"
            break
    return {"engine": engine, "engine_version": version}

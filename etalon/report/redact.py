"""Removes secrets (API keys, auth tokens, passwords) from a config before it is saved or logged.

A key is dropped, at any depth, when its name contains ``api_key``/``apikey``/``secret``/
``password``/``passwd``/``authorization``/``credential``, or when one of its name's words is
``token`` (``hf_token``, ``auth_token``, ``accessToken``) and its value is a string — so counts
such as ``max_tokens`` or ``num_prompt_tokens`` and names such as ``tokenizer`` stay. A string
value shaped like a provider key (``sk-...``, ``hf_...``, ``Bearer ...``) is dropped wherever it is.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY_PARTS = ("api_key", "apikey", "secret", "password", "passwd", "authorization",
                     "credential")
_KEY_SHAPED = re.compile(r"^(sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{16,}|Bearer\s+\S+)$")


def _words(key: str) -> list[str]:
    """``"hfAccessToken"`` / ``"hf-access_token"`` -> ``["hf", "access", "token"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret(key: str, value: Any) -> bool:
    """Whether ``key: value`` looks like a credential (see the module docstring)."""
    name = re.sub(r"[^a-z0-9]", "_", key.lower())
    if any(part in name or part in name.replace("_", "") for part in _SECRET_KEY_PARTS):
        return True
    if isinstance(value, str):
        if "token" in _words(key):
            return True
        if _KEY_SHAPED.match(value.strip()):
            return True
    return False


def redact(config: Any) -> Any:
    """A copy of ``config`` (dicts, lists, scalars) without the secret-looking entries."""
    if isinstance(config, dict):
        return {k: redact(v) for k, v in config.items() if not is_secret(str(k), v)}
    if isinstance(config, (list, tuple)):
        return [redact(v) for v in config
                if not (isinstance(v, str) and _KEY_SHAPED.match(v.strip()))]
    return config

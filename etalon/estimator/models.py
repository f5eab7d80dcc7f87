"""Find a model's architecture: by catalog name, config.json path, or Hugging Face repo id.

The catalog is a folder of config.json-style files inside the package
(``etalon/data/models/<name>.json``) so it installs with etalon and works offline. A catalog
file's ``_name_or_path`` is its Hub id, so ``meta-llama/Llama-3.1-8B`` resolves offline too.
Anything else that looks like ``org/name`` is fetched from the Hub with ``huggingface_hub``,
imported only then; failures become one-line ``EstimatorError`` messages.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import socket
from functools import lru_cache
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

from etalon.estimator.config_reader import spec_from_config
from etalon.estimator.errors import EstimatorError
from etalon.estimator.spec import ModelSpec

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _catalog_dir() -> Path:
    return Path(str(resources.files("etalon") / "data" / "models"))


@lru_cache(maxsize=1)
def _catalog_index() -> dict[str, Path]:
    """Lower-cased catalog name and Hub id -> file. Packaged read-only data, read once."""
    index: dict[str, Path] = {}
    for path in sorted(_catalog_dir().glob("*.json")):
        index[path.stem.lower()] = path
        with path.open() as fh:
            hub_id = json.load(fh).get("_name_or_path")
        if hub_id:
            index[str(hub_id).lower()] = path
    return index


def catalog_names() -> list[str]:
    """Names of the shipped model configs (file stems)."""
    return sorted(p.stem for p in _catalog_dir().glob("*.json"))


def _read_json(path: Path, label: str) -> dict:
    try:
        with path.open() as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise EstimatorError(f"model config {label}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise EstimatorError(f"model config {label}: cannot read ({exc.strerror})") from None


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine fails in seconds instead of after the Hub
    client's retry back-off (about 25 s)."""
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _first_sentence(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    cut = text.find(". ")
    text = text[: cut + 1] if 0 < cut < 200 else text[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _from_hub(repo_id: str, revision: str | None) -> dict:
    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError:
        raise EstimatorError(
            f"model '{repo_id}' is not in the catalog and fetching it from the Hugging Face Hub needs "
            "huggingface_hub (pip install huggingface_hub); or pass a path to its config.json"
        ) from None
    offline = bool(getattr(constants, "HF_HUB_OFFLINE", False)) or not _hub_reachable(constants.ENDPOINT)
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # its retry warnings would break the one-line error contract
    try:
        path = hf_hub_download(repo_id=repo_id, filename="config.json", revision=revision, local_files_only=offline)
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        if offline:
            raise EstimatorError(
                f"cannot reach the Hugging Face Hub to fetch config.json of '{repo_id}' and it is not cached; "
                "offline, pass a local config.json path or a catalog name"
            ) from None
        raise EstimatorError(
            f"cannot fetch config.json of '{repo_id}' from the Hugging Face Hub ({_first_sentence(exc)}); "
            "gated repos need HF_TOKEN, or pass a local config.json path"
        ) from None
    finally:
        hub_logger.setLevel(level)
    return _read_json(Path(path), repo_id)


def load_model(ref: str | Path | dict | ModelSpec, revision: str | None = None) -> ModelSpec:
    """Resolve ``ref`` to a ModelSpec.

    ``ref`` is a ModelSpec (returned as is), a config dict, a catalog name (``llama-3.1-8b``), a
    Hub id found in the catalog, a path to a config.json or to a folder holding one, or any other
    Hub id (downloaded; needs network and, for gated repos, a token).
    """
    if isinstance(ref, ModelSpec):
        return ref
    if isinstance(ref, dict):
        return spec_from_config(ref, str(ref.get("_name_or_path", "custom")))
    text = str(ref).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise EstimatorError(f"model folder {text} has no config.json")
    if path.is_file():
        return spec_from_config(_read_json(path, text), path.parent.name if path.name == "config.json" else path.stem, text)
    hit = _catalog_index().get(text.lower())
    if hit is not None:
        return spec_from_config(_read_json(hit, hit.stem), hit.stem, f"catalog:{hit.stem}")
    if text.endswith(".json") or text.startswith((".", "/", "~")):
        raise EstimatorError(f"model config file not found: {text}")
    if HUB_ID.match(text):
        return spec_from_config(_from_hub(text, revision), text, f"hub:{text}")
    close = difflib.get_close_matches(text.lower(), catalog_names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise EstimatorError(
        f"unknown model '{text}'; {hint}use a catalog name (see `python -m etalon.estimate catalog`), "
        "a path to config.json, or a Hugging Face repo id (org/name)"
    )

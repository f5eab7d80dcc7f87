"""Reads a settings file (JSON or YAML, by suffix) into a mapping, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from etalon.cli_errors import UserError

# libyaml's parser where PyYAML was built with it: the shipped hardware catalog takes 0.12 s
# with the pure-Python one, ~10x less with this; both accept the same (safe) YAML
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str | bytes) -> object:
    """``yaml.safe_load``, by libyaml where it is there (raises ``yaml.YAMLError`` alike)."""
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 (a safe loader)


def load_mapping(path: str | Path, what: str) -> dict:
    """``what`` names the file's role in errors, e.g. ``"perf-model file"``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror})") from None
    is_json = path.suffix == ".json"
    try:
        data = json.loads(text) if is_json else parse_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: {what} is not valid {'JSON' if is_json else 'YAML'}: "
                         f"{str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: {what} must be a mapping")
    return data

"""Profile files: what was profiled, the raw measurements and the fitted predictors, as JSON.

A profile holds a prefill section, a decode section, or both (``etalon.calibration.merge``
combines two files). Loading checks the schema version, every required field and its type, and
raises one ``ValueError`` naming the file and the field; profiles are never pickles, so loading
one runs no code. The layout is documented in ``docs/calibration.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from etalon.cli_errors import UserError
from etalon.profiles.schema import Fields
from etalon.profiles.section import Section

SCHEMA_VERSION = 1
PROFILE_KIND = "etalon-profile"
SECTIONS = ("prefill", "decode")
SOURCE_FIELDS = ("server", "model", "engine", "engine_version", "hardware", "llm_api",
                 "tokenizer", "server_args", "notes")


@dataclass
class Profile:
    """A fitted profile; ``source`` says what was measured (server URL already redacted)."""

    source: dict = field(default_factory=dict)
    prefill: Section | None = None
    decode: Section | None = None
    created_at: str = ""
    etalon_version: str = ""
    path: str | None = None  # where it was loaded from (not written)

    def __post_init__(self) -> None:
        if not self.created_at:
            self.created_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not self.etalon_version:
            from etalon import __version__

            self.etalon_version = __version__

    @property
    def label(self) -> str:
        return self.path or "profile"

    def section(self, name: str) -> Section:
        """The named section, or a ``ValueError`` saying how to get one."""
        value = getattr(self, name)
        if value is None:
            tool = "prefill_profiler" if name == "prefill" else "decode_profiler"
            raise UserError(f"{self.label}: has no {name} section (measure one with "
                             f"`python -m etalon.{tool}` and combine files with "
                             f"`python -m etalon.calibration.merge`)")
        return value

    def prefill_time(self, prompt_tokens, *, strict: bool = True) -> np.ndarray | float:
        """Predicted TTFT (s) of isolated prompts; refuses beyond the claimed range."""
        out = self.section("prefill").predict({"prompt_tokens": prompt_tokens}, strict=strict)
        return float(out) if out.ndim == 0 else out

    def decode_step_time(self, batch_size, context_tokens, *, strict: bool = True):
        """Predicted decode step time (s) at ``batch_size`` with ``context_tokens`` in total."""
        out = self.section("decode").predict(
            {"decode_batch": batch_size, "decode_context": context_tokens}, strict=strict)
        return float(out) if out.ndim == 0 else out

    # -- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        out = {"kind": PROFILE_KIND, "schema_version": SCHEMA_VERSION,
               "created_at": self.created_at, "etalon_version": self.etalon_version,
               "source": self.source}
        for name in SECTIONS:
            section = getattr(self, name)
            if section is not None:
                out[name] = section.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: object, where: str = "profile") -> "Profile":
        f = Fields(data, where, root=True)
        f.only({"kind", "schema_version", "created_at", "etalon_version", "source", *SECTIONS})
        if f.str("kind") != PROFILE_KIND:
            raise UserError(f"{f.at('kind')}: expected {PROFILE_KIND!r}, got {f.data['kind']!r}")
        version = f.int("schema_version")
        if version != SCHEMA_VERSION:
            raise UserError(f"{f.at('schema_version')}: this etalon reads version "
                             f"{SCHEMA_VERSION}, the file is version {version}")
        source = f.obj("source")
        source.only(set(SOURCE_FIELDS))
        for key in source.data:
            source.str(key, required=False)
        sections = {name: Section.from_dict(name, f.raw(name), f.at(name))
                    for name in SECTIONS if f.has(name)}
        if not sections:
            raise UserError(f"{where}: has neither a 'prefill' nor a 'decode' section")
        return cls(source=dict(source.data), created_at=f.str("created_at"),
                   etalon_version=f.str("etalon_version", required=False) or "unknown",
                   **sections)


def load_profile(path: str | os.PathLike) -> Profile:
    """Reads and validates a profile file; every problem is one ``ValueError`` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read profile ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    profile = Profile.from_dict(data, where=str(path))
    profile.path = str(path)
    return profile


def save_profile(profile: Profile, path: str | os.PathLike) -> Path:
    """Writes the profile as indented JSON (atomically: a crash leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(profile.to_dict()) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def dumps(value, indent: int = 0) -> str:
    """JSON with objects indented and lists of scalars kept on one line, so a measurement
    column reads as a row instead of a page of single numbers."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple, np.ndarray)):
        value = list(value)
        if all(not isinstance(v, (dict, list, tuple, np.ndarray)) for v in value):
            return "[" + ", ".join(dumps(v) for v in value) + "]"
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in value) + "\n" + pad + "]"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        raise UserError(f"profile: cannot write the non-finite number {value} as JSON")
    return json.dumps(value)

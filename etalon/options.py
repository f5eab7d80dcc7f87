"""Typed settings: one dataclass field is one command-line flag and one config-file key.

A config class declares each setting once, with ``option(default, help, ...)``. From it come
the flags (``--`` + the field name with ``-`` for ``_``, plus any aliases), their help text with
the default, their choices (a fixed tuple or a registry's names), and the keys a YAML/JSON file
may set. A field whose type is another config class is either *embedded* (its settings are flat
in flags and files, optionally under a name prefix) or a *section* (flat flags, but a nested
mapping in files, e.g. ``workload:``).

Every generated flag's argparse default is suppressed, so the namespace holds only what the user
typed; ``apply_namespace`` lays those values over a base config (the defaults, or a file's
values). That is what lets a config file and command-line overrides mix without guessing.

For the same reason argparse cannot enforce a required flag (a file may give the value). A root
config lists the settings a command cannot run without in ``REQUIRED`` (a class attribute of flat
setting names); their help says "required" and ``check_required(cfg)`` names the missing ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from etalon.cli_errors import UserError


class ConfigError(UserError):
    """A config file or flag value that does not fit its field."""


def option(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING,
           aliases: Sequence[str] = (), choices: str | Sequence[str] | None = None,
           metavar: str | None = None, parse: Callable[[str], Any] | None = None,
           negatable: bool = False, flag: bool = True) -> Any:
    """A config field that is also a flag.

    - ``aliases``: more flag spellings (``"--max-num-seqs"``), all setting this field;
    - ``choices``: allowed values, or the name of a registry whose names are allowed;
    - ``parse``: turns the flag's text into the value (default: from the field's type);
    - ``negatable``: a bool flag that also has a ``--no-`` form;
    - ``flag=False``: settable in files and code only.
    """
    meta = {"help": help, "aliases": tuple(aliases), "choices": choices, "metavar": metavar,
            "parse": parse, "negatable": negatable, "flag": flag}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def embed(cls: type, *, prefix: str = "", section: bool = False, title: str | None = None,
          defaults: Mapping[str, Any] | None = None, exclude: Sequence[str] = ()) -> Any:
    """A nested config. ``prefix`` goes before each of its names (flags and file keys);
    ``section=True`` makes it a sub-mapping named after the field in files; ``title`` heads its
    flags' group in ``-h``; ``defaults`` overrides some of its defaults for this command;
    ``exclude`` names fields of ``cls`` this embedding leaves out: they get no flag and no file
    key, and keep their defaults (for a command that has no use for them)."""
    if section and exclude:
        raise TypeError("embed(): exclude applies to flat embeds, not sections")
    factory = (lambda: cls(**defaults)) if defaults else cls
    return field(default_factory=factory, metadata={"embed": True, "prefix": prefix,
                                                    "section": section, "title": title,
                                                    "exclude": frozenset(exclude)})


def per_entry(kind: str, help: str = "") -> Any:
    """The parameters of every entry of registry ``kind`` that declares them: a mapping from
    entry name to its ``params`` config (a class attribute), whose settings appear flat under
    the entry's ``params_prefix``. A plug-in's generator gets its flags the same way."""
    return field(default_factory=lambda: default_entry_params(kind),
                 metadata={"per_entry": kind, "help": help})


def entries_with_params(kind: str) -> dict[str, Any]:
    from etalon.registry import registry

    reg = registry(kind)
    return {name: reg.get(name) for name in reg.names()
            if getattr(reg.get(name), "params", None) is not None}


def default_entry_params(kind: str) -> dict[str, Any]:
    return {name: entry.params() for name, entry in entries_with_params(kind).items()}


# --- type introspection ---------------------------------------------------------------------

@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _item_type(tp: Any) -> Any | None:
    """``int`` for ``list[int]``/``tuple[int, ...]``; None when ``tp`` is not a sequence type."""
    if typing.get_origin(tp) in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return args[0] if args else str
    return None


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            dict: "a mapping"}.get(tp, getattr(tp, "__name__", str(tp)))


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Checks (and gently converts: int to float, list to tuple) a file value for a field."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: must not be empty")
    item = _item_type(tp)
    if item is not None:
        values = value if isinstance(value, (list, tuple)) else [value]
        out = [_coerce(v, item, where) for v in values]
        return tuple(out) if typing.get_origin(tp) is tuple else out
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return parse_bool(value)
            except argparse.ArgumentTypeError:
                pass
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif typing.get_origin(tp) is dict or tp is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


# --- walking a config class -----------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One leaf setting as it appears on the command line and in files."""

    path: tuple[str, ...]  # attribute path from the root config
    name: str  # flat name: prefixes + field name (the flag and the flat file key)
    field: Field
    type: Any


def _walk(cls: type, prefix: str, path: tuple[str, ...], skip: frozenset[str],
          sections: dict[str, tuple[tuple[str, ...], type]] | None) -> list[Setting]:
    """The leaf settings of ``cls``, nested configs flattened. With ``sections`` (a dict to
    fill), a section field is recorded there instead of descended into: the view of a file."""
    out: list[Setting] = []
    hints = _hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        sub = _unwrap_optional(hints[f.name])[0]
        if sections is not None and f.metadata.get("section"):
            sections[f.name] = (path + (f.name,), sub)
        elif f.metadata.get("embed"):
            out += _walk(sub, prefix + f.metadata["prefix"], path + (f.name,),
                         f.metadata.get("exclude", frozenset()), sections)
        elif f.metadata.get("per_entry"):
            for name, entry in entries_with_params(f.metadata["per_entry"]).items():
                out += _walk(entry.params, prefix + entry.params_prefix, path + (f.name, name),
                             frozenset(), sections)
        elif f.init:
            out.append(Setting(path + (f.name,), prefix + f.name, f, hints[f.name]))
    return out


def settings_of(cls: type) -> list[Setting]:
    """Every leaf setting of ``cls``, nested configs (sections included) flattened."""
    return _walk(cls, "", (), frozenset(), None)


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


_METAVARS: dict[Any, str] = {int: "N", float: "X", dict: "JSON"}


def resolve_choices(choices: str | Sequence[str] | None) -> list[str] | None:
    if choices is None:
        return None
    if isinstance(choices, str):
        from etalon.registry import registry

        return list(registry(choices).names())
    return list(choices)


def _titles(cls: type, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Paths of the embedded configs that head their own flag group."""
    out = {}
    hints = _hints(cls)
    for f in fields(cls):
        if f.metadata.get("embed"):
            if f.metadata.get("title"):
                out[path + (f.name,)] = f.metadata["title"]
            out.update(_titles(_unwrap_optional(hints[f.name])[0], path + (f.name,)))
    return out


def add_options(parser: argparse.ArgumentParser, cls: type, *, title: str | None = None,
                exclude: Sequence[str] = ()) -> None:
    """Adds one flag per setting of ``cls``: settings of an embedded config with a ``title``
    go into that argument group, the rest into ``title``'s group (or the parser's own)."""
    defaults = cls()
    required = set(required_settings(cls))
    titles = _titles(cls)
    groups: dict[str, Any] = {}

    def group_for(path: tuple[str, ...]) -> Any:
        heading = next((titles[path[:i]] for i in range(len(path) - 1, 0, -1)
                        if path[:i] in titles), title)
        if heading is None:
            return parser
        if heading not in groups:
            groups[heading] = parser.add_argument_group(heading)
        return groups[heading]

    for s in settings_of(cls):
        meta = s.field.metadata
        if s.name in exclude or not meta.get("flag", True):
            continue
        group = group_for(s.path)
        tp, _ = _unwrap_optional(s.type)
        item = _item_type(tp)
        help_text = (meta.get("help") or "").replace("%", "%%")
        default = ("required" if s.name in required
                   else f"default: {_default_text(_get_path(defaults, s.path))}")
        kwargs: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS,
                                  "help": f"{help_text} ({default})".strip()}
        choices = resolve_choices(meta.get("choices"))
        if tp is bool and meta.get("negatable"):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif tp is bool:
            kwargs.update(nargs="?", const=True, type=parse_bool, metavar="{true,false}")
        else:
            parse = meta.get("parse") or (item or tp)
            if parse is dict:
                parse = json_object
            kwargs["type"] = parse
            if item is not None and meta.get("parse") is None:
                kwargs["nargs"] = "+"
            if choices is not None:
                kwargs["choices"] = choices
            else:
                kwargs["metavar"] = meta.get("metavar") or _METAVARS.get(item or tp, "VALUE")
        group.add_argument(flag_of(s.name), *meta.get("aliases", ()), **kwargs)


def required_settings(cls: type) -> tuple[str, ...]:
    """The flat names of the settings ``cls`` (a root config) cannot do without."""
    return tuple(getattr(cls, "REQUIRED", ()))


def check_required(cfg: Any) -> Any:
    """``cfg``, or a one-line ``ConfigError`` naming every ``REQUIRED`` setting still unset
    (None or empty) after defaults, file and flags."""
    names = required_settings(type(cfg))
    if names:
        by_name = {s.name: s for s in settings_of(type(cfg))}
        missing = [flag_of(n) for n in names
                   if _get_path(cfg, by_name[n].path) in (None, "", [], ())]
        if missing:
            raise ConfigError(f"the following arguments are required: {', '.join(missing)}")
    return cfg


# --- building configs -----------------------------------------------------------------------

def _set_path(cfg: Any, path: tuple[str, ...], value: Any) -> Any:
    """A copy of ``cfg`` with the attribute at ``path`` replaced (nested configs copied)."""
    head, rest = path[0], path[1:]
    if isinstance(cfg, dict):
        inner = value if not rest else _set_path(cfg[head], rest, value)
        return {**cfg, head: inner}
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: _set_path(getattr(cfg, head), rest, value)})


def apply_namespace(cfg: Any, ns: argparse.Namespace) -> Any:
    """``cfg`` with every setting the user typed on the command line laid over it."""
    for s in settings_of(type(cfg)):
        if hasattr(ns, s.name):
            cfg = _set_path(cfg, s.path, getattr(ns, s.name))
    return cfg


def from_mapping(cls: type, data: Mapping, where: str, base: Any = None) -> Any:
    """A config from a file's mapping; unknown keys and ill-typed values are one-line errors
    naming ``where`` and the key. Keys may use ``-`` or ``_``."""
    cfg = base if base is not None else cls()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    flat, sections = _file_keys(cls)
    unknown = []
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key in sections and isinstance(value, sections[key][1]):
            cfg = _set_path(cfg, sections[key][0], value)
        elif key in sections:
            path, sub = sections[key]
            cfg = _set_path(cfg, path, from_mapping(sub, value or {}, f"{where}: {key}",
                                                    _get_path(cfg, path)))
        elif key in flat:
            s = flat[key]
            cfg = _set_path(cfg, s.path, _coerce(value, s.type, f"{where}: {key}"))
        else:
            unknown.append(str(raw_key))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: "
                          f"{', '.join(sorted([*flat, *sections]))}")
    return cfg


def _get_path(cfg: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        cfg = cfg[part] if isinstance(cfg, dict) else getattr(cfg, part)
    return cfg


def _file_keys(cls: type) -> tuple[dict[str, Setting], dict[str, tuple[tuple[str, ...], type]]]:
    """Flat keys (embedded settings included) and section keys of ``cls`` in a file."""
    sections: dict[str, tuple[tuple[str, ...], type]] = {}
    flat = {s.name: s for s in _walk(cls, "", (), frozenset(), sections)}
    return flat, sections


def to_mapping(cfg: Any) -> dict:
    """The config as a file would write it (flat keys, sections nested); JSON-safe values."""
    out: dict[str, Any] = {}
    flat, sections = _file_keys(type(cfg))
    for key, s in flat.items():
        value = _get_path(cfg, s.path)
        out[key] = list(value) if isinstance(value, tuple) else value
    for key, (path, _) in sections.items():
        out[key] = to_mapping(_get_path(cfg, path))
    return out


def load_config_file(cls: type, path: str | Path, what: str) -> Any:
    from etalon.config_files import load_mapping

    return from_mapping(cls, load_mapping(path, what), str(path))


def add_config_file_flag(parser: argparse.ArgumentParser, sections: str = "") -> None:
    """``--config FILE``: a YAML/JSON file of the command's settings, under its flags."""
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="YAML/JSON file of the settings below (keys as the flags, with '_' "
                             f"or '-'{sections}); flags given on the command line override it")


def as_flags(settings: Mapping[str, Any]) -> list[str]:
    """``{"max_batch_size": 4}`` → ``["--max-batch-size", "4"]``: a settings mapping as the
    flags that set it (for a child process); ``None`` values are left out, booleans are written
    ``true``/``false`` as a (non-negatable) bool flag takes them."""
    return [part for k, v in settings.items() if v is not None
            for part in (flag_of(str(k)), str(v).lower() if isinstance(v, bool) else str(v))]


def config_from_args(cls: type, ns: argparse.Namespace, *, what: str = "config file") -> Any:
    """Defaults, then ``--config FILE`` (when the namespace has one), then the typed flags."""
    path = getattr(ns, "config", None)
    base = load_config_file(cls, path, what) if path else cls()
    return apply_namespace(base, ns)


"""Every extension point of etalon is one named registry, and plug-ins extend them all one way.

Kinds: ``client`` (backends for ``--llm-api``), ``interval_generator``, ``length_generator``,
``prefix_generator`` (shared prompt prefixes), ``scheduler`` (batching policies), ``router``
(replica routing), ``perf_model`` (step-time models, by a spec's ``kind``) and
``model_family`` (architecture rules, by ``model_type``).

Built-ins register themselves when their module is imported; ``registry(kind)`` imports those
modules first, then, once per process, every plug-in of the ``etalon.plugins`` entry-point
group. A plug-in entry point names a module (importing it registers things) or a callable
(called with no arguments)::

    [project.entry-points."etalon.plugins"]
    my_backend = "my_package.etalon_plugin"

An entry may be the object itself or a lazy ``"module:attribute"`` string, resolved on first
use, so a registry lookup never imports more than it needs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

from etalon.cli_errors import UserError

PLUGIN_GROUP = "etalon.plugins"

# Where each kind's built-ins live (imported before the first lookup).
BUILTINS: dict[str, tuple[str, ...]] = {
    "client": ("etalon.client",),
    "interval_generator": ("etalon.workload.intervals",),
    "length_generator": ("etalon.workload.lengths", "etalon.workload.dataset"),
    "prefix_generator": ("etalon.workload.prefixes",),
    "scheduler": ("etalon.engine.schedulers",),
    "router": ("etalon.simulator.cluster",),
    "perf_model": ("etalon.perf.registry",),
    "model_family": ("etalon.estimator.families",),
}

DESCRIPTIONS: dict[str, str] = {
    "client": "client backend",
    "interval_generator": "request interval generator",
    "length_generator": "request length generator",
    "prefix_generator": "request prefix generator",
    "scheduler": "scheduler",
    "router": "router",
    "perf_model": "perf model kind",
    "model_family": "model type",
}


class UnknownName(UserError):
    """A name no registry entry answers to; the message lists the valid ones."""


class Registry:
    """Names to objects (classes, factories, or lazy ``"module:attr"`` references)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.what = DESCRIPTIONS.get(kind, kind)
        self._entries: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Any:
        """``register(name, obj)``, or ``@register(name)`` on a class or function.
        A name registered twice raises: two plug-ins must not silently shadow each other."""
        if obj is None:
            return lambda target: self.register(name, target)
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered already "
                             f"(by {_origin(self._entries[name])})")
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> Any:
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.what} {name!r}; valid: "
                              f"{', '.join(self.names())}") from None
        if isinstance(entry, str):
            entry = self._entries[name] = _resolve(entry)
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_REGISTRIES: dict[str, Registry] = {}
_loaded: set[str] = set()
_plugins_loaded = False


def raw(kind: str) -> Registry:
    """The registry of ``kind`` without loading anything: for built-in modules registering."""
    if kind not in BUILTINS:
        raise KeyError(f"no registry kind {kind!r}; kinds: {', '.join(BUILTINS)}")
    return _REGISTRIES.setdefault(kind, Registry(kind))


def registry(kind: str) -> Registry:
    """The registry of ``kind``, its built-ins and every installed plug-in loaded."""
    reg = raw(kind)
    if kind not in _loaded:
        _loaded.add(kind)
        for module in BUILTINS[kind]:
            importlib.import_module(module)
    load_plugins()
    return reg


def register(kind: str, name: str, obj: Any = None) -> Any:
    """Adds an entry (for plug-ins and built-ins alike); usable as a decorator without ``obj``."""
    return raw(kind).register(name, obj)


def load_plugins() -> None:
    """Imports (or calls) each ``etalon.plugins`` entry point, once per process."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            target = ep.load()
        except Exception as exc:  # a broken plug-in names itself instead of breaking etalon
            print(f"etalon: plug-in {ep.name!r} ({ep.value}) failed to load: {exc}",
                  file=sys.stderr)
            continue
        if callable(target) and not isinstance(target, type):
            target()


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    target: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        target = getattr(target, part)
    return target


def _origin(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


"""The packages around profiles import one way: ``calibration`` (measure, probe, fit) depends on
``perf`` (step times) and ``profiles`` (the file format), ``perf`` on ``profiles``, and
``profiles`` on neither. Every import in the source counts, lazy ones inside functions too, so
a future circle fails here instead of at someone's import time."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "etalon"
WATCHED = ("profiles", "perf", "calibration")
ALLOWED = {("calibration", "perf"), ("calibration", "profiles"), ("perf", "profiles")}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = ".".join(parts[:-1])  # what a relative import is relative to
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}  # "from etalon import perf"
    return out


def edges() -> dict[tuple[str, str], list[str]]:
    """``{(from package, to package): [file: module, ...]}`` among the watched packages."""
    found: dict[tuple[str, str], list[str]] = {}
    for src in WATCHED:
        for path in sorted((PACKAGE / src).rglob("*.py")):
            for name in imported_modules(path):
                parts = name.split(".")
                if len(parts) > 1 and parts[0] == "etalon" and parts[1] in WATCHED and parts[1] != src:
                    found.setdefault((src, parts[1]), []).append(f"{path.relative_to(PACKAGE)}: {name}")
    return found


def test_the_scan_sees_lazy_and_relative_imports():
    # a lazy import inside a function of the real code is seen ...
    assert "etalon.perf.roofline" in imported_modules(PACKAGE / "validate.py")
    # ... and a relative one is resolved against its package
    assert "etalon.workload.config" in imported_modules(PACKAGE / "workload" / "__init__.py")


def test_imports_between_profiles_perf_and_calibration_go_one_way():
    found = edges()
    wrong = {edge: where for edge, where in found.items() if edge not in ALLOWED}
    assert not wrong, f"imports against the direction calibration -> perf -> profiles: {wrong}"
    # the direction is real, not vacuous: each allowed edge is used
    assert set(found) == ALLOWED, sorted(found)


def test_the_format_package_imports_only_itself_numpy_and_the_standard_library():
    # a server or simulator reading a profile loads nothing else of etalon's (but the one-line
    # user-error type, which imports nothing)
    for path in sorted((PACKAGE / "profiles").rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "etalon":
                assert module in ("etalon", "etalon.__version__") or module.startswith(
                    ("etalon.profiles", "etalon.cli_errors")), f"{path}: imports {module}"
            else:
                assert top in {"numpy", "__future__", "json", "os", "math", "re", "dataclasses",
                               "datetime", "pathlib", "typing"}, f"{path}: imports {module}"

"""Servers a capacity-search job starts itself: one per configuration, stopped whatever happens.

Three kinds, all :class:`~etalon.launchers.base.ManagedServer` (own process group, log file,
readiness poll, SIGTERM then SIGKILL of the whole group, stopped when the job's process dies):

* ``embedded`` — ``etalon serve`` with the given settings (its flags, as a mapping);
* ``vllm-cpu`` — etalon's vLLM-on-CPU launcher with the given scheduler settings;
* ``command`` — any command template; ``{host}`` and ``{port}`` are filled in, readiness is an
  HTTP 200 on ``ready_path``.

A server that never gets ready is a :class:`LaunchError`: one line naming the deployment and
the log, so the job records it and goes on with the other configurations.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from etalon.cli_errors import UserError
from etalon.launchers.base import ManagedServer, ServerStartError
from etalon.options import as_flags

KINDS = ("embedded", "vllm-cpu", "command")


class LaunchError(RuntimeError):
    """A launched server exited or never became ready; the message is one line."""


@dataclass
class LaunchSpec:
    """How to start one deployment's server (a job file's ``launch:`` mapping)."""

    kind: str = "embedded"
    args: dict = field(default_factory=dict)  # embedded / vllm-cpu settings
    command: str | list[str] | None = None  # kind "command": argv template
    model: str | None = None  # the model name requests carry (command: required)
    ready_path: str = "/v1/models"
    startup_timeout_s: float = 120.0
    env: dict = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data, where: str) -> "LaunchSpec":
        if isinstance(data, str):  # "launch: embedded"
            data = {"kind": data}
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a kind ({', '.join(KINDS)}) or a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {unknown}; valid: {sorted(known)}")
        spec = cls(**data)
        if spec.kind not in KINDS:
            raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {spec.kind!r}")
        if not isinstance(spec.args, dict) or not isinstance(spec.env, dict):
            raise UserError(f"{where}: 'args' and 'env' must be mappings")
        if spec.kind == "command":
            if not spec.command:
                raise UserError(f"{where}: kind 'command' needs 'command' (with {{port}})")
            if "{port}" not in " ".join(spec.argv_template()):
                raise UserError(f"{where}: the command must contain {{port}} (etalon picks it)")
            if not spec.model:
                raise UserError(f"{where}: kind 'command' needs 'model' (the name requests carry)")
        elif spec.command is not None:
            raise UserError(f"{where}: 'command' is only for kind 'command'")
        if spec.startup_timeout_s <= 0:
            raise UserError(f"{where}: startup_timeout_s must be > 0")
        spec.check_args(where)
        return spec

    def argv_template(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else [str(a) for a in self.command or ()]

    def check_args(self, where: str) -> None:
        """Typos in ``args`` fail when the job loads, not when its server starts."""
        if self.kind == "embedded":
            from etalon.options import from_mapping
            from etalon.serve import ServeConfig

            bad = sorted({"host", "port"} & set(self.args))
            if bad:
                raise UserError(f"{where}: args: {bad} are set by the job")
            from_mapping(ServeConfig, self.args, f"{where}: args").validate()
        elif self.kind == "vllm-cpu":
            from etalon.launchers.vllm_cpu.settings import SETTING_FIELDS

            allowed = set(SETTING_FIELDS) | {"venv", "model_dir", "model_name", "extra_args",
                                             "omp_threads_bind"}
            unknown = sorted(set(self.args) - allowed)
            if unknown:
                raise UserError(f"{where}: args: unknown vLLM setting(s) {unknown}; valid: "
                                f"{sorted(allowed)}")
        elif self.args:
            raise UserError(f"{where}: kind 'command' takes no 'args' (put them in 'command')")

    def served_model(self) -> str:
        if self.kind == "embedded":
            return str(self.args.get("model", "etalon-embedded"))
        if self.kind == "vllm-cpu":
            from etalon.launchers.vllm_cpu.server import DEFAULT_MODEL_NAME

            return str(self.args.get("model_name", DEFAULT_MODEL_NAME))
        return str(self.model)

    def server(self, log_path: Path) -> ManagedServer:
        """A server object, not started yet."""
        common = dict(log_path=log_path, startup_timeout=self.startup_timeout_s,
                      env={k: str(v) for k, v in self.env.items()})
        if self.kind == "embedded":
            return _Embedded(self.args, self.ready_path, **common)
        if self.kind == "vllm-cpu":
            from etalon.launchers.vllm_cpu import VllmCpuServer

            return VllmCpuServer(**self.args, **common)
        return _Command(self.argv_template(), self.ready_path, **common)


class _Embedded(ManagedServer):
    name = "etalon-serve"

    def __init__(self, args: dict, ready_path: str, **kwargs) -> None:
        super().__init__(stop_grace=10.0, **kwargs)
        self.args, self.health_path = args, ready_path

    def command(self) -> list[str]:
        return [sys.executable, "-m", "etalon.serve", "--host", self.host, "--port",
                str(self.port), *as_flags(self.args)]


class _Command(ManagedServer):
    name = "command"

    def __init__(self, template: list[str], ready_path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.template, self.health_path = template, ready_path

    def command(self) -> list[str]:
        return [part.format(host=self.host, port=self.port) for part in self.template]


def start(spec: LaunchSpec, log_path: Path, where: str) -> tuple[ManagedServer, str]:
    """Starts the server and waits until it is ready: ``(server, its /v1 base URL)``."""
    srv = spec.server(log_path)
    try:
        srv.start_and_wait()
    except ServerStartError as exc:
        srv.stop()
        first = str(exc).splitlines()[0]
        raise LaunchError(f"{where}: server did not start: {first}") from None
    except BaseException:
        srv.stop()
        raise
    return srv, getattr(srv, "base_url", None) or srv.url("/v1")

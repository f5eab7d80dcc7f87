"""Starts the embedded server in a child process on a free loopback port, and stops it.

``run_benchmark --server local``, the profilers and the tests use it; process handling (port,
log file, readiness, clean stop of the process group) is the launchers' ``ManagedServer``.
"""

from __future__ import annotations

import sys

from etalon.launchers.base import ManagedServer


EMBEDDED_MODEL = "etalon-embedded"


class LocalServer(ManagedServer):
    """``with LocalServer(["--scheduler", "sarathi"]) as srv: srv.base_url``."""

    name = "etalon-serve"

    def __init__(self, args: list[str] | None = None, *, startup_timeout: float = 60.0):
        super().__init__(startup_timeout=startup_timeout, stop_grace=10.0)
        self.args = list(args or [])

    def command(self) -> list[str]:
        return [sys.executable, "-m", "etalon.serve", "--host", self.host, "--port", str(self.port),
                *self.args]

    def wait_ready(self, timeout: float | None = None, poll_interval: float = 0.05) -> "LocalServer":
        return super().wait_ready(timeout, poll_interval)  # it starts in well under a second

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"


def resolve_server(server: str | None, model: str | None, server_args: str, tokenizer: str | None,
                   stack, prog: str) -> tuple[str, str, bool]:
    """The base URL and model a CLI should talk to: ``--server local`` starts the embedded server
    (stopped when ``stack`` closes); a URL (or ``$OPENAI_API_BASE``) is checked to answer.

    Returns ``(base_url, model, embedded)``; every mistake is one ``UserError`` line.
    """
    import os
    import shlex

    from etalon.cli_errors import UserError

    server = server or os.environ.get("OPENAI_API_BASE")
    if server is None:
        raise UserError("no server: pass --server local (the embedded server) or --server URL, "
                        "or set OPENAI_API_BASE")
    if server == "local":
        model = model or EMBEDDED_MODEL
        srv_args = ["--model", model, *shlex.split(server_args)]
        if tokenizer:
            srv_args += ["--tokenizer", tokenizer]
        try:
            srv = stack.enter_context(LocalServer(srv_args))
        except RuntimeError as exc:
            lines = str(exc).splitlines()
            why = next((ln for ln in reversed(lines) if ln.strip()), "")
            raise UserError(f"embedded server did not start: {lines[0]}; last log line: {why}") from None
        print(f"{prog}: embedded server at {srv.base_url}", file=sys.stderr)
        return srv.base_url, model, True
    if not server.startswith(("http://", "https://")):
        raise UserError(f"--server must be 'local' or an http(s) URL, got {server!r}")
    if model is None:
        raise UserError("--model is required with a remote server")
    probe(server)
    return server, model, False


def probe(base_url: str) -> None:
    """Fails fast, in one line, when nothing answers at ``base_url``."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    from etalon.cli_errors import UserError

    parts = urlsplit(base_url)
    try:
        with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/", timeout=5):
            pass
    except urllib.error.HTTPError:
        return  # something answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"server {base_url} is unreachable ({reason})") from None

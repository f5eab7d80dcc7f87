"""Starts the embedded server in a child process on a free loopback port, and stops it.

``run_benchmark --server local`` and the tests use it; the server's own stdout line announces
the port it bound, so there is no race between picking a port and binding it.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time

from etalon.serve import LISTENING


class LocalServer:
    """``with LocalServer(["--scheduler", "sarathi"]) as srv: srv.base_url``."""

    def __init__(self, args: list[str] | None = None, *, startup_timeout: float = 60.0):
        self.args = list(args or [])
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.base_url = ""
        self._output: list[str] = []

    def start(self) -> "LocalServer":
        cmd = [sys.executable, "-m", "etalon.serve", "--host", "127.0.0.1", "--port", "0", *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env, start_new_session=True)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = self.proc.stdout.readline()
            if not line:  # the process exited
                break
            self._output.append(line.rstrip())
            if line.startswith(LISTENING):
                self.base_url = line[len(LISTENING):].strip()
                return self
        self.stop()
        tail = " | ".join(self._output[-3:]) or "no output"
        raise RuntimeError(f"embedded server did not start: {tail}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

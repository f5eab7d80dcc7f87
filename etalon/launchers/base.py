"""Process handling shared by the servers etalon starts for its tests and benchmarks.

A :class:`ManagedServer` runs one server command as a child process in its own process
group (so the workers a server forks are stopped with it), writes its output to a log file,
polls until the server answers, and stops the whole group: SIGTERM first, SIGKILL after a
grace period. Subclasses say what to run (:meth:`ManagedServer.command`) and how to tell
that it is ready (:meth:`ManagedServer.check_ready`)::

    class MyServer(ManagedServer):
        name = "my-server"
        health_path = "/health"

        def command(self) -> list[str]:
            return ["my-server", "--port", str(self.port)]

    with MyServer(startup_timeout=60) as srv:
        requests.get(srv.url("/v1/models"))

Only the standard library is used, so importing this costs nothing.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

__all__ = [
    "ManagedServer",
    "ServerStartError",
    "find_free_port",
    "http_get",
    "pid_alive",
    "pids_in_group",
    "process_group_alive",
    "process_group_memory",
    "process_group_rss_bytes",
    "stop_process_group",
    "tail_file",
]

LOOPBACK = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The server exited, or did not become ready in time. The message ends with its log tail."""


# --------------------------------------------------------------------------------------------
# small helpers, usable without a ManagedServer (e.g. by a `stop` command in another process)
# --------------------------------------------------------------------------------------------
def find_free_port(host: str = LOOPBACK) -> int:
    """A port that was free on ``host`` a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0, method: str = "GET") -> tuple[int, bytes]:
    """``(status, body)`` of a GET (or a bodiless ``method``); status 0 when nothing answered.
    Never raises."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:  # noqa: S310 (loopback only)
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


def tail_file(path: str | os.PathLike | None, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a text file ('' when it does not exist)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (e.g. a server another process started)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_group_alive(pgid: int) -> bool:
    """Whether any process (zombies aside from our own children) is left in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pids_in_group(pgid: int) -> list[int]:
    """The live (not zombie) processes of group ``pgid`` (Linux /proc; empty elsewhere)."""
    pids = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", errors="replace")
        except OSError:
            continue
        # fields after the parenthesised command: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def process_group_memory(pgid: int) -> dict[str, int]:
    """Memory of the live processes of group ``pgid`` (Linux /proc; zeros elsewhere).

    ``rss``: resident set sizes added up (counts shared pages once per process, so it
    overstates a group of forked workers); ``pss``: proportional set sizes added up (shared
    pages split between their users: what the group really costs); ``processes``: how many.
    """
    rss = pss = n = 0
    for pid in pids_in_group(pgid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = {}
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0].endswith(":"):
                        fields[parts[0][:-1]] = parts[1]
            rss += int(fields.get("Rss", 0)) * 1024
            pss += int(fields.get("Pss", 0)) * 1024
            n += 1
        except (OSError, ValueError):
            continue
    return {"rss": rss, "pss": pss, "processes": n}


def process_group_rss_bytes(pgid: int) -> int:
    """Proportional resident memory (PSS) of group ``pgid``: see :func:`process_group_memory`."""
    return process_group_memory(pgid)["pss"]


def stop_process_group(pgid: int, *, grace: float = 20.0, proc: subprocess.Popen | None = None) -> str:
    """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL what is left.

    ``proc`` is the group leader when this process started it, so it gets reaped.
    Returns how it ended: ``"not running"``, ``"terminated"`` or ``"killed"``.
    """

    def leader_done() -> bool:
        return proc is None or proc.poll() is not None

    def group_gone() -> bool:
        if not leader_done():
            return False
        if os.path.isdir("/proc"):
            # Zombies of processes we did not start are reaped by init; ignore them.
            return not pids_in_group(pgid)
        return not process_group_alive(pgid)

    if group_gone():
        return "not running"
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        if proc is not None:
            proc.wait()
        return "not running"
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if group_gone():
            return "terminated"
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc is not None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not group_gone():
        time.sleep(0.1)
    return "killed"


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_live_servers: "weakref.WeakSet[ManagedServer]" = weakref.WeakSet()


@atexit.register
def _stop_live_servers() -> None:
    for srv in list(_live_servers):
        if srv.stop_at_exit:
            try:
                srv.stop()
            except Exception:  # noqa: BLE001 (best effort at interpreter exit)
                pass


# --------------------------------------------------------------------------------------------
class ManagedServer:
    """A server child process with a port, a log file, a readiness probe and a clean stop.

    Parameters
    ----------
    host, port:
        Where the server listens. ``port=None`` picks a free loopback port at :meth:`start`.
    log_path:
        File that receives the server's stdout and stderr (appended). ``None``: a file named
        after the server and port under :attr:`default_log_dir`.
    startup_timeout:
        Seconds :meth:`wait_ready` waits for :meth:`check_ready` before giving up.
    stop_grace:
        Seconds between SIGTERM and SIGKILL in :meth:`stop`.
    env:
        Extra environment variables for the child (added to this process's environment).
    die_with_parent:
        Linux only: the server receives SIGTERM when the thread that started it dies, even if
        that process is killed with SIGKILL. Leave it off for a server that must outlive its
        starter (a detached ``start`` command).
    stop_at_exit:
        Stop the server when this interpreter exits normally.
    """

    name = "server"
    health_path = "/health"
    #: how many times :meth:`start` retries on a fresh port when the chosen one was taken
    port_retries = 2

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        log_path: str | os.PathLike | None = None,
        startup_timeout: float = 300.0,
        stop_grace: float = 20.0,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        die_with_parent: bool = True,
        stop_at_exit: bool = True,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = port
        self.log_path: Path | None = Path(log_path) if log_path else None
        self._log_path_given = log_path is not None
        self.startup_timeout = float(startup_timeout)
        self.stop_grace = float(stop_grace)
        self.extra_env = dict(env or {})
        self.cwd = str(cwd) if cwd else None
        self.die_with_parent = die_with_parent
        self.stop_at_exit = stop_at_exit
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None  # time.time() of the spawn
        self.ready_at: float | None = None
        self.startup_seconds: float | None = None  # spawn -> ready, wall clock
        self._spawned_mono: float | None = None
        self._log_file = None

    # ---- what subclasses provide ------------------------------------------------------------
    def command(self) -> list[str]:
        """The argv of the server; :attr:`port` is set when this is called."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The child's full environment."""
        return {**os.environ, "PYTHONUNBUFFERED": "1", **self.extra_env}

    def check_ready(self) -> bool:
        """One readiness probe; the default wants HTTP 200 from :attr:`health_path`."""
        status, _ = http_get(self.url(self.health_path), timeout=2.0)
        return status == 200

    def on_ready(self) -> None:
        """Called once after the server became ready (e.g. to read what it reports)."""

    @property
    def default_log_dir(self) -> Path:
        return Path(os.environ.get("TMPDIR", "/tmp")) / "etalon-servers"

    # ---- addresses --------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.name}: no port yet (call start())")
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "") -> str:
        return self.root_url + (path if not path or path.startswith("/") else "/" + path)

    # ---- state ------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def pgid(self) -> int | None:
        # start_new_session=True makes the child the leader of a group with its own pid.
        return self.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        return tail_file(self.log_path, lines)

    def rss_bytes(self) -> int:
        """Resident memory (PSS, shared pages counted once) of the server and what it forked."""
        return process_group_rss_bytes(self.pgid) if self.running and self.pgid else 0

    def memory(self) -> dict[str, int]:
        """``{"rss", "pss", "processes"}`` of the server's process group (see process_group_memory)."""
        if not (self.running and self.pgid):
            return {"rss": 0, "pss": 0, "processes": 0}
        return process_group_memory(self.pgid)

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> "ManagedServer":
        """Spawn the server (does not wait; see :meth:`wait_ready`)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if self.port is None:
            self.port = find_free_port(self.host)
        if self.log_path is None:
            self.log_path = self.default_log_dir / f"{self.name}-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = self.command()
        self._log_file = open(self.log_path, "ab", buffering=0)
        header = f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}: {json.dumps(argv)}\n"
        self._log_file.write(header.encode())
        use_pdeathsig = (
            self.die_with_parent and sys.platform.startswith("linux")
            and threading.current_thread() is threading.main_thread()
        )
        self.started_at = time.time()
        self._spawned_mono = time.monotonic()
        self.ready_at = self.startup_seconds = None
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_set_parent_death_signal if use_pdeathsig else None,  # noqa: PLW1509
        )
        _live_servers.add(self)
        return self

    def wait_ready(self, timeout: float | None = None, poll_interval: float = 0.5) -> "ManagedServer":
        """Block until :meth:`check_ready` passes.

        Raises :class:`ServerStartError` (and stops what is left of the server) when the
        process exits first or ``timeout`` (default :attr:`startup_timeout`) runs out.
        """
        if self.proc is None:
            raise RuntimeError(f"{self.name}: start() was not called")
        timeout = self.startup_timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._close_log()
                raise ServerStartError(
                    f"{self.name} exited with code {rc} before it was ready "
                    f"(log: {self.log_path})\n--- log tail ---\n{self.log_tail()}"
                )
            if self.check_ready():
                self.ready_at = time.time()
                self.startup_seconds = time.monotonic() - (self._spawned_mono or time.monotonic())
                self.on_ready()
                return self
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.stop()
                raise ServerStartError(
                    f"{self.name} was not ready after {timeout:.0f}s on {self.root_url} "
                    f"(log: {self.log_path})\n--- log tail ---\n{tail}"
                )
            time.sleep(poll_interval)

    def start_and_wait(self, timeout: float | None = None) -> "ManagedServer":
        """:meth:`start` + :meth:`wait_ready`, retrying on a new free port if the port was taken."""
        attempts = 1 + (self.port_retries if self.requested_port is None else 0)
        for attempt in range(attempts):
            self.start()
            try:
                return self.wait_ready(timeout)
            except ServerStartError as e:
                taken = "address already in use" in str(e).lower() or f"errno {errno.EADDRINUSE}" in str(e).lower()
                self.stop()
                if not taken or attempt == attempts - 1:
                    raise
                self.port = None  # pick another one
                if not self._log_path_given:
                    self.log_path = None
        raise AssertionError("unreachable")

    def stop(self) -> str:
        """Stop the server and everything it forked. Safe to call more than once."""
        outcome = "not running"
        if self.proc is not None and self.pgid is not None:
            outcome = stop_process_group(self.pgid, grace=self.stop_grace, proc=self.proc)
        self._close_log()
        _live_servers.discard(self)
        return outcome

    def _close_log(self) -> None:
        if self._log_file is not None:
            try:
                self._log_file.close()
            finally:
                self._log_file = None

    # ---- context manager --------------------------------------------------------------------
    def __enter__(self) -> "ManagedServer":
        try:
            return self.start_and_wait()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = self.root_url if self.port is not None else "no port"
        return f"<{type(self).__name__} {self.name} {where} pid={self.pid} {state}>"

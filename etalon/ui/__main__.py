"""``etalon ui`` / ``python -m etalon.ui``: the web app (Streamlit, on 127.0.0.1 unless told
otherwise) or, with ``--desktop``, the capacity planner in a native Tk window.

The web app needs the ``ui`` extra (``pip install 'etalon[ui]'``); the desktop window only the
standard library's tkinter. ``--history FILE`` (or ``$ETALON_HISTORY``; ``off`` to disable)
chooses the calculation history both show and record into.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from etalon.cli_errors import UserError
from etalon.commands import entry_points, exit_process
from etalon.options import add_options, config_from_args, option
from etalon.ui.history import ENV, history_path

PROG = "etalon.ui"
DESCRIPTION = ("The web app: capacity planner, latency and distributed estimators, simulator, "
               "recommendation, results explorer and calculation history (or, with --desktop, "
               "the planner in a native window).")


@dataclass
class UIConfig:
    host: str = option("127.0.0.1", "address the web app binds (0.0.0.0 exposes it to the "
                                    "network: the app runs simulations on request)")
    port: int = option(8501, "port of the web app")
    desktop: bool = option(False, "the capacity planner in a native Tk window instead")
    history: str | None = option(None, f"calculation history file (none: ${ENV}, else "
                                       "~/.etalon/history.sqlite; 'off': no history)",
                                 metavar="FILE")

    def validate(self) -> UIConfig:
        if not 0 < self.port < 65536:
            raise UserError(f"--port must be 1..65535, got {self.port}")
        return self


def configure(parser) -> None:
    add_options(parser, UIConfig)


def streamlit_command(cfg: UIConfig) -> list[str]:
    """The ``streamlit run`` command line of the app: headless, no usage statistics, bound
    to ``cfg.host``."""
    app = Path(__file__).with_name("app.py")
    return [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", cfg.host, "--server.port", str(cfg.port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "minimal"]


def execute(ns) -> int:
    cfg = config_from_args(UIConfig, ns).validate()
    if cfg.history is not None:  # absolute, so the server and its pages agree wherever they run
        path = history_path(cfg.history)
        os.environ[ENV] = "off" if path is None else str(path.resolve())
    if cfg.desktop:
        from etalon.ui.desktop import run_desktop

        return run_desktop()
    if find_spec("streamlit") is None:
        raise UserError("the web app needs Streamlit: pip install 'etalon[ui]' (or run "
                        "`etalon ui --desktop` for the planner in a Tk window)")
    print(f"{PROG}: serving on http://{cfg.host}:{cfg.port} (Ctrl-C stops it)", file=sys.stderr,
          flush=True)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"{PROG}: warning: --host {cfg.host} lets other machines use the app (it runs "
              "simulations and reads folders on request)", file=sys.stderr, flush=True)
    return _serve(streamlit_command(cfg))


def _serve(command: list[str]) -> int:
    """Runs the Streamlit server as a child and passes a SIGTERM on to it, so stopping
    ``etalon ui`` never leaves a server behind."""
    proc = subprocess.Popen(command)

    def stop(signum: int, frame: object) -> None:
        proc.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the child too; let it finish
        proc.terminate()
        proc.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())

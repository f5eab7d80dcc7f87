"""``python -m etalon.serve``: the embedded OpenAI-compatible server with modelled step times.

It runs the same engine as the simulator against the wall clock, so a benchmark of it can be
compared with a simulation of it. Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from etalon.cli_errors import run_cli
from etalon.engine import Engine
from etalon.engine.config import add_engine_args, engine_config_from_args
from etalon.perf.registry import build_perf_model, load_perf_spec
from etalon.server import EngineRunner, ServerConfig, build_app

LISTENING = "etalon.serve: listening on"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m etalon.serve", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    p.add_argument("--model", default="etalon-embedded", help="model name the server reports")
    p.add_argument("--tokenizer", default=None,
                   help="local Hugging Face tokenizer folder for counting prompt tokens "
                        "(default: etalon's word-level approximation)")
    p.add_argument("--perf-model-file", default=None,
                   help="JSON/YAML perf-model description ({kind: parametric|roofline|profiled, ...}); "
                        "default: the parametric model's defaults")
    p.add_argument("--profile", default=None, help="a fitted profile (JSON): time steps with it")
    p.add_argument("--max-queue", type=int, default=1024,
                   help="waiting requests beyond which the server answers 429")
    add_engine_args(p)
    return p


def perf_model_from_args(args):
    if args.profile:
        return build_perf_model({"kind": "profiled", "path": args.profile}, where=args.profile)
    if args.perf_model_file:
        return build_perf_model(load_perf_spec(args.perf_model_file), where=args.perf_model_file)
    return build_perf_model({"kind": "parametric"})


async def serve(args) -> None:
    from etalon.workload.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    engine = Engine(engine_config_from_args(args), perf_model_from_args(args))
    runner = EngineRunner(engine, max_queue=args.max_queue)
    app = build_app(runner, tokenizer.count, ServerConfig(model=args.model, max_queue=args.max_queue))
    app_runner = web.AppRunner(app, access_log=None)
    await app_runner.setup()
    site = web.TCPSite(app_runner, args.host, args.port)
    await site.start()
    port = app_runner.addresses[0][1]
    print(f"{LISTENING} http://{args.host}:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app_runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> None:
        try:
            import uvloop
            uvloop.run(serve(args))
        except ImportError:
            asyncio.run(serve(args))

    return run_cli("etalon.serve", go)


if __name__ == "__main__":
    sys.exit(main())

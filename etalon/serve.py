"""``python -m etalon.serve``: the embedded OpenAI-compatible server with modelled step times.

It runs the same engine as the simulator against the wall clock, so a benchmark of it can be
compared with a simulation of it. Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

from aiohttp import web

from etalon.engine import Engine
from etalon.engine.config import EngineConfig
from etalon.commands import entry_points, exit_process
from etalon.options import add_options, config_from_args, embed, option
from etalon.perf.config import PerfModelConfig
from etalon.server import EngineRunner, ServerConfig, build_app

PROG = "etalon.serve"
DESCRIPTION = "The embedded OpenAI-compatible server with modelled step times."
LISTENING = "etalon.serve: listening on"


@dataclass
class ServeConfig:
    host: str = option("127.0.0.1", "address to bind")
    port: int = option(8000, "port (0 picks a free one)")
    model: str = option("etalon-embedded", "model name the server reports")
    tokenizer: str | None = option(None, "local Hugging Face tokenizer folder for counting "
                                         "prompt tokens (none: etalon's approximation)",
                                   metavar="DIR")
    max_queue: int = option(1024, "waiting requests beyond which the server answers 429")
    perf: PerfModelConfig = embed(PerfModelConfig, title="timing (perf model)")
    engine: EngineConfig = embed(EngineConfig, title="engine")

    def validate(self) -> ServeConfig:
        self.perf.validate()
        self.engine.validate()
        return self


def configure(parser) -> None:
    add_options(parser, ServeConfig)


def execute(ns) -> int:
    cfg = config_from_args(ServeConfig, ns).validate()
    try:
        import uvloop
        uvloop.run(serve(cfg))
    except ImportError:
        asyncio.run(serve(cfg))
    return 0


async def serve(cfg: ServeConfig) -> None:
    from etalon.workload.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(cfg.tokenizer)
    engine = Engine(cfg.engine, cfg.perf.build())
    runner = EngineRunner(engine, max_queue=cfg.max_queue)
    app = build_app(runner, tokenizer.count, ServerConfig(model=cfg.model, max_queue=cfg.max_queue),
                    encode=tokenizer.encode if cfg.engine.enable_prefix_caching else None)
    app_runner = web.AppRunner(app, access_log=None)
    await app_runner.setup()
    site = web.TCPSite(app_runner, cfg.host, cfg.port)
    await site.start()
    port = app_runner.addresses[0][1]
    print(f"{LISTENING} http://{cfg.host}:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app_runner.cleanup()


build_parser, main = entry_points(__name__)

if __name__ == "__main__":
    exit_process(main())

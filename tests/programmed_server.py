"""A tiny OpenAI-style streaming server with programmed timing and faults, for client tests.

The path picks the behaviour, so one server serves every case:
``/v1/completions`` streams ``max_tokens`` tokens with the programmed TTFT and inter-token gap;
``/fault/<kind>/v1/completions`` injects a fault: ``http500``, ``cut`` (connection dropped
mid-stream), ``stall`` (stops sending), ``malformed`` (a non-JSON event), ``chunky`` (three
tokens per SSE event, with usage).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

from aiohttp import web


class ProgrammedServer:
    def __init__(self, ttft: float = 0.05, itl: float = 0.02):
        self.ttft, self.itl = ttft, itl
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fault_url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/fault/{kind}/v1"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info.get("kind", "")
        body = await request.json()
        n = int(body.get("max_tokens", 16))
        if kind == "http500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(obj) -> None:
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        await asyncio.sleep(self.ttft)
        step = 3 if kind == "chunky" else 1
        sent = 0
        while sent < n:
            k = min(step, n - sent)
            if kind == "cut" and sent >= n // 2:
                request.transport.close()
                return resp
            if kind == "stall" and sent >= 2:
                await asyncio.sleep(3600)
            if kind == "malformed" and sent == 1:
                await resp.write(b"data: {not json\n\n")
            await send({"choices": [{"index": 0, "text": " tok" * k, "finish_reason": None}]})
            sent += k
            if sent < n:
                await asyncio.sleep(self.itl * k)
        await send({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
        if (body.get("stream_options") or {}).get("include_usage") and kind != "nousage":
            await send({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": n,
                                                 "total_tokens": 7 + n}})
        await resp.write(b"data: [DONE]\n\n")
        return resp

    def start(self) -> "ProgrammedServer":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/v1/completions", self._handle)
            app.router.add_post("/fault/{kind}/v1/completions", self._handle)
            runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(runner.setup())
            self._loop.run_until_complete(web.SockSite(runner, sock).start())
            self._ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(runner.cleanup())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

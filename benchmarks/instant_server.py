"""A server that streams immediately: N tokens per request with no delay (for load-generator
overhead benchmarks). ``python benchmarks/instant_server.py PORT [--per-token]``: by default all
N events go out in one write (one TCP burst, the client parses them together); with
``--per-token`` each token is its own write and the loop yields between them, so the client
reads N separate events, as it does from vLLM at ``--stream-interval 1``."""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    n = int(body.get("max_tokens", 16))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    chunk = b'data: {"choices":[{"index":0,"text":" x","finish_reason":null}]}\n\n'
    if PER_TOKEN:
        for _ in range(n):
            await resp.write(chunk)
            await asyncio.sleep(0)
    else:
        await resp.write(chunk * n)
    usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}
    await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode()
                     + b"\n\ndata: [DONE]\n\n")
    return resp


PER_TOKEN = "--per-token" in sys.argv[2:]

if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)

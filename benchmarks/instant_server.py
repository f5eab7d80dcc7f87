"""A server that streams immediately: N tokens per request with no delay (for load-generator
overhead benchmarks). ``python benchmarks/instant_server.py PORT``."""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    n = int(body.get("max_tokens", 16))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    chunk = b'data: {"choices":[{"index":0,"text":" x","finish_reason":null}]}\n\n'
    await resp.write(chunk * n)
    usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}
    await resp.write(b"data: " + json.dumps({"choices": [], "usage": usage}).encode()
                     + b"\n\ndata: [DONE]\n\n")
    return resp


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)

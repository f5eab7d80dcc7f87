"""A server that streams immediately: N tokens per request with no delay (for load-generator
overhead benchmarks).

    python benchmarks/instant_server.py PORT [--per-token] [--uvicorn]

By default all N events go out in one write (one TCP burst, the client parses them together);
with ``--per-token`` each token is its own write and the loop yields between them, so the client
reads N separate events, as it does from vLLM at ``--stream-interval 1``.

The server shares the machine with the load generator, so its own cost per event is charged to
the benchmark. ``--uvicorn`` serves the same stream from a bare ASGI app on uvicorn with its
httptools parser (vLLM's own HTTP stack, minus FastAPI): 17-22 % of a core at 800-1,200 req/s
of 20 events where aiohttp's took 23-28 %, so a little more of the CPU goes to the client being
measured. It needs ``pip install uvicorn
httptools`` (the ``bench`` extra).
"""

from __future__ import annotations

import asyncio
import json
import sys

CHUNK = b'data: {"choices":[{"index":0,"text":" x","finish_reason":null}]}\n\n'


def _tail(n: int) -> bytes:
    usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}
    return b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\ndata: [DONE]\n\n"


async def completions(request):
    from aiohttp import web

    body = await request.json()
    n = int(body.get("max_tokens", 16))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if PER_TOKEN:
        for _ in range(n):
            await resp.write(CHUNK)
            await asyncio.sleep(0)
    else:
        await resp.write(CHUNK * n)
    await resp.write(_tail(n))
    return resp


async def asgi_app(scope, receive, send) -> None:
    """The same stream as ``completions``, as a bare ASGI app (no framework)."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    n = int(json.loads(body or b"{}").get("max_tokens", 16))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    if PER_TOKEN:
        for _ in range(n):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            await asyncio.sleep(0)
    else:
        await send({"type": "http.response.body", "body": CHUNK * n, "more_body": True})
    await send({"type": "http.response.body", "body": _tail(n)})


PER_TOKEN = "--per-token" in sys.argv[2:]

if __name__ == "__main__":
    port = int(sys.argv[1])
    if "--uvicorn" in sys.argv[2:]:
        import uvicorn

        uvicorn.run(asgi_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                    access_log=False, log_level="warning", lifespan="off")
    else:
        from aiohttp import web

        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)

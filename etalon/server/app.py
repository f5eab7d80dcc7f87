"""An OpenAI-compatible HTTP front end (aiohttp) whose tokens come from the engine runner.

Routes: ``/health``, ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` — streaming
(SSE, with ``stream_options.include_usage``) and non-streaming, with ``usage`` counts — and
``/metrics``: the engine's state in Prometheus text under vLLM's names (``engine/gauges.py``).
Every request generates exactly ``max_tokens`` tokens (as vLLM does with ``ignore_eos``): the
server exists to have known timing, not meaningful text. With prefix caching on, a prompt's
full blocks are hashed from its token ids, so prompts that share a prefix share KV blocks.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from etalon.engine.gauges import engine_gauges, prometheus_text
from etalon.engine.kv_cache import token_block_hashes
from etalon.server.runner import EngineRunner, QueueFull

# Output text: one common word per token, each a single token under the word-level approximation.
_WORDS = ("the", "model", "serves", "tokens", "to", "many", "users", "at", "once", "and", "every",
          "request", "streams", "its", "answer", "back")
DEFAULT_MAX_TOKENS = 16


@dataclass
class ServerConfig:
    model: str = "etalon-embedded"
    max_queue: int = 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.status}}
        return web.json_response(body, status=self.status)


def _token_text(index: int) -> str:
    return " " + _WORDS[index % len(_WORDS)]


def _prompt_text(body: dict, chat: bool) -> str:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list")
        parts = []
        for i, m in enumerate(messages):
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            if not isinstance(content, str):
                raise ApiError(400, f"messages[{i}].content must be a string")
            parts.append(content)
        return "\n".join(parts)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "'prompt' must be a string")
    return prompt


def _max_tokens(body: dict) -> int:
    value = body.get("max_completion_tokens", body.get("max_tokens", DEFAULT_MAX_TOKENS))
    if value is None:
        value = DEFAULT_MAX_TOKENS
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ApiError(400, f"'max_tokens' must be a positive integer, got {value!r}")
    return value


def build_app(runner: EngineRunner, count_tokens: Callable[[str], int],
              config: ServerConfig = ServerConfig(),
              encode: Callable[[str], list[int]] | None = None) -> web.Application:
    """The aiohttp application; ``count_tokens`` counts prompt tokens for admission and usage;
    ``encode`` (given when the engine caches prefixes) gives the ids its blocks are hashed from."""
    block_size = runner.engine.pool.block_size

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": config.model, "object": "model", "created": 0, "owned_by": "etalon"}]})

    def handler(chat: bool):
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                try:
                    body = await request.json()
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ApiError(400, "request body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "request body must be a JSON object")
                text = _prompt_text(body, chat)
                prompt_tokens = max(1, count_tokens(text))
                output_tokens = _max_tokens(body)
                hashes = (token_block_hashes(encode(text)[:prompt_tokens], block_size)
                          if encode is not None else None)
                try:
                    seq = runner.submit(prompt_tokens, output_tokens, hashes)
                except QueueFull as exc:
                    raise ApiError(429, str(exc), "rate_limit_exceeded") from None
                except ValueError as exc:
                    raise ApiError(400, str(exc)) from None
            except ApiError as err:
                return err.response()
            try:
                if body.get("stream"):
                    return await _stream(request, body, seq, chat, prompt_tokens)
                return await _whole(body, seq, chat, prompt_tokens)
            finally:
                runner.abort(seq)  # no-op once finished; frees KV when the client went away
        return handle

    async def _whole(body: dict, seq, chat: bool, prompt_tokens: int) -> web.Response:
        produced = 0
        while True:
            event = await seq.tag.get()
            if event.done:
                break
            produced += event.count
        text = "".join(_token_text(i) for i in range(produced))
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}} if chat
                  else {"index": 0, "text": text, "logprobs": None})
        choice["finish_reason"] = "length"
        return web.json_response({
            "id": _new_id(chat), "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": config.model, "choices": [choice],
            "usage": _usage(prompt_tokens, produced)})

    async def _stream(request: web.Request, body: dict, seq, chat: bool,
                      prompt_tokens: int) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        rid, created = _new_id(chat), int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices: list, usage: dict | None = None) -> bytes:
            data = {"id": rid, "object": obj, "created": created, "model": config.model,
                    "choices": choices}
            if usage is not None:
                data["usage"] = usage
            return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

        if chat:
            await resp.write(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]))
        produced = 0
        while True:
            event = await seq.tag.get()
            if event.done:
                break
            text = "".join(_token_text(produced + i) for i in range(event.count))
            produced += event.count
            piece = {"content": text} if chat else None
            choice = ({"index": 0, "delta": piece, "finish_reason": None} if chat
                      else {"index": 0, "text": text, "logprobs": None, "finish_reason": None})
            await resp.write(chunk([choice]))
        final = ({"index": 0, "delta": {}, "finish_reason": "length"} if chat
                 else {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"})
        await resp.write(chunk([final]))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(chunk([], _usage(prompt_tokens, produced)))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def metrics(_: web.Request) -> web.Response:
        text = prometheus_text(engine_gauges(runner.engine), {"model_name": config.model})
        return web.Response(body=text, content_type="text/plain", charset="utf-8")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", handler(chat=False))
    app.router.add_post("/v1/chat/completions", handler(chat=True))

    async def on_startup(_: web.Application) -> None:
        runner.start()

    async def on_cleanup(_: web.Application) -> None:
        await runner.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def _new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}

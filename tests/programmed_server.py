"""A tiny OpenAI-style streaming server with programmed timing, faults and server quirks.

The path picks the behaviour, so one server serves every case. ``/v1/completions`` and
``/v1/chat/completions`` stream ``max_tokens`` tokens with the programmed TTFT and inter-token
gap, one token per SSE event, a ``finish_reason`` and (when asked) usage at the end — what vLLM
does with ``ignore_eos``. ``/fault/<flags>/v1/...`` changes that; flags are joined by ``+``:

* faults: ``http500``, ``cut`` (connection dropped mid-stream), ``stall`` (stops sending),
  ``malformed`` (a non-JSON event);
* quirks of servers etalon meets: ``nousage`` (streams end without usage), ``eos`` (ignores
  ``ignore_eos``/``min_tokens``: a prompt whose CRC-32 is 0 or 1 mod 4 ends after that many
  tokens, finish_reason ``stop``), ``nofinish`` (streams carry no finish_reason), ``chunkN``
  (N tokens per SSE event; ``chunky`` is ``chunk3``), ``merge`` (each token is one character,
  so re-tokenizing the text gives fewer tokens than were generated).

With a ``tokenizer`` (a transformers tokenizer) the server counts prompts as vLLM does — the
text, or for chat the chat template with the generation prompt — and its tokens are words that
are one token each; without one a prompt counts 7 tokens and each token is `` tok``.
A request with ``"stream": false`` gets the whole answer with its usage and finish reason, the
server's own account, whatever the flags say about streams.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

FAULTS = ("http500", "cut", "stall", "malformed")
MERGE_TEXT = "the model serves tokens "


@dataclass(frozen=True)
class Behaviour:
    """What one request path asks of the server (see the module docstring)."""

    fault: str | None = None
    usage: bool = True
    honours_ignore_eos: bool = True
    finish_reason: bool = True
    tokens_per_chunk: int = 1
    merge: bool = False

    @classmethod
    def parse(cls, flags: str) -> "Behaviour":
        kw: dict[str, Any] = {}
        for flag in filter(None, flags.split("+")):
            if flag in FAULTS:
                kw["fault"] = flag
            elif flag == "nousage":
                kw["usage"] = False
            elif flag == "eos":
                kw["honours_ignore_eos"] = False
            elif flag == "nofinish":
                kw["finish_reason"] = False
            elif flag == "chunky":
                kw["tokens_per_chunk"] = 3
            elif m := re.fullmatch(r"chunk(\d+)", flag):
                kw["tokens_per_chunk"] = int(m.group(1))
            elif flag == "merge":
                kw["merge"] = True
            else:
                raise ValueError(f"unknown flag {flag!r}")
        return cls(**kw)


class ProgrammedServer:
    def __init__(self, ttft: float = 0.05, itl: float = 0.02, tokenizer: Any = None):
        self.ttft, self.itl = ttft, itl
        self.tokenizer = tokenizer
        self._words = _one_token_words(tokenizer) if tokenizer is not None else [" tok"]
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fault_url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/fault/{kind}/v1"

    # -- what the server "generates" -------------------------------------------------------

    def prompt_tokens(self, body: dict, chat: bool) -> int:
        if self.tokenizer is None:
            return 7
        if chat:
            ids = self.tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True,
                                                     tokenize=True)
            return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
        return len(self.tokenizer.encode(body["prompt"], add_special_tokens=False))

    @staticmethod
    def generated(body: dict, chat: bool, how: Behaviour) -> tuple[int, str]:
        """``(tokens, finish_reason)`` of a request."""
        n = int(body.get("max_tokens", 16))
        if not how.honours_ignore_eos:
            text = "\n".join(m["content"] for m in body["messages"]) if chat else body["prompt"]
            early = zlib.crc32(text.encode()) % 4
            if early < 2 and early < n:
                return early, "stop"
        return n, "length"

    def token_text(self, i: int, how: Behaviour) -> str:
        if how.merge:
            return MERGE_TEXT[i % len(MERGE_TEXT)]
        return self._words[i % len(self._words)]

    # -- HTTP --------------------------------------------------------------------------------

    def _handler(self, chat: bool):
        async def handle(request: web.Request) -> web.StreamResponse:
            how = Behaviour.parse(request.match_info.get("kind", ""))
            body = await request.json()
            if how.fault == "http500":
                return web.json_response({"error": {"message": "boom"}}, status=500)
            n, finish = self.generated(body, chat, how)
            usage = {"prompt_tokens": self.prompt_tokens(body, chat), "completion_tokens": n,
                     "total_tokens": 0}
            usage["total_tokens"] = usage["prompt_tokens"] + n
            if not body.get("stream"):
                await asyncio.sleep(self.ttft + self.itl * max(0, n - 1))
                text = "".join(self.token_text(i, how) for i in range(n))
                choice = ({"index": 0, "message": {"role": "assistant", "content": text}} if chat
                          else {"index": 0, "text": text})
                return web.json_response({"choices": [{**choice, "finish_reason": finish}],
                                          "usage": usage})
            return await self._stream(request, body, chat, how, n, finish, usage)
        return handle

    async def _stream(self, request: web.Request, body: dict, chat: bool, how: Behaviour,
                      n: int, finish: str, usage: dict) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(obj) -> None:
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        def choice(text: str | None, reason: str | None) -> dict:
            if chat:
                return {"index": 0, "delta": {"content": text} if text else {},
                        "finish_reason": reason}
            return {"index": 0, "text": text or "", "finish_reason": reason}

        if chat:
            await send({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]})
        await asyncio.sleep(self.ttft)
        sent = 0
        while sent < n:
            k = min(how.tokens_per_chunk, n - sent)
            if how.fault == "cut" and sent >= n // 2:
                request.transport.close()
                return resp
            if how.fault == "stall" and sent >= 2:
                await asyncio.sleep(3600)
            if how.fault == "malformed" and sent == 1:
                await resp.write(b"data: {not json\n\n")
            await send({"choices": [choice("".join(self.token_text(sent + i, how)
                                                   for i in range(k)), None)]})
            sent += k
            if sent < n:
                await asyncio.sleep(self.itl * k)
        await send({"choices": [choice(None, finish if how.finish_reason else None)]})
        if (body.get("stream_options") or {}).get("include_usage") and how.usage:
            await send({"choices": [], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        return resp

    def start(self) -> "ProgrammedServer":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            for prefix in ("", "/fault/{kind}"):
                app.router.add_post(prefix + "/v1/completions", self._handler(chat=False))
                app.router.add_post(prefix + "/v1/chat/completions", self._handler(chat=True))
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


def _one_token_words(tokenizer: Any) -> list[str]:
    """Vocabulary words (`` word``, 3+ letters) that encode to exactly one token, so a text of
    them re-tokenizes into as many tokens as were generated."""
    words = []
    for piece in sorted(tokenizer.get_vocab()):
        text = tokenizer.convert_tokens_to_string([piece])
        if (text.startswith(" ") and text[1:].isalpha() and len(text) > 3
                and len(tokenizer.encode(text, add_special_tokens=False)) == 1):
            words.append(text)
    if not words:
        raise ValueError("the tokenizer has no one-token words")
    return words

"""Streaming clients for OpenAI-compatible ``/v1/chat/completions`` and ``/v1/completions``.

One aiohttp session per client (so per Ray actor), no connection cap below the configured
concurrency, a large read buffer for long lines. The two endpoints differ only in the request
body, where a chunk keeps its text and how a prompt is counted before sending (chat: through the
tokenizer's chat template); everything else (SSE parsing, timing, token accounting, finish
reasons, errors) is shared.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import orjson

from etalon.client.base import ClientConfig, Clock, LLMClient
from etalon.client.finish import settle_finish
from etalon.client.sse import SSEError, iter_sse_data
from etalon.client.token_accounting import settle_token_counts
from etalon.records import RequestRecord
from etalon.workload.request import Request

READ_BUFSIZE = 4 * 1024 * 1024
# How long an idle connection is kept for reuse: below the 5 s after which uvicorn (so vLLM and
# SGLang) closes an idle keep-alive connection. aiohttp's 15 s let a request go out on a
# connection the server was closing at that moment: "Connection reset by peer" on a session's
# turn sent ~5 s after the previous answer (a real-engine test run here).
KEEPALIVE_S = 4.0


def _json(text: str):
    """An event's JSON: orjson (a third of the json module's time per event), and the json
    module for what orjson refuses but Python's encoder writes (NaN, Infinity)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class OpenAIClient(LLMClient):
    """Shared streaming logic; subclasses say which endpoint and how to find a chunk's text."""

    endpoint = ""

    def __init__(self, config: ClientConfig):
        super().__init__(config)
        self._session: aiohttp.ClientSession | None = None
        self._url = config.base_url.rstrip("/") + self.endpoint
        self._tokenizer = None

    async def open(self, max_concurrency: int) -> None:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        connector = aiohttp.TCPConnector(limit=max(100, max_concurrency * 2), limit_per_host=0,
                                         ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_S)
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout,
                                        sock_read=self.config.idle_timeout)
        self._session = aiohttp.ClientSession(headers=headers, connector=connector,
                                              timeout=timeout, read_bufsize=READ_BUFSIZE)
        self._load_tokenizer()

    def _load_tokenizer(self):
        """The ``--tokenizer`` (loaded once), or None."""
        if self._tokenizer is None and self.config.tokenizer is not None:
            from etalon.workload.tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer(self.config.tokenizer)
        return self._tokenizer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- per-endpoint parts ----------------------------------------------------------------

    def body(self, request: Request, prompt: str) -> dict:
        raise NotImplementedError

    @staticmethod
    def chunk_text(choice: dict) -> str | None:
        raise NotImplementedError

    def count_prompt(self, prompt: str) -> dict[str, int]:
        tokenizer = self._load_tokenizer()
        return {} if tokenizer is None else {"tokenizer": tokenizer.count(prompt)}

    def _common_body(self, request: Request) -> dict:
        body = {
            "model": self.config.model,
            "max_tokens": request.output_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.config.ignore_eos:  # vLLM extensions: produce exactly the requested length
            body["ignore_eos"] = True
            body["min_tokens"] = request.output_tokens
        body.update(self.config.additional_sampling_params)
        return body

    # -- the request -----------------------------------------------------------------------

    async def send(self, request: Request, prompt: str, record: RequestRecord,
                   clock: Clock) -> str | None:
        assert self._session is not None, "client used before open()"
        texts: list[str] = []
        usage: dict | None = None
        record.sent_at = clock.now()
        try:
            async with self._session.post(self._url, data=json.dumps(self.body(request, prompt))) as resp:
                if resp.status != 200:
                    detail = (await resp.text())[:200].replace("\n", " ")
                    record.error_type = f"http_{resp.status}"
                    record.error_message = f"HTTP {resp.status}: {detail}"
                    return
                done = False
                async for data in iter_sse_data(resp.content.iter_any()):
                    now = clock.now()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        event = _json(data)
                    except json.JSONDecodeError:
                        raise SSEError(f"event is not JSON: {data[:80]!r}") from None
                    if not isinstance(event, dict):
                        raise SSEError(f"event is not a JSON object: {data[:80]!r}")
                    if event.get("error"):
                        record.error_type = "server_error"
                        record.error_message = str(event["error"])[:300]
                        return
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or ():
                        text = self.chunk_text(choice)
                        if text:  # role-only and empty chunks carry no tokens
                            texts.append(text)
                            record.chunk_times.append(now)
                        if choice.get("finish_reason"):
                            record.finish_reason = str(choice["finish_reason"])
                            record.finish_reason_source = "server"
                if not done:
                    record.error_type = "stream_cut"
                    record.error_message = "stream ended before [DONE]"
                    return
                record.completed_at = clock.now()
        except asyncio.TimeoutError:
            record.error_type = "timeout"
            record.error_message = (f"no data for {self.config.idle_timeout:g} s or over "
                                    f"{self.config.request_timeout:g} s in total")
        except SSEError as exc:
            record.error_type = "malformed_sse"
            record.error_message = str(exc)
        except aiohttp.ClientPayloadError as exc:
            record.error_type = "stream_cut"
            record.error_message = f"stream cut: {exc}"[:300]
        except aiohttp.ClientConnectorError as exc:
            record.error_type = "connection"
            record.error_message = f"cannot connect to {self._url}: {exc.os_error}"[:300]
        except (aiohttp.ClientError, OSError) as exc:
            record.error_type = "connection"
            record.error_message = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            settle_token_counts(record, texts, usage, self._tokenizer)
            settle_finish(record, self.config.require_exact_output_lengths)
        return "".join(texts) if record.error_type is None and record.completed_at is not None \
            else None


class OpenAICompletionsClient(OpenAIClient):
    endpoint = "/completions"

    def body(self, request: Request, prompt: str) -> dict:
        return {**self._common_body(request), "prompt": prompt}

    @staticmethod
    def chunk_text(choice: dict) -> str | None:
        return choice.get("text")


class OpenAIChatClient(OpenAIClient):
    endpoint = "/chat/completions"

    def body(self, request: Request, prompt: str) -> dict:
        return {**self._common_body(request), "messages": self.messages(prompt)}

    @staticmethod
    def messages(prompt: str) -> list[dict]:
        return [{"role": "user", "content": prompt}]

    def count_prompt(self, prompt: str) -> dict[str, int]:
        """The text alone, and as the chat template wraps it (when the tokenizer has one): the
        server counts the template's tokens as prompt tokens, ~30 for a typical template."""
        counts = super().count_prompt(prompt)
        if self._tokenizer is not None:  # loaded by the call above
            templated = self._tokenizer.count_chat(self.messages(prompt))
            if templated is not None:
                counts["chat_template"] = templated
        return counts

    @staticmethod
    def chunk_text(choice: dict) -> str | None:
        delta = choice.get("delta") or {}
        return delta.get("content") or delta.get("reasoning_content")

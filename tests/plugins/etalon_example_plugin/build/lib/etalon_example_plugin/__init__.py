"""An etalon plug-in as a third party would write one: importing it registers its entries.

- ``--llm-api completions-unary``: a backend that asks for the whole completion in one
  non-streamed response (one chunk carrying every token), for servers that cannot stream;
- ``--scheduler one-at-a-time``: serves one request start to finish before admitting the next.
"""

from __future__ import annotations


import aiohttp

from etalon.client.base import LLMClient
from etalon.registry import register


class UnaryCompletionsClient(LLMClient):
    """POST /completions with ``stream: false``; the response is one chunk of all the tokens."""

    async def open(self, max_concurrency: int) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout))

    async def close(self) -> None:
        await self._session.close()

    async def send(self, request, prompt, record, clock) -> None:
        body = {"model": self.config.model, "prompt": prompt, "max_tokens": request.output_tokens,
                "stream": False, "ignore_eos": True, "min_tokens": request.output_tokens}
        record.sent_at = clock.now()
        try:
            async with self._session.post(f"{self.config.base_url}/completions", json=body) as resp:
                data = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {data}")
        except Exception as exc:  # a failed request becomes a failed record, never a raise
            record.error_type, record.error_message = type(exc).__name__, str(exc)
            record.completed_at = clock.now()
            return
        now = clock.now()
        tokens = int(data["usage"]["completion_tokens"])
        record.chunk_times.append(now)
        record.chunk_tokens.append(tokens)
        record.completed_at = now
        record.num_prompt_tokens = int(data["usage"]["prompt_tokens"])
        record.num_output_tokens = tokens
        record.prompt_tokens_source = record.output_tokens_source = "usage"
        record.finish_reason = data["choices"][0].get("finish_reason")


def plan_one_at_a_time(engine, now: float):
    """No batching at all: the oldest request runs alone until it finishes."""
    from etalon.engine.schedulers import StepPlan

    if engine.running:
        decode = engine.reserve_decodes([s for s in engine.running if not s.in_prefill])
        return StepPlan(decode=decode) if decode else None
    if engine.waiting and engine.admit(engine.waiting[0], engine.waiting[0].remaining_prefill):
        seq = engine.running[-1]
        return StepPlan(prefill=[(seq, seq.prompt_tokens)])
    return None


register("client", "completions-unary", UnaryCompletionsClient)
register("scheduler", "one-at-a-time", plan_one_at_a_time)

"""One conformance check for any OpenAI-compatible server: what etalon records and summarises
matches what the server itself says it did.

The truth for each request is the server's own account of it: the same request sent again
without streaming (plain urllib, not etalon's client), whose ``usage`` counts the prompt as the
server saw it — chat template included — and the tokens it generated, with its finish reason
and text. The servers used are deterministic in those (``ignore_eos`` honoured, or an early
stop keyed on the prompt). Used by tests/test_conformance.py (embedded and programmed servers)
and tests/real_engine/test_vllm_conformance.py (vLLM).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass

from etalon.client import ClientConfig, make_client
from etalon.client.pool import PoolSpec, run_pool
from etalon.metrics.summary import summarize
from etalon.records import RequestRecord
from etalon.workload import PromptBuilder, load_tokenizer
from etalon.workload.request import Request

APIS = ("openai-completions", "openai-chat")
SEED = 3
# (prompt tokens, output tokens): short prompts and outputs, so a run takes a second or two.
SHAPES = ((16, 6), (40, 12), (24, 4), (64, 8), (32, 10), (48, 4), (20, 9), (56, 7), (28, 5),
          (36, 11), (44, 6), (52, 8))
REQUESTS = tuple(Request(i, i * 0.05, p, o) for i, (p, o) in enumerate(SHAPES))
# A run warns when more than this many of its requests are short (docs/metrics.md: more than
# max(2, 1 %) of them; 1 % of a dozen is 0).
MAX_QUIET_SHORT = 2


@dataclass(frozen=True)
class ServerKind:
    """A server to check; ``tokenizer`` is the server's own tokenizer, given to the client."""

    name: str
    base_url: str
    model: str
    tokenizer: str | None = None


@dataclass(frozen=True)
class Truth:
    """The server's non-streamed account of a request."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    text: str


def client_config(kind: ServerKind, require_exact: bool = False) -> ClientConfig:
    return ClientConfig(base_url=kind.base_url, model=kind.model, request_timeout=120,
                        idle_timeout=60, tokenizer=kind.tokenizer,
                        require_exact_output_lengths=require_exact)


def prompts(kind: ServerKind, requests) -> list[str]:
    """The prompts the load generator sends (same tokenizer, seed and request ids)."""
    builder = PromptBuilder(load_tokenizer(kind.tokenizer), SEED)
    return [builder.build(r.prompt_tokens, r.request_id) for r in requests]


def truth(kind: ServerKind, api: str, request: Request, prompt: str) -> Truth:
    body = make_client(api, client_config(kind)).body(request, prompt)
    body["stream"] = False
    body.pop("stream_options", None)
    url = kind.base_url.rstrip("/") + ("/chat/completions" if api == "openai-chat" else "/completions")
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        answer = json.loads(resp.read())
    choice = answer["choices"][0]
    text = choice["message"]["content"] if api == "openai-chat" else choice["text"]
    return Truth(answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"],
                 choice["finish_reason"], text or "")


def run(kind: ServerKind, api: str, requests, *, require_exact: bool = False) -> list[RequestRecord]:
    spec = PoolSpec(api, client_config(kind, require_exact), 1, len(requests), kind.tokenizer,
                    SEED, use_ray=False)
    out: list[dict] = []
    run_pool(spec, list(requests), out.append)
    return sorted((RequestRecord.from_dict(d) for d in out), key=lambda r: r.request_id)


def check_conformance(kind: ServerKind, api: str, requests=REQUESTS
                      ) -> tuple[list[RequestRecord], dict, list[Truth]]:
    """Runs ``requests`` twice (as they are, and with --require-exact-output-lengths) and checks
    records and summary against the server's own account; returns the first run's records,
    summary and truths for checks specific to a kind."""
    truths = [truth(kind, api, r, p) for r, p in zip(requests, prompts(kind, requests))]
    for r, t in zip(requests, truths):  # the cases are unambiguous: exact, or far short
        assert t.completion_tokens == r.output_tokens or t.completion_tokens <= r.output_tokens // 2
    short = [t.completion_tokens < r.output_tokens for r, t in zip(requests, truths)]
    empty = [t.text == "" for t in truths]

    recs = run(kind, api, requests)
    assert [r.request_id for r in recs] == [r.request_id for r in requests]
    for rec, t, is_empty in zip(recs, truths, empty):
        where = f"{kind.name} {api} request {rec.request_id}"
        assert rec.error_type is None, (where, rec.error_type, rec.error_message)
        assert rec.outcome == ("empty" if is_empty else "completed"), where
        assert rec.num_prompt_tokens == t.prompt_tokens, (where, rec.prompt_token_counts)
        assert rec.num_output_tokens == t.completion_tokens, (where, rec.output_token_counts)
        assert sum(rec.chunk_tokens) == (0 if is_empty else t.completion_tokens), where
        assert rec.finish_reason == t.finish_reason, (where, rec.finish_reason_source)
        if kind.tokenizer is not None:  # the client counts the prompt as the server does
            own = "chat_template" if api == "openai-chat" else "tokenizer"
            assert rec.prompt_token_counts.get(own) == t.prompt_tokens, (where, rec.prompt_token_counts)

    summary = summarize(recs)
    n_completed = len(requests) - sum(empty)
    assert summary["counts"]["num_completed"] == n_completed
    assert summary["counts"]["num_empty"] == sum(empty)
    lat = summary["latency"]
    assert lat["ttft"]["count"] == lat["e2e_latency"]["count"] == n_completed
    assert lat["empty_response_latency"]["count"] == sum(empty)
    assert "empty" in lat["ttft"]["includes"] and "empty" in lat["empty_response_latency"]["includes"]
    out = summary["lengths"]["output"]
    assert out["requested_tokens"] == sum(r.output_tokens for r in requests)
    assert out["delivered_tokens"] == sum(t.completion_tokens for t in truths)
    assert (out["num_short"], out["num_empty"]) == (sum(short), sum(empty))
    warns = sum(short) > MAX_QUIET_SHORT
    assert out["short"] is warns and (out["warning"] is not None) is warns
    assert any("OUTPUTS SHORTER THAN REQUESTED" in w for w in summary["warnings"]) is warns

    exact = run(kind, api, requests, require_exact=True)
    for rec, first, is_short in zip(exact, recs, short):
        if is_short:
            assert rec.error_type == "short_output" and not rec.ok and not rec.empty
            assert f"of {rec.requested_output_tokens} requested" in rec.error_message
        else:
            assert (rec.error_type, rec.outcome) == (None, first.outcome)
    exact_summary = summarize(exact)
    assert exact_summary["counts"]["errors_by_type"] == ({"short_output": sum(short)} if any(short) else {})
    assert exact_summary["lengths"]["output"]["num_failed_short"] == sum(short)
    return recs, summary, truths

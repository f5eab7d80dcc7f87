"""Smoke tests against a live vLLM-on-CPU server serving SmolLM2-135M-Instruct.

Run: ``python -m pytest tests/real_engine -m real_engine -q -s`` (after
``bash scripts/setup_vllm_cpu.sh``). They also pin down the facts etalon's client, token
accounting and simulator rely on (see docs/real_engine.md):

* /v1/completions counts the prompt as the tokenizer encodes it: no BOS or other special
  token is added for this model, so ``usage.prompt_tokens == len(tok(prompt).input_ids)``;
* /v1/chat/completions counts the chat-template rendering (with the model's default system
  prompt and the generation prompt), ``== len(tok.apply_chat_template(msgs,
  add_generation_prompt=True))``;
* with stream_interval=1 a streamed chunk usually carries one token, special tokens included
  (their text is '', so a client must not count tokens by non-empty text) -- but not always:
  when the HTTP side falls behind the engine (a busy CPU), vLLM v1 merges the deltas waiting
  to be sent into one chunk, so a client takes the total from ``usage`` and spreads it;
* chat streams start with one role-only chunk (no token); completion streams do not;
* the usage chunk comes last, with ``choices == []``, then ``data: [DONE]``;
* ``min_tokens`` is accepted and enforced; ``ignore_eos`` too.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.real_engine

QUESTION = "What is the capital of France?"
# Mixed text (numbers, punctuation, accents, quotes, newlines, indentation) so that the
# token-count parity check is about more than plain ASCII words.
MIXED_TEXT = (
    "Benchmarks of LLM serving report TTFT, TPOT and end-to-end latency.\n\n"
    "  In 2024, 3 of 7 runs (42.8%) missed the 250 ms SLO — see “Table 2”; café naïve résumé.\n"
    "def f(x):\n    return x ** 2  # squares\n"
) * 6


def _ids(encoded) -> list[int]:
    """input ids from whatever a transformers tokenizer call returned (list or BatchEncoding)."""
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    if encoded and isinstance(encoded[0], list):
        encoded = encoded[0]
    return list(encoded)


def _chat_ids(tok, messages) -> list[int]:
    return _ids(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


def _token_chunks(events: list[dict]) -> list[dict]:
    """Stream events that carry a choice (i.e. not the trailing usage-only event)."""
    return [e for e in events if e.get("choices")]


# --------------------------------------------------------------------------------------------
def test_models_lists_the_served_model(vllm_server, get_json):
    models = get_json("/v1/models")
    ids = [m["id"] for m in models["data"]]
    assert vllm_server.model_name in ids
    entry = next(m for m in models["data"] if m["id"] == vllm_server.model_name)
    assert entry.get("max_model_len") == vllm_server.settings.max_model_len
    assert vllm_server.base_url.endswith("/v1")
    assert vllm_server.base_url.startswith("http://127.0.0.1:")


def test_engine_runs_with_the_recorded_scheduler_settings(vllm_server):
    cfg = vllm_server.scheduler_config
    s = vllm_server.settings
    # reported back by the engine (log line / metrics), not just what we asked for
    assert cfg["engine_enable_chunked_prefill"] is s.enable_chunked_prefill
    assert cfg["engine_enable_prefix_caching"] is s.enable_prefix_caching
    assert cfg["engine_block_size"] == s.block_size
    assert cfg["engine_max_seq_len"] == s.max_model_len
    assert cfg["engine_kv_cache_bytes"] == int(s.kv_cache_space_gib * 2**30)
    assert cfg["engine_num_kv_blocks"] * s.block_size == cfg["engine_kv_cache_tokens"]
    assert vllm_server.vllm_version == "0.32.0"


def test_greedy_chat_answers_paris(vllm_server, post_json, real_tokenizer):
    messages = [{"role": "user", "content": QUESTION}]
    r = post_json("/v1/chat/completions", {
        "model": vllm_server.model_name, "messages": messages, "temperature": 0, "max_tokens": 32,
    })
    answer = r["choices"][0]["message"]["content"]
    print(f"\n[real_engine] greedy chat answer: {answer!r}")
    assert "Paris" in answer
    assert r["choices"][0]["finish_reason"] == "stop"
    # chat usage counts the rendered chat template (default system prompt included)
    assert r["usage"]["prompt_tokens"] == len(_chat_ids(real_tokenizer, messages))


def test_streaming_completion_usage_and_tokens_per_chunk(vllm_server, post_stream, real_tokenizer):
    res = post_stream("/v1/completions", {
        "model": vllm_server.model_name, "prompt": QUESTION, "max_tokens": 16, "temperature": 0,
        "ignore_eos": True, "stream_options": {"include_usage": True}, "logprobs": 0,
    })
    assert res["done"], "no data: [DONE]"
    events = res["events"]
    usage = events[-1].get("usage")
    assert usage is not None and events[-1]["choices"] == [], "usage must come last, without choices"
    assert all(not e.get("usage") for e in events[:-1])
    assert usage["completion_tokens"] == 16
    local = _ids(real_tokenizer(QUESTION))
    assert usage["prompt_tokens"] == len(local) == len(_ids(real_tokenizer(QUESTION, add_special_tokens=False)))
    assert real_tokenizer.bos_token_id not in local  # no BOS added for this model
    assert usage["total_tokens"] == usage["prompt_tokens"] + 16

    chunks = _token_chunks(events)
    # logprobs show how many tokens each chunk carries: at least one (no role or empty
    # preamble), several only where vLLM merged deltas not yet sent -- in all, the usage count
    per_chunk = [len(c["choices"][0]["logprobs"]["tokens"]) for c in chunks]
    assert min(per_chunk) >= 1 and sum(per_chunk) == 16, per_chunk
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    # the greedy continuation starts with <|im_end|> and later <|im_start|>: special tokens
    # stream as '' text, so the text re-encoded holds fewer tokens than were generated
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert "<|im_end|>" not in text and "assistant" in text
    assert len(_ids(real_tokenizer(text))) < 16


def test_streaming_chat_has_role_chunk_then_tokens(vllm_server, post_stream, real_tokenizer):
    messages = [{"role": "user", "content": QUESTION}]
    res = post_stream("/v1/chat/completions", {
        "model": vllm_server.model_name, "messages": messages, "max_tokens": 16, "temperature": 0,
        "ignore_eos": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    })
    assert res["done"]
    chunks = _token_chunks(res["events"])
    first = chunks[0]["choices"][0]["delta"]
    assert first.get("role") == "assistant" and first.get("content", "") == ""
    assert chunks[0]["usage"]["completion_tokens"] == 0  # the role chunk carries no token
    content = chunks[1:]
    # continuous usage: the count goes up by at least one per chunk (by one unless vLLM
    # merged deltas the HTTP side had not sent yet) and ends at the requested 16
    counts = [c["usage"]["completion_tokens"] for c in content]
    assert all(b > a for a, b in zip([0] + counts, counts)) and counts[-1] == 16, counts
    assert content[-1]["choices"][0]["finish_reason"] == "length"
    final = res["events"][-1]
    assert final["choices"] == [] and final["usage"]["completion_tokens"] == 16
    assert final["usage"]["prompt_tokens"] == len(_chat_ids(real_tokenizer, messages))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in content)
    assert "Paris" in text


def test_prompt_token_count_matches_local_tokenizer_on_mixed_text(vllm_server, post_json, real_tokenizer):
    r = post_json("/v1/completions", {
        "model": vllm_server.model_name, "prompt": MIXED_TEXT, "max_tokens": 1, "temperature": 0,
    })
    assert r["usage"]["prompt_tokens"] == len(_ids(real_tokenizer(MIXED_TEXT)))
    # /tokenize agrees, for text and for chat messages
    tok = post_json("/tokenize", {"model": vllm_server.model_name, "prompt": MIXED_TEXT})
    assert tok["tokens"] == _ids(real_tokenizer(MIXED_TEXT))
    messages = [{"role": "user", "content": MIXED_TEXT}]
    tok = post_json("/tokenize", {"model": vllm_server.model_name, "messages": messages,
                                  "add_generation_prompt": True})
    assert tok["tokens"] == _chat_ids(real_tokenizer, messages)


def test_token_id_prompt_is_counted_as_given(vllm_server, post_json):
    ids = list(range(1000, 1100))
    r = post_json("/v1/completions", {
        "model": vllm_server.model_name, "prompt": ids, "max_tokens": 3, "temperature": 0, "ignore_eos": True,
    })
    assert r["usage"]["prompt_tokens"] == len(ids)
    assert r["usage"]["completion_tokens"] == 3


def test_min_tokens_is_accepted_and_enforced(vllm_server, post_json):
    # Greedy continuation of the bare question is <|im_end|> (the EOS) first, so without
    # min_tokens the completion stops after one token.
    body = {"model": vllm_server.model_name, "prompt": QUESTION, "max_tokens": 12, "temperature": 0}
    r = post_json("/v1/completions", body)
    assert r["choices"][0]["finish_reason"] == "stop"
    assert r["usage"]["completion_tokens"] < 12
    r = post_json("/v1/completions", {**body, "min_tokens": 12})
    assert r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 12


def test_concurrent_streams_each_get_exact_token_counts(vllm_server, post_stream):
    def one(i: int) -> dict:
        return post_stream("/v1/completions", {
            "model": vllm_server.model_name, "prompt": f"Request {i}: count to ten.", "max_tokens": 16,
            "temperature": 0, "ignore_eos": True, "stream_options": {"include_usage": True},
        })

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(4)))
    for res in results:
        assert res["done"]
        assert res["events"][-1]["usage"]["completion_tokens"] == 16
        assert 1 <= len(_token_chunks(res["events"])) <= 16  # four streams: merges likely

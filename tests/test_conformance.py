"""The conformance suite: every server kind the tests can start, both APIs, one set of checks
(tests/conformance.py): records and summary agree with the server's own account of each request.

Kinds: the embedded server, and a programmed server imitating each server behaviour etalon must
count right — streams without usage, ``ignore_eos`` ignored, chat template tokens (every
programmed kind counts chat prompts through the template), multi-token chunks, no finish reason,
and all of llama.cpp's at once. vLLM runs the same checks in tests/real_engine/.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from conformance import APIS, MAX_QUIET_SHORT, ServerKind, check_conformance

pytest.importorskip("transformers")


@dataclass(frozen=True)
class Expect:
    """How the client must have counted a completed request of a kind (None: not checked)."""

    flags: str | None  # programmed server flags; None = the embedded server
    prompt_source: str  # "own": the client's tokenizer ("chat_template" for chat)
    output_source: str
    finish_source: str
    warns: bool


KINDS = {
    "embedded": Expect(None, "usage", "usage", "server", False),
    "vllm-like": Expect("", "usage", "usage", "server", False),
    "no-usage": Expect("nousage+merge", "own", "chunks", "server", False),
    "ignores-eos": Expect("eos", "usage", "usage", "server", True),
    "no-finish-reason": Expect("nofinish", "usage", "usage", "inferred", False),
    "multi-token-chunks": Expect("nousage+chunk3", "own", "tokenizer", "server", False),
    "llama.cpp-like": Expect("nousage+eos+nofinish", "own", "chunks", "inferred", True),
}


@pytest.fixture(scope="module")
def embedded():
    from etalon.server.process import LocalServer

    with LocalServer(["--model", "etalon-embedded"]) as srv:
        yield srv


def _kind(name: str, request, token_server, chat_tokenizer_dir) -> ServerKind:
    flags = KINDS[name].flags
    if flags is None:
        srv = request.getfixturevalue("embedded")
        return ServerKind(name, srv.base_url, "etalon-embedded")
    url = token_server.fault_url(flags) if flags else token_server.base_url
    return ServerKind(name, url, "m", str(chat_tokenizer_dir))


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", list(KINDS))
def test_server_conforms(name, api, request, token_server, chat_tokenizer_dir):
    expect = KINDS[name]
    kind = _kind(name, request, token_server, chat_tokenizer_dir)
    recs, summary, truths = check_conformance(kind, api)

    own = "chat_template" if api == "openai-chat" else "tokenizer"
    prompt_source = own if expect.prompt_source == "own" else expect.prompt_source
    done = [r for r in recs if r.ok]
    assert done
    assert {r.prompt_tokens_source for r in done} == {prompt_source}
    assert {r.finish_reason_source for r in done} == {expect.finish_source}
    # A one-token answer is one chunk of one token: counted by chunks whatever the stream does.
    assert {r.output_tokens_source for r in done if r.num_output_tokens > 1} == {expect.output_source}
    assert summary["lengths"]["output"]["short"] is expect.warns
    if expect.warns:  # the quirk the kind imitates is visible, not just tolerated
        assert summary["lengths"]["output"]["num_short"] > MAX_QUIET_SHORT
    if name == "no-usage":
        # Each chunk is one generated character; re-tokenizing the text merges them. The
        # record keeps both counts, and the chunk count (the truth) is the one used.
        long = [r for r in done if r.num_output_tokens >= 6]
        assert long and all(r.output_token_counts["tokenizer"] < r.num_output_tokens for r in long)
        assert summary["lengths"]["output"]["disagreement"]["tokenizer vs chunks"]["mean"] < 0
    if name == "multi-token-chunks":
        assert summary["latency"]["tokens_per_chunk"]["p50"] == 3
    if prompt_source == "chat_template":
        # The template's tokens are counted: the text alone is the requested length.
        for r in done:
            assert r.prompt_token_counts["tokenizer"] == r.requested_prompt_tokens
            assert r.num_prompt_tokens > r.requested_prompt_tokens + 10

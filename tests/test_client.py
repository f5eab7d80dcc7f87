"""Clients and the open-loop pool against real streaming servers with known timing and faults."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time

import numpy as np
import pytest

from etalon.client import ClientConfig
from etalon.client.dispatcher import freeze_heap, thaw_heap
from etalon.client.pool import PoolSpec, run_pool
from etalon.client.token_accounting import split_tokens
from etalon.metrics.latency import latency_series
from etalon.records import RequestRecord
from etalon.workload.request import Request


def run(base_url: str, requests, *, use_ray=False, clients=1, concurrency=8, **cfg) -> list[RequestRecord]:
    config = ClientConfig(base_url=base_url, model="m", request_timeout=cfg.pop("request_timeout", 30),
                          idle_timeout=cfg.pop("idle_timeout", 10), **cfg)
    spec = PoolSpec("openai-completions", config, clients, concurrency, None, seed=1, use_ray=use_ray)
    out: list[dict] = []
    run_pool(spec, requests, out.append)
    return sorted((RequestRecord.from_dict(d) for d in out), key=lambda r: r.request_id)


def schedule(n: int, gap: float, prompt: int = 20, output: int = 10) -> list[Request]:
    return [Request(i, i * gap, prompt, output) for i in range(n)]


def test_measured_ttft_and_tbt_match_programmed_delays(programmed_server):
    # The server sleeps 50 ms before the first token and 20 ms between tokens.
    recs = run(programmed_server.base_url, schedule(8, 0.15, output=12))
    assert all(r.ok for r in recs)
    ttft = np.median([r.ttft for r in recs])
    tbt = np.median(latency_series(recs)["tbt"].values)
    assert ttft == pytest.approx(0.050, abs=0.005)
    assert tbt == pytest.approx(0.020, abs=0.003)
    for r in recs:
        assert r.num_output_tokens == 12 and r.output_tokens_source == "usage"
        assert r.num_prompt_tokens == 7 and r.prompt_tokens_source == "usage"
        assert r.finish_reason == "length"
        # identity: e2e - ttft equals the sum of the gaps between chunks (plus the tail to [DONE])
        assert r.e2e_latency - r.ttft >= r.chunk_times[-1] - r.chunk_times[0]


def test_sends_follow_the_schedule_open_loop(programmed_server):
    # 10 requests 30 ms apart, each taking ~250 ms: a closed loop of 1 would take 2.5 s;
    # open loop sends each at its slot regardless.
    recs = run(programmed_server.base_url, schedule(10, 0.03, output=10), concurrency=20)
    lags = np.array([r.dispatch_lag for r in recs])
    # A closed loop would delay later sends by ~0.23 s each; allow scheduler noise of a busy box.
    assert np.median(lags) < 0.005 and lags.max() < 0.1
    np.testing.assert_allclose([r.scheduled_at for r in recs], np.arange(10) * 0.03)


def test_the_heap_is_frozen_while_generators_dispatch_and_thawed_after(programmed_server):
    # a full collection walks every object alive (40-60 ms at 1,000 req/s, every request due
    # meanwhile sent late): during a run what existed before it is out of the collector's reach
    assert gc.get_freeze_count() == 0
    seen: list[int] = []
    config = ClientConfig(base_url=programmed_server.base_url, model="m")
    spec = PoolSpec("openai-completions", config, 2, 8, None, seed=1, use_ray=False)
    run_pool(spec, schedule(8, 0.15, output=12), lambda rec: seen.append(gc.get_freeze_count()),
             poll_s=0.1)
    assert len(seen) == 8 and max(seen) > 1000, seen  # collected mid-run: modules, prompts, client
    assert gc.get_freeze_count() == 0  # both generators done: everything collectable again


def test_the_heap_stays_frozen_until_the_last_generator_of_the_process_ends():
    freeze_heap()
    held = gc.get_freeze_count()
    freeze_heap()  # a second generator of the same process
    thaw_heap()
    assert gc.get_freeze_count() >= held > 0
    thaw_heap()
    assert gc.get_freeze_count() == 0


def test_concurrency_cap_shows_as_dispatch_lag(programmed_server):
    recs = run(programmed_server.base_url, schedule(4, 0.0, output=10), concurrency=1)
    # One in flight at a time: each waits ~ (0.05 + 9 * 0.02) = 0.23 s for the previous one.
    lags = sorted(r.dispatch_lag for r in recs)
    assert lags[-1] == pytest.approx(3 * 0.23, rel=0.15)


@pytest.mark.parametrize("kind, error", [("http500", "http_500"), ("cut", "stream_cut"),
                                          ("stall", "timeout"), ("malformed", "malformed_sse")])
def test_faults_become_error_records(programmed_server, kind, error):
    recs = run(programmed_server.fault_url(kind), schedule(2, 0.0, output=10), idle_timeout=0.5)
    assert [r.error_type for r in recs] == [error, error]
    assert all(r.error_message for r in recs)


def test_unreachable_server_is_a_connection_error():
    recs = run("http://127.0.0.1:9/v1", schedule(2, 0.0))
    assert {r.error_type for r in recs} == {"connection"}
    assert "cannot connect" in recs[0].error_message


class ClosingKeepAliveServer:
    """An HTTP/1.1 server that, like uvicorn, closes a keep-alive connection idle for
    ``idle_close_s``, and loses the race the way a real one can: a request that arrives on such
    a connection is met with a reset, not an answer. Anything else gets a two-token stream."""

    def __init__(self, idle_close_s: float):
        self.idle_close_s = idle_close_s
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered_at = None
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed it
                return
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            if answered_at is not None and time.monotonic() - answered_at >= self.idle_close_s:
                writer.transport.abort()  # closed under the request
                return
            events = [{"choices": [{"index": 0, "text": " tok", "finish_reason": None}]}] * 2
            events.append({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
            body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
            body += b"data: [DONE]\n\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            answered_at = time.monotonic()


def test_an_idle_connection_is_not_reused_after_the_server_may_have_closed_it():
    # the second request follows the first answer by ~4.6 s: the client (keep-alive 4 s) opens
    # a new connection; reusing the old one (aiohttp's default 15 s) meets the reset
    server = ClosingKeepAliveServer(idle_close_s=4.5)
    loop = asyncio.new_event_loop()
    srv = loop.run_until_complete(asyncio.start_server(server.handle, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        recs = run(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1",
                   [Request(0, 0.0, 7, 2), Request(1, 4.7, 7, 2)])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        srv.close()
    assert [r.error_type for r in recs] == [None, None], [r.error_message for r in recs]
    assert all(r.num_output_tokens == 2 for r in recs)
    assert server.connections == 2


def test_multi_token_chunks_are_accounted(programmed_server):
    recs = run(programmed_server.fault_url("chunky"), schedule(1, 0.0, output=10))
    r = recs[0]
    # 10 tokens in events of 3, 3, 3, 1 (the server's programming).
    assert r.num_output_tokens == 10 and sum(r.chunk_tokens) == 10
    assert len(r.chunk_times) == 4


def test_split_tokens_by_largest_remainder():
    assert split_tokens(3, [5.0, 5.0, 5.0]) == [1, 1, 1]
    assert split_tokens(10, [1.0, 1.0, 2.0]) == [3, 3, 4]  # 7 extra: 1.75, 1.75, 3.5 -> 2, 2, 3
    assert sum(split_tokens(17, [3.0, 1.0, 1.0, 9.0])) == 17


def test_ray_path_gives_same_records_as_in_process(programmed_server, ray_cluster):
    reqs = schedule(6, 0.05, output=5)
    local = run(programmed_server.base_url, reqs, clients=2)
    remote = run(programmed_server.base_url, reqs, clients=2, use_ray=True)
    key = lambda r: (r.request_id, r.scheduled_at, r.client_id, r.num_output_tokens,
                     r.num_prompt_tokens, r.error_type, len(r.chunk_times))
    assert [key(r) for r in local] == [key(r) for r in remote]
    # sent on time: requests sent one after another's answer (0.13 s each, 0.05 s apart) would
    # lag 0.4 s by the last; a scheduler stall on a busy 2-core box costs up to ~0.15 s
    assert max(r.dispatch_lag for r in remote) < 0.25


def test_token_counts_without_usage_come_from_chunks_checked_by_the_tokenizer(programmed_server,
                                                                             tmp_path):
    # Without usage, a stream of one token per chunk is counted by its chunks; a tokenizer, when
    # given, checks that each chunk is one token and counts the prompt. The server streams
    # " tok" per token, one token under this word-level tokenizer.
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"tok": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    url = programmed_server.fault_url("nousage")
    with_tok = run(url, schedule(1, 0.0, output=6), tokenizer=str(tmp_path))[0]
    assert (with_tok.num_output_tokens, with_tok.output_tokens_source) == (6, "chunks")
    assert with_tok.output_token_counts == {"chunks": 6, "tokenizer": 6}
    assert with_tok.prompt_tokens_source == "tokenizer"
    assert with_tok.prompt_token_counts == {"tokenizer": with_tok.num_prompt_tokens}
    bare = run(url, schedule(1, 0.0, output=6))[0]
    assert (bare.num_output_tokens, bare.output_tokens_source) == (6, "chunks")
    assert bare.output_token_counts == {"chunks": 6}
    assert bare.prompt_tokens_source == "requested" and bare.num_prompt_tokens == 20
    assert bare.prompt_token_counts == {}
    assert (bare.finish_reason, bare.finish_reason_source) == ("length", "server")


# One stream with every SSE form a server may send: a comment, another field, CRLF line ends,
# two events in one line-run, an event whose data spans two lines (joined by a newline, still
# JSON), a usage event and the end marker.
SSE_STREAM = (
    b": a comment\r\n"
    b"event: completion\r\n"
    b'data: {"choices":[{"index":0,"text":" a\xc3\xa9","finish_reason":null}]}\r\n\r\n'
    b'data: {"choices":[{"index":0,"text":" b","finish_reason":null}]}\n\n'
    b'data: {"choices":[{"index":0,\n'
    b'data: "text":" c","finish_reason":"length"}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}\n\n'
    b"data: [DONE]\n\n"
)
SSE_EVENTS = [
    '{"choices":[{"index":0,"text":" a\u00e9","finish_reason":null}]}',
    '{"choices":[{"index":0,"text":" b","finish_reason":null}]}',
    '{"choices":[{"index":0,\n"text":" c","finish_reason":"length"}]}',
    '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}',
    "[DONE]",
]


def _events(pieces: list[bytes]) -> list[str]:
    from etalon.client.sse import iter_sse_data

    async def feed():
        for p in pieces:
            yield p

    async def collect():
        return [e async for e in iter_sse_data(feed())]

    return asyncio.run(collect())


def test_sse_events_are_the_same_however_the_stream_is_cut():
    # a read may end anywhere: inside a line, between CR and LF, inside a two-byte character
    assert _events([SSE_STREAM]) == SSE_EVENTS
    assert _events([bytes([b]) for b in SSE_STREAM]) == SSE_EVENTS
    for cut in range(1, len(SSE_STREAM)):
        assert _events([SSE_STREAM[:cut], b"", SSE_STREAM[cut:]]) == SSE_EVENTS, cut
    # lines as aiohttp's readline gives them (what the parser was first fed)
    assert _events(SSE_STREAM.splitlines(keepends=True)) == SSE_EVENTS
    # a last event without its blank line, or without even its newline, still counts
    assert _events([b"data: x\n"]) == ["x"] and _events([b"data: x"]) == ["x"]


def test_a_line_that_is_not_sse_is_a_malformed_stream():
    from etalon.client.sse import SSEError

    with pytest.raises(SSEError, match="malformed SSE line"):
        _events([b"data: x\n\nnot an sse line\n\n"])


class PieceServer:
    """Streams SSE_STREAM in the given pieces, each its own write with a pause between, over a
    plain HTTP/1.1 response that ends when the connection closes."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Connection: close\r\n\r\n")
        for piece in self.pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.close()


def test_a_stream_written_in_odd_pieces_is_recorded_whole():
    # cut inside the first event's data, inside the two-line event and between CR and LF
    cuts = [40, SSE_STREAM.index(b'"text":" c"') + 3, SSE_STREAM.index(b"\r\n\r\n") + 1]
    bounds = [0, *sorted(cuts), len(SSE_STREAM)]
    server = PieceServer([SSE_STREAM[a:b] for a, b in zip(bounds, bounds[1:])])
    loop = asyncio.new_event_loop()
    srv = loop.run_until_complete(asyncio.start_server(server.handle, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        recs = run(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1", [Request(0, 0.0, 3, 3)])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        srv.close()
    r = recs[0]
    assert r.error_type is None, r.error_message
    assert len(r.chunk_times) == 3 and r.chunk_times == sorted(r.chunk_times)
    assert r.num_output_tokens == 3 and r.output_tokens_source == "usage"
    assert r.finish_reason == "length" and r.finish_reason_source == "server"


def test_a_line_that_never_ends_fails_the_request_instead_of_filling_memory(monkeypatch):
    from etalon.client import sse

    monkeypatch.setattr(sse, "MAX_LINE_BYTES", 1000)
    assert _events([b"data: " + b"x" * 990, b"\n\n"]) == ["x" * 990]  # 996 bytes held: fine
    with pytest.raises(sse.SSEError, match="without a newline"):
        _events([b"data: "] + [b"x" * 100] * 20)

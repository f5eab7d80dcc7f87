#!/usr/bin/env python3
"""Measure the real vLLM-on-CPU engine: TTFT against prompt length, decode time per token at
a few batch sizes. The numbers in docs/real_engine.md come from this script.

    python scripts/measure_vllm_cpu.py                 # starts its own server, stops it after
    python scripts/measure_vllm_cpu.py --base-url http://127.0.0.1:PORT/v1   # use a running one
    python scripts/measure_vllm_cpu.py --json out.json --prompt-lens 16 128 1024 --batches 1 4

Prompts are lists of random token ids (so each request is distinct, and prefix caching, if
on, cannot help), sent to /v1/completions with ``stream: true``, ``ignore_eos: true`` and
``stream_options.include_usage``. TTFT = first streamed token after the request was sent;
per-token decode time = (last token - first token) / (tokens - 1) per request.
Uses aiohttp (etalon's main environment); every request goes to the loopback address given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etalon.launchers.vllm_cpu import VllmCpuServer  # noqa: E402

VOCAB_LO, VOCAB_HI = 1000, 40000  # plain word pieces of SmolLM2's 49,152-token vocabulary


async def one_request(session: aiohttp.ClientSession, base_url: str, model: str,
                      prompt_ids: list[int], max_tokens: int) -> dict:
    body = {
        "model": model, "prompt": prompt_ids, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    times: list[float] = []
    usage = None
    async with session.post(f"{base_url}/completions", json=body) as resp:
        resp.raise_for_status()
        buf = b""
        async for chunk in resp.content.iter_any():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line = line.strip()
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                data = json.loads(line[6:])
                now = time.perf_counter()
                if data.get("choices"):
                    times.append(now)
                if data.get("usage"):
                    usage = data["usage"]
    n = len(times)
    return {
        "prompt_tokens": (usage or {}).get("prompt_tokens"),
        "completion_tokens": (usage or {}).get("completion_tokens"),
        "chunks": n,
        "ttft_s": times[0] - t0 if times else None,
        "tpot_s": (times[-1] - times[0]) / (n - 1) if n > 1 else None,
        "e2e_s": (times[-1] - t0) if times else None,
    }


def prompt_of(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(VOCAB_LO, VOCAB_HI) for _ in range(n)]


async def measure(base_url: str, model: str, prompt_lens: list[int], batches: list[int],
                  repeats: int, decode_tokens: int, decode_prompt: int, seed: int) -> dict:
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=600)
    out: dict = {"ttft": [], "decode": []}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await one_request(session, base_url, model, prompt_of(rng, 8), 2)  # warm-up
        for plen in prompt_lens:
            rows = [await one_request(session, base_url, model, prompt_of(rng, plen), 4) for _ in range(repeats)]
            ttfts = [r["ttft_s"] for r in rows]
            row = {"prompt_tokens": rows[0]["prompt_tokens"], "ttft_median_s": statistics.median(ttfts),
                   "ttft_min_s": min(ttfts), "ttft_max_s": max(ttfts), "repeats": repeats}
            out["ttft"].append(row)
            print(f"TTFT  prompt {row['prompt_tokens']:>5} tok: median {row['ttft_median_s']:.3f}s "
                  f"(min {row['ttft_min_s']:.3f}, max {row['ttft_max_s']:.3f})", flush=True)
        for b in batches:
            t0 = time.perf_counter()
            rows = await asyncio.gather(*[
                one_request(session, base_url, model, prompt_of(rng, decode_prompt), decode_tokens)
                for _ in range(b)])
            wall = time.perf_counter() - t0
            tpots = [r["tpot_s"] for r in rows]
            total_out = sum(r["completion_tokens"] or 0 for r in rows)
            row = {"batch": b, "prompt_tokens": decode_prompt, "output_tokens_each": decode_tokens,
                   "tpot_mean_s": statistics.mean(tpots), "tpot_max_s": max(tpots),
                   "output_tokens_per_s": total_out / wall, "wall_s": wall,
                   "all_exact": all(r["completion_tokens"] == decode_tokens == r["chunks"] for r in rows)}
            out["decode"].append(row)
            print(f"DECODE batch {b:>2}: {row['tpot_mean_s'] * 1000:.1f} ms/token per stream, "
                  f"{row['output_tokens_per_s']:.1f} output tok/s total "
                  f"(usage == chunks == max_tokens: {row['all_exact']})", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", help="a running server's OpenAI base URL; default: start one")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompt-lens", type=int, nargs="+", default=[16, 128, 512, 1024, 2048])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--decode-prompt", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--server-arg", action="append", default=[], metavar="NAME=VALUE",
                    help="VllmCpuServer keyword for a started server, e.g. dtype=bfloat16 (repeatable)")
    args = ap.parse_args()

    result: dict = {}
    server = None
    base_url = args.base_url
    if not base_url:
        kwargs = {}
        for item in args.server_arg:
            k, _, v = item.partition("=")
            kwargs[k] = int(v) if v.isdigit() else {"true": True, "false": False}.get(v.lower(), v)
        server = VllmCpuServer(**kwargs)
        print(f"starting {server.name} ...", flush=True)
        server.start_and_wait()
        print(f"ready in {server.startup_seconds:.1f}s at {server.base_url}; memory "
              f"{server.memory()}", flush=True)
        base_url = server.base_url
        result["server"] = server.describe()
    try:
        result.update(asyncio.run(measure(base_url, args.model, args.prompt_lens, args.batches, args.repeats,
                                          args.decode_tokens, args.decode_prompt, args.seed)))
        if server is not None:
            result["server_memory_after"] = server.memory()
    finally:
        if server is not None:
            server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one Server-Sent-Events parser every streaming client uses.

It yields each event's ``data`` payload as it completes; per-API adapters decode the JSON.
Comments (``:``) and other fields (``event:``, ``id:``) are skipped; multi-line data is joined
with newlines as the SSE spec says.
"""

from __future__ import annotations

from typing import AsyncIterator


class SSEError(ValueError):
    """The stream is not well-formed SSE."""


async def iter_sse_data(lines: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Yields the ``data`` of each event from a stream of raw lines (with their newlines)."""
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(b"data:"):
            value = line[5:]
            if value.startswith(b" "):
                value = value[1:]
            data.append(value.decode("utf-8"))
        elif line.startswith(b":") or b":" in line:
            continue  # a comment or another field
        else:
            raise SSEError(f"malformed SSE line: {line[:80]!r}")
    if data:  # a stream that ends without the blank line still delivers its last event
        yield "\n".join(data)

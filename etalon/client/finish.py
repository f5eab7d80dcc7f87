"""How a finished request ended: its finish reason, and whether a short output fails it.

The server's ``finish_reason`` (``length``, ``stop``, ...) is recorded as sent. A server that
sends none gets one inferred from the counts — ``length`` when the requested output length was
delivered, else ``stop`` — and the record says it was inferred, so no reason is ever silently
"unknown". With ``require_exact_output_lengths`` a request short of its requested length (by
:data:`etalon.metrics.lengths.TOLERANCE`) becomes a failed record.
"""

from __future__ import annotations

from etalon.metrics.lengths import SHORT_OUTPUT_ERROR, TOLERANCE
from etalon.metrics.tokens import output_tokens
from etalon.records import RequestRecord


def settle_finish(record: RequestRecord, require_exact_output_lengths: bool = False) -> None:
    """Infers a missing finish reason of a completed request; fails it when short and asked to.

    Call after the token counts are settled. Failed and unfinished requests are left alone.
    """
    if record.completed_at is None or record.error_type is not None:
        return
    delivered, source = output_tokens(record)
    requested = record.requested_output_tokens
    if record.finish_reason:
        record.finish_reason_source = record.finish_reason_source or "server"
    elif requested > 0:
        record.finish_reason = "length" if delivered >= requested else "stop"
        record.finish_reason_source = "inferred"
    if require_exact_output_lengths and TOLERANCE.is_short(requested, delivered):
        record.error_type = SHORT_OUTPUT_ERROR
        record.error_message = (f"delivered {delivered} of {requested} requested output tokens "
                                f"(finish_reason {record.finish_reason}, "
                                f"{record.finish_reason_source}; counted by {source}); "
                                f"--require-exact-output-lengths")

"""Console summary and live progress display."""

import io

from etalon.metrics.summary import summarize
from etalon.records import RequestRecord
from etalon.report.console import format_summary, print_summary, summary_view
from etalon.report.progress import Progress


def run(lag):
    return [RequestRecord(request_id=i, scheduled_at=0.1 * i, sent_at=0.1 * i + lag,
                          completed_at=0.1 * i + 1.0, chunk_times=[0.1 * i + 0.25, 0.1 * i + 0.5],
                          chunk_tokens=[1, 1]) for i in range(10)]


def test_table_shows_percentiles_in_ms_and_no_warning_on_schedule():
    s = summarize(run(0.0), ttft_deadline=1.0, tbt_deadline=0.5)
    view = summary_view(s)
    ttft = dict((row[0], row) for row in view.latency_rows)["TTFT"]
    assert ttft[1] == "250.0"  # every TTFT is 0.25 s
    text = format_summary(s)
    assert "WARNING" not in text and "goodput" in text and "fluid token rate" in text


def test_warning_line_when_generator_fell_behind():
    s = summarize(run(0.05))  # every request 50 ms late
    assert "WARNING: LOAD GENERATOR FELL BEHIND" in format_summary(s)
    out = io.StringIO()
    print_summary(s, file=out)
    assert "LOAD GENERATOR FELL BEHIND" in out.getvalue() and "TTFT" in out.getvalue()


def test_console_handles_empty_summary():
    assert "TTFT" in format_summary(summarize([]))


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_disabled_when_stream_is_not_a_tty():
    out = io.StringIO()
    p = Progress(total=10, stream=out)
    p.update(3, 2, 1, 1.0)
    p.close()
    assert not p.enabled and out.getvalue() == ""


def test_progress_disabled_when_told_even_on_a_tty():
    out = FakeTTY()
    p = Progress(total=10, stream=out, enabled=False)
    p.update(3, 2, 1, 1.0)
    p.close()
    assert out.getvalue() == ""


def test_progress_shows_counts_and_sent_rate_on_a_tty():
    out = FakeTTY()
    with Progress(total=10, stream=out, min_interval_s=0.0) as p:
        p.update(4, 2, 1, 2.0)
    text = out.getvalue()
    assert "in flight 2" in text and "errors 1" in text
    assert "3.50 req/s" in text  # (4 + 1 + 2) sent / 2 s

"""Everything computed from request records: latency, throughput, deadlines, goodput.

Start at :func:`etalon.metrics.summary.summarize`; conventions are in docs/metrics.md.
"""

"""The request workload: arrival schedules, request lengths, trace files and prompts.

``run_benchmark``, the simulator and capacity search all build their requests here, from the
same typed config (``WorkloadConfig``), so a live run and a simulated one see the same workload.
"""

from .config import WorkloadConfig
from .corpus import load_corpus
from .intervals import (
    GammaIntervals,
    IntervalGenerator,
    PoissonIntervals,
    StaticIntervals,
    TraceIntervals,
    make_interval_generator,
)
from .lengths import (
    FixedLengths,
    LengthGenerator,
    TraceLengths,
    UniformLengths,
    ZipfLengths,
    clip_total_tokens,
    make_length_generator,
    split_by_ratio,
    zipf_pmf,
)
from .prompts import PromptBuilder
from .request import Request
from .schedule import arrival_times, build_requests, workload_streams
from .tokenizer import ApproxTokenizer, HFTokenizer, Tokenizer, load_tokenizer
from .traces import LengthTrace, read_arrival_times, read_length_trace

__all__ = [
    "ApproxTokenizer",
    "FixedLengths",
    "GammaIntervals",
    "HFTokenizer",
    "IntervalGenerator",
    "LengthGenerator",
    "LengthTrace",
    "PoissonIntervals",
    "PromptBuilder",
    "Request",
    "StaticIntervals",
    "Tokenizer",
    "TraceIntervals",
    "TraceLengths",
    "UniformLengths",
    "WorkloadConfig",
    "ZipfLengths",
    "arrival_times",
    "build_requests",
    "clip_total_tokens",
    "load_corpus",
    "load_tokenizer",
    "make_interval_generator",
    "make_length_generator",
    "read_arrival_times",
    "read_length_trace",
    "split_by_ratio",
    "workload_streams",
    "zipf_pmf",
]

"""How a command reaches a server, declared once for the benchmark, the profilers and anchoring.

``--server local`` starts the embedded server for the command's lifetime; a URL (or
``$OPENAI_API_BASE``) names a running one. The API key comes only from ``$OPENAI_API_KEY`` and
is never written anywhere.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from etalon.cli_errors import UserError
from etalon.client.base import ClientConfig
from etalon.options import json_object, option


#: the settings of scraping the server's /metrics, which only a benchmark run does
SCRAPE_OPTIONS = ("server_metrics_interval", "server_metrics_url")


@dataclass
class ConnectionConfig:
    """The server, the client backend and the per-request limits."""

    model: str | None = option(None, "model name sent in each request (none: the embedded "
                                     "server's)")
    server: str | None = option(None, "'local' starts the embedded server for the run; "
                                      "otherwise a base URL (none: $OPENAI_API_BASE)")
    server_args: str = option("", "extra flags for the embedded server, e.g. "
                                  "\"--scheduler sarathi\"")
    llm_api: str = option("openai-completions", "client backend", choices="client")
    tokenizer: str | None = option(None, "local Hugging Face tokenizer folder: exact prompt "
                                         "lengths and output counts when the server sends no "
                                         "usage (none: etalon's approximation)", metavar="DIR")
    timeout: float = option(600.0, "time limit of the whole run (s): sending stops, in-flight "
                                   "requests are cancelled and recorded")
    request_timeout: float = option(600.0, "per-request limit (s)")
    idle_timeout: float = option(120.0, "a stream silent this long (s) is a stalled request")
    additional_sampling_params: dict = option(
        default_factory=dict, help="JSON object merged into every request body",
        parse=json_object)
    no_ignore_eos: bool = option(False, "do not send vLLM's ignore_eos/min_tokens (for servers "
                                        "that reject them)")
    require_exact_output_lengths: bool = option(
        False, "make a request that delivered fewer output tokens than requested (by more than "
               "max(1 token, 2 %)) a failed record (error_type short_output)")
    server_metrics_interval: float = option(
        1.0, "scrape the server's Prometheus /metrics every S seconds during the run into "
             "server_metrics.parquet (0: never)", metavar="S")
    server_metrics_url: str | None = option(
        None, "the server's metrics page (none: /metrics beside the OpenAI routes)",
        metavar="URL")

    def validate(self) -> ConnectionConfig:
        if not self.server_metrics_interval >= 0:
            raise UserError(f"--server-metrics-interval must be >= 0, got "
                            f"{self.server_metrics_interval}")
        for name in ("timeout", "request_timeout", "idle_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.tokenizer and not Path(self.tokenizer).exists():
            raise UserError(f"--tokenizer {self.tokenizer}: no such file or folder")
        return self

    def open(self, stack: ExitStack, prog: str) -> tuple[ClientConfig, bool]:
        """Starts the embedded server (``--server local``, stopped when ``stack`` closes) or
        checks that the URL answers; returns the client settings and whether it is embedded."""
        from etalon.server.process import resolve_server

        base_url, model, embedded = resolve_server(self.server, self.model, self.server_args,
                                                   self.tokenizer, stack, prog)
        client = ClientConfig(base_url=base_url, model=model,
                              api_key=os.environ.get("OPENAI_API_KEY"),
                              request_timeout=self.request_timeout,
                              idle_timeout=min(self.idle_timeout, self.request_timeout),
                              additional_sampling_params=dict(self.additional_sampling_params),
                              ignore_eos=not self.no_ignore_eos, tokenizer=self.tokenizer,
                              require_exact_output_lengths=self.require_exact_output_lengths)
        return client, embedded


@dataclass
class LoadConfig:
    """Who sends the requests: Ray actors (or threads of this process)."""

    num_ray_clients: int = option(2, "load-generator actors")
    num_concurrent_requests_per_client: int = option(
        10, "in-flight cap per client; a request over it waits, which shows as dispatch lag")
    no_ray: bool = option(False, "run the load generators as threads of this process instead "
                                 "of Ray actors")
    ray_address: str | None = option(None, "join an existing Ray cluster")

    def validate(self) -> LoadConfig:
        if self.num_ray_clients < 1:
            raise UserError(f"--num-ray-clients must be >= 1, got {self.num_ray_clients}")
        if self.num_concurrent_requests_per_client < 1:
            raise UserError("--num-concurrent-requests-per-client must be >= 1")
        return self




"""Fixtures for tests against a live vLLM-on-CPU server (``-m real_engine``).

The server is started once per session from the venv and model folder that
``bash scripts/setup_vllm_cpu.sh`` prepares; when they are missing every real-engine test is
skipped, and the reason is printed (at skip time and in the summary). Set
``ETALON_REQUIRE_REAL_ENGINE=1`` to make that a failure instead (for CI after the setup).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest

from etalon.launchers.vllm_cpu import VllmCpuServer, vllm_cpu_missing_reason
from etalon.validation import steps
from etalon.validation.job import load_job
from etalon.validation.meter import CpuMeter
from etalon.validation.vllm_settings import engine_config_of

#: the validation job the session's server runs (validation/vllm_cpu_smollm2.yaml)
JOB = load_job(Path(__file__).resolve().parents[2] / "validation" / "vllm_cpu_smollm2.yaml")

_skip_reasons: list[str] = []


def _unavailable(reason: str) -> None:
    msg = f"real_engine: vLLM-on-CPU unavailable: {reason}"
    if os.environ.get("ETALON_REQUIRE_REAL_ENGINE") == "1":
        pytest.fail(msg + " (ETALON_REQUIRE_REAL_ENGINE=1)", pytrace=False)
    if msg not in _skip_reasons:
        _skip_reasons.append(msg)
        print(f"\n[SKIP] {msg}", file=sys.stderr, flush=True)
    pytest.skip(msg)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if _skip_reasons:
        terminalreporter.section("real_engine skipped")
        for msg in _skip_reasons:
            terminalreporter.write_line(msg)


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[VllmCpuServer]:
    """A running :class:`VllmCpuServer` with the default settings (max_num_seqs etc. as in
    :class:`~etalon.launchers.vllm_cpu.VllmSchedulerSettings`), stopped at the end."""
    reason = vllm_cpu_missing_reason()
    if reason:
        _unavailable(reason)
    srv = VllmCpuServer(startup_timeout=float(os.environ.get("ETALON_VLLM_STARTUP_TIMEOUT", "300")))
    print(f"\n[real_engine] starting vLLM on CPU (log: {srv.default_log_dir}) ...", file=sys.stderr, flush=True)
    with srv:
        mem = srv.memory()
        print(f"[real_engine] vLLM {srv.vllm_version} ready in {srv.startup_seconds:.1f}s at {srv.base_url}, "
              f"{mem['processes']} processes, PSS {mem['pss'] / 2**30:.2f} GiB", file=sys.stderr, flush=True)
        yield srv


@pytest.fixture(scope="session")
def real_tokenizer(vllm_server: VllmCpuServer):
    """The served model's tokenizer, loaded in the main environment from the prepared folder."""
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(vllm_server.tokenizer_path)


def _post(url: str, body: dict[str, Any]) -> urllib.request.Request:
    return urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                  headers={"Content-Type": "application/json"})


@pytest.fixture(scope="session")
def get_json(vllm_server: VllmCpuServer) -> Callable[[str], Any]:
    """``get_json("/v1/models")`` -> parsed JSON (path relative to the server root)."""

    def get(path: str, timeout: float = 30.0) -> Any:
        with urllib.request.urlopen(vllm_server.url(path), timeout=timeout) as r:
            return json.loads(r.read())

    return get


@pytest.fixture(scope="session")
def post_json(vllm_server: VllmCpuServer) -> Callable[..., Any]:
    """``post_json("/v1/completions", body)`` -> parsed JSON; an HTTP error raises with its body."""

    def post(path: str, body: dict[str, Any], timeout: float = 120.0) -> Any:
        try:
            with urllib.request.urlopen(_post(vllm_server.url(path), body), timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"POST {path} -> HTTP {e.code}: {e.read()[:2000]!r}") from None

    return post


@pytest.fixture(scope="session")
def post_stream(vllm_server: VllmCpuServer) -> Callable[..., dict[str, Any]]:
    """``post_stream("/v1/completions", body)`` -> ``{"events": [parsed data events],
    "done": saw [DONE], "raw": [data lines]}`` of an SSE response."""

    def post(path: str, body: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        raw: list[str] = []
        done = False
        try:
            with urllib.request.urlopen(_post(vllm_server.url(path), {**body, "stream": True}),
                                        timeout=timeout) as r:
                assert r.headers.get("Content-Type", "").startswith("text/event-stream"), r.headers
                for line in r:
                    text = line.decode("utf-8").rstrip("\r\n")
                    if not text.startswith("data:"):
                        continue
                    payload = text[5:].strip()
                    raw.append(payload)
                    if payload == "[DONE]":
                        done = True
                        continue
                    assert not done, "data after [DONE]"
                    events.append(json.loads(payload))
        except urllib.error.HTTPError as e:
            raise AssertionError(f"POST {path} (stream) -> HTTP {e.code}: {e.read()[:2000]!r}") from None
        return {"events": events, "done": done, "raw": raw}

    return post


@pytest.fixture(scope="session")
def profiled(vllm_server: VllmCpuServer, tmp_path_factory) -> SimpleNamespace:
    """One fresh profile of the session's server (prefill, then decode; ~8.5 min on the AVX2
    VM), shared by the calibration and prefix-caching tests."""
    out = tmp_path_factory.mktemp("vllm_calibration")
    path = out / "profile.json"
    meter = CpuMeter(vllm_server)
    prefill = steps.profile_prefill(vllm_server, JOB, out / "profiling", path)
    decode = steps.profile_decode(vllm_server, JOB, out / "profiling", path)
    engine = engine_config_of(vllm_server)
    foreign = meter.foreign_cores()
    return SimpleNamespace(out=out, path=path, prefill=prefill, decode=decode, engine=engine,
                           foreign_cores=foreign,
                           capacity=steps.capacity_rps(JOB, path, engine, out / "capacity"))

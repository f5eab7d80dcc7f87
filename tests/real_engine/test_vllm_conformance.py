"""The conformance suite (tests/conformance.py) against live vLLM on CPU with its real tokenizer:
the same checks as the embedded and programmed servers in tests/test_conformance.py."""

from __future__ import annotations

import pytest

from conformance import APIS, ServerKind, check_conformance

pytestmark = pytest.mark.real_engine


@pytest.mark.parametrize("api", APIS)
def test_vllm_conforms(vllm_server, api):
    kind = ServerKind("vllm", vllm_server.base_url, vllm_server.model_name,
                      str(vllm_server.tokenizer_path))
    recs, summary, _ = check_conformance(kind, api)
    # vLLM honours ignore_eos and streams usage and finish reasons: nothing inferred or short.
    assert all(r.ok for r in recs)
    assert {r.prompt_tokens_source for r in recs} == {"usage"}
    assert {r.output_tokens_source for r in recs} == {"usage"}
    assert {r.finish_reason_source for r in recs} == {"server"}
    assert summary["lengths"]["output"]["num_short"] == 0
    # no warning but, possibly, the load generator's: its dispatch lag is the 2-core machine's,
    # which vLLM keeps busy (a CI run: p99 15.7 ms against the 10 ms threshold), measured in
    # benchmarks/loadgen_overhead.py, not here
    assert [w for w in summary["warnings"] if not w.startswith("LOAD GENERATOR FELL BEHIND")] == []

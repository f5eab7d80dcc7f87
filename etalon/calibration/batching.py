"""What do the token pairs *across* prompts in one step cost? A probe the prefill profiler runs
after fitting the isolated-prompt curve.

Isolated prompts cannot tell: for one prompt, its own attention pairs and the step's
total-token pairs are the same number. They differ for a step holding several prompts: an
engine that attends per sequence pays ``Σ n(n+1)/2`` pairs; one whose prefill cost curves with
the step's total tokens (vLLM on CPU, measured in docs/real_engine.md) also pays, in part or in
full, for the ``(T² − Σ n²)/2`` cross-prompt pairs (``StepBatch.prefill_cross_pairs``).

Each probe group sends a *leader* prompt of ``n`` tokens and, while the engine is busy with it,
``k`` *followers* of ``n`` tokens at once. The followers wait, then run together in the step
right after the leader's, so that step's duration is the gap between the leader's first token
and theirs — back to back, with no request path in it. Groups with one follower measure the
same gap for one prompt; the difference cancels the step's fixed cost:

    d_k − d_1 = (k−1) (j + β n + γ n(n+1)/2) + c_x · cross_pairs(k × n)

with β and γ from the fitted prefill curve (at ``n``, inside the profiled range) and ``j`` the
engine's work per prompt in a step (``etalon.calibration.join``; 0 when not probed). The probe
solves for ``c_x``, the cost of one cross-prompt pair (clipped at 0), and reports it also as a
fraction of ``γ``: about 0 for per-sequence attention, about 1 when several prompts cost what
one prompt of their total length does. Every request asks for one output token, so no decode
joins the steps. A group whose followers did not land in one step (a token budget below
``k·n``, or a late arrival) is left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etalon.calibration.probe import Probe, Round
from etalon.cli_errors import UserError
from etalon.perf.base import StepBatch
from etalon.profiles import BatchingResult, Section
from etalon.records import RequestRecord
from etalon.workload.request import Request

FOLLOWER_DELAY = 0.3  # followers arrive this far into the leader's predicted TTFT
MIN_GAP_S = 0.2  # idle time between groups


@dataclass(frozen=True)
class BatchingSettings:
    """``prompt_tokens`` per prompt, ``followers`` prompts sharing the measured step,
    ``repetitions`` groups of each kind (one follower, ``followers`` followers)."""

    prompt_tokens: int
    followers: int = 2
    repetitions: int = 2

    def validate(self) -> "BatchingSettings":
        if self.prompt_tokens < 1:
            raise UserError("--batching-probe-length must be >= 1")
        if self.followers < 2:
            raise UserError("--batching-probe-prompts must be >= 2 (prompts sharing one step)")
        if self.repetitions < 1:
            raise UserError("--num-repetitions must be >= 1")
        return self


def default_probe_length(lengths) -> int:
    """The middle profiled length: long enough that its cross pairs show, short enough that
    ``followers`` of them fit a typical per-step token budget."""
    lengths = sorted(lengths)
    return int(lengths[(len(lengths) - 1) // 2])


@dataclass(frozen=True)
class GroupGap:
    """One group's measured step: ``followers`` prompts, ``gap_s`` after the leader's token."""

    followers: int
    gap_s: float


@dataclass(frozen=True)
class BatchingProbe(Probe):
    """Leader + followers groups; the result is ``prefill.batching``."""

    settings: BatchingSettings
    entry = BatchingResult.entry

    def groups(self, first_id: int = 0) -> list[tuple[int, list[int]]]:
        """Per group ``(leader_id, follower_ids)``; ``k = 1`` and ``k = followers`` groups
        alternate so drift affects both alike."""
        out, rid = [], first_id
        for _ in range(self.settings.repetitions):
            for k in (1, self.settings.followers):
                out.append((rid, list(range(rid + 1, rid + 1 + k))))
                rid += 1 + k
        return out

    def plan(self, section: Section) -> list[Round]:
        n = self.settings.prompt_tokens
        single = float(section.predict({"prompt_tokens": n}, strict=False))
        requests: list[Request] = []
        t = 0.0
        for leader, followers in self.groups():
            k = len(followers)
            requests.append(Request(leader, t, n, 1))
            requests += [Request(f, t + FOLLOWER_DELAY * single, n, 1) for f in followers]
            # the leader, then the followers as one prompt of k·n tokens (an upper bound)
            together = float(section.predict({"prompt_tokens": k * n}, strict=False))
            t += 2.0 * (single + together) + MIN_GAP_S
        return [Round(tuple(requests), self.settings.followers + 1)]

    def judge(self, records: list[RequestRecord], section: Section) -> BatchingResult | None:
        """The measured cost of a cross-prompt pair (None when no usable pair of groups)."""
        n, k = self.settings.prompt_tokens, self.settings.followers
        tolerance = max(0.002, 0.2 * section.physical.coefficient("prompt_tokens") * n)
        gaps, skipped = group_gaps(records, self.groups(), tolerance)
        one = [g.gap_s for g in gaps if g.followers == 1]
        many = [g.gap_s for g in gaps if g.followers == k]
        if not one or not many:
            return None
        gamma = section.physical.coefficient("attention_pairs")
        alone = (k - 1) * (section.join_cost + section.prompt_variable_s(n))
        pairs = StepBatch.cross_pairs([n] * k)
        measured = float(np.median(many) - np.median(one))
        return BatchingResult(
            per_cross_pair=max(measured - alone, 0.0) / pairs,
            cross_pair_fraction=(measured - alone) / (gamma * pairs) if gamma > 0 else None,
            measured_extra_s=measured, alone_s=alone, as_one_prompt_s=alone + gamma * pairs,
            prompt_tokens=n, followers=k, gaps_1_s=tuple(one), gaps_k_s=tuple(many),
            groups_left_out=skipped)

    def announce(self) -> str:
        return (f"batching probe, {self.settings.repetitions} x 2 groups of "
                f"{self.settings.prompt_tokens}-token prompts")

    def inconclusive(self) -> str:
        return (f"batching probe inconclusive (no group's prompts shared one step; is the "
                f"server's per-step token budget below "
                f"{self.settings.followers * self.settings.prompt_tokens}?); prompts are priced alone")


def group_gaps(records: list[RequestRecord], groups: list[tuple[int, list[int]]],
               tolerance_s: float) -> tuple[list[GroupGap], int]:
    """The gap of every group whose followers landed in one step after the leader's; returns
    them and how many groups were left out."""
    by_id = {r.request_id: r for r in records if r.ok and len(r.chunk_times) > 0}
    gaps, skipped = [], 0
    for leader, followers in groups:
        if leader not in by_id or any(f not in by_id for f in followers):
            skipped += 1
            continue
        lead = by_id[leader].chunk_times[0]
        firsts = np.array([by_id[f].chunk_times[0] for f in followers])
        if firsts.max() - firsts.min() > tolerance_s or firsts.min() <= lead + tolerance_s:
            skipped += 1  # split over steps, or scheduled with the leader
            continue
        gaps.append(GroupGap(len(followers), float(np.median(firsts) - lead)))
    return gaps, skipped

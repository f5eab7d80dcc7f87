"""Prefill profiling: isolated requests per prompt length, TTFT per repetition, a fitted curve.

One request is in flight at a time, so each TTFT is one prefill with nothing batched beside it
(plus the constant request path: HTTP, tokenization, scheduling, which the intercept absorbs).
Repetitions run in a fresh seeded order of lengths each, so drift over the run does not
masquerade as a length effect; warm-up requests (shortest and longest length, alternating) go
first and are dropped. The x of each point is the prompt length the server reports in
``usage`` — what it actually prefilled — not the one requested.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

import numpy as np

from sklearn.metrics import mean_absolute_percentage_error, r2_score

from etalon.calibration.fitting import FitSettings, fit_section, shift_level
from etalon.calibration.measure import Target, prompt_count_note, send, successful
from etalon.cli_errors import UserError
from etalon.profiles import Section
from etalon.records import RequestRecord
from etalon.workload.request import Request

DEFAULT_LENGTHS = (256, 512, 1024, 1536, 2048, 3072, 4096)


@dataclass(frozen=True)
class PrefillSettings:
    """What the prefill profiler sends."""

    prompt_lengths: tuple[int, ...] = DEFAULT_LENGTHS
    num_repetitions: int = 3
    num_warmup: int = 2
    decode_tokens: int = 2
    seed: int = 0

    def validate(self) -> "PrefillSettings":
        if len(self.prompt_lengths) < 3:
            raise UserError("--prefill-lengths: give at least 3 lengths (the fit has 3 parameters)")
        if min(self.prompt_lengths) < 1 or len(set(self.prompt_lengths)) != len(self.prompt_lengths):
            raise UserError("--prefill-lengths: lengths must be distinct integers >= 1")
        for name, low in (("num_repetitions", 1), ("num_warmup", 0), ("decode_tokens", 1)):
            if getattr(self, name) < low:
                raise UserError(f"--{name.replace('_', '-')} must be >= {low}")
        return self


@dataclass
class PrefillPlan:
    """The requests to send; ``repetition[i]`` is -1 for warm-up requests."""

    requests: list[Request]
    repetition: dict[int, int]


def plan_prefill(settings: PrefillSettings, first_id: int = 0) -> PrefillPlan:
    rng = np.random.default_rng([settings.seed, 0x70])  # the profiler's own order stream
    lengths = sorted(settings.prompt_lengths)
    order: list[tuple[int, int]] = [((lengths[0], lengths[-1])[i % 2], -1)
                                    for i in range(settings.num_warmup)]
    for rep in range(settings.num_repetitions):
        order += [(int(n), rep) for n in rng.permutation(lengths)]
    requests = [Request(first_id + i, 0.0, n, settings.decode_tokens) for i, (n, _) in enumerate(order)]
    return PrefillPlan(requests, {first_id + i: rep for i, (_, rep) in enumerate(order)})


@dataclass
class PrefillMeasurements:
    """One row per measured (non-warm-up) request."""

    prompt_tokens: np.ndarray
    requested_prompt_tokens: np.ndarray
    ttft_s: np.ndarray
    repetition: np.ndarray
    counts_from_usage: bool

    def columns(self) -> dict[str, list]:
        return {"prompt_tokens": self.prompt_tokens.tolist(),
                "requested_prompt_tokens": self.requested_prompt_tokens.tolist(),
                "ttft_s": self.ttft_s.tolist(), "repetition": self.repetition.tolist()}


def measure_prefill(target: Target, settings: PrefillSettings, prog: str
                    ) -> tuple[list[RequestRecord], PrefillMeasurements]:
    """Sends the plan one request at a time; returns all records and the measured rows."""
    plan = plan_prefill(settings.validate())
    records = send(target, plan.requests, concurrency=1)
    chat = target.client_name == "openai-chat"
    return records, prefill_measurements(records, plan, prog, chat=chat)


def prefill_measurements(records: list[RequestRecord], plan: PrefillPlan,
                         prog: str, *, chat: bool = False) -> PrefillMeasurements:
    measured = [r for r in records if plan.repetition.get(r.request_id, -1) >= 0]
    ok = successful(measured, "prefill", prog)
    from_usage = all(r.prompt_tokens_source == "usage" for r in ok)
    note = prompt_count_note(ok, chat)
    if note:
        print(f"{prog}: {note}", file=sys.stderr)
    return PrefillMeasurements(
        prompt_tokens=np.array([r.num_prompt_tokens or r.requested_prompt_tokens for r in ok]),
        requested_prompt_tokens=np.array([r.requested_prompt_tokens for r in ok]),
        ttft_s=np.array([r.ttft for r in ok], dtype=float),
        repetition=np.array([plan.repetition[r.request_id] for r in ok]),
        counts_from_usage=from_usage)


def fit_prefill(meas: PrefillMeasurements, fit: FitSettings = FitSettings(),
                settings: PrefillSettings | None = None) -> Section:
    """Fits TTFT against prompt tokens: the shape from each length's fastest repetition, the
    level from the typical one.

    Interference (a busy CPU, a GC pause, another tenant) only ever adds time, so the fastest
    of a few repetitions is the cleanest view of how prefill time grows with length — the
    median of three or five still carries a millisecond or two of jitter that bends a fitted
    quadratic. The curve through the minima is then shifted up by the median residual of every
    repetition, so predictions are typical TTFTs, not best cases. Cross-validation holds out
    whole lengths; ``fit.raw_mape`` / ``fit.raw_r2`` score the final curve on every repetition
    and ``fit.median_r2`` on each length's median one: the typical TTFT the curve stands for,
    which one disturbed repetition of five cannot move (on a shared VM the slowest of five is
    often 20-40 % above the rest, which is the machine's scatter, not the curve's error).
    """
    lengths = np.unique(meas.requested_prompt_tokens)
    rows = [meas.requested_prompt_tokens == n for n in lengths]
    x = np.array([np.median(meas.prompt_tokens[r]) for r in rows])
    y = np.array([np.min(meas.ttft_s[r]) for r in rows])
    info = asdict(settings) if settings is not None else {}
    info["prompt_lengths"] = list(info.get("prompt_lengths", []))
    info["counts_from_usage"] = meas.counts_from_usage
    info["fit_on"] = "fastest TTFT per prompt length, shifted by the median residual"
    section = fit_section("prefill", x.reshape(-1, 1), y, np.arange(len(x)), fit,
                          measurements=meas.columns(), profiler_settings=info)
    raw_x = {"prompt_tokens": meas.prompt_tokens}
    shift = float(np.median(meas.ttft_s - section.physical.predict(raw_x)))
    section = shift_level(section, max(shift, 0.0))
    pred = section.predict(raw_x, strict=False)
    section.quality["raw_mape"] = float(mean_absolute_percentage_error(meas.ttft_s, pred))
    section.quality["raw_r2"] = float(r2_score(meas.ttft_s, pred)) if len(pred) > 1 else None
    typical = np.array([np.median(meas.ttft_s[r]) for r in rows])
    at = {"prompt_tokens": np.array([np.median(meas.prompt_tokens[r]) for r in rows])}
    section.quality["median_r2"] = (float(r2_score(typical, section.predict(at, strict=False)))
                                    if len(typical) > 1 else None)
    return section

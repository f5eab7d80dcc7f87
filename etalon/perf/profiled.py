"""A performance model fitted to measurements: step times from a profile's predictors.

A profile (``etalon.profiles``) holds a prefill curve fitted to isolated TTFTs and a decode
surface fitted to steady-state inter-token gaps. Their physical predictors are linear in
exactly ``StepBatch``'s aggregates, so any step is priced from them:

- prefill part ``a_p + β · prefill_tokens + γ · prefill_attention``. For an isolated prompt of
  ``n`` tokens the attention term is ``n (n + 1) / 2``, which is the feature the prefill curve
  was fitted on, so ``prefill_time(n)`` equals the fitted curve exactly; a chunk after ``ctx``
  cached tokens pays for its ``c · ctx`` extra pairs (``StepBatch.prefill_context_pairs``) at
  the price the profile's context probe measured (``prefill.context.per_context_pair``,
  ``etalon.calibration.context``), else through the same ``γ``. The step's
  cross-prompt token pairs (``StepBatch.prefill_cross_pairs``) cost what the
  profile's batching probe measured per pair (``prefill.batching.per_cross_pair``; 0 when not
  measured, about ``γ`` on vLLM-CPU, where several prompts cost nearly what one prompt of their
  total length does);
- decode part ``a_d + b_d · decode_batch + c_d · decode_context``;
- each prompt (chunk) in a step adds the engine work the profile's join probe measured
  (``prefill.join.per_join_s``, ``etalon.calibration.join``; 0 when not measured): a new
  request's scheduling and input preparation, on a CPU server the frontend taking cores from the
  running step. It is part of every isolated TTFT, so it comes out of the request path below
  (and is capped at ``a_p - a_d``, all of it);
- the first step after a pause adds the profile's measured wake-up cost (``prefill.wake_up``,
  ``etalon.calibration.wake_up``), interpolated at the idle time;
- a profile re-anchored to the engine's speed now (``etalon.calibration.anchor``) scales every
  prefill term by the prefill section's ``scale`` and every decode term by the decode one's;
- one fixed cost per step. With a decode section that is ``a_d``, which is measured from the
  gaps between steps alone. ``a_p`` comes from TTFTs, so it also holds the request path (HTTP,
  tokenization, queueing: ``a_p - a_d``, reported as ``request_path_s``), which no engine step
  pays: charging it on every mixed step made a chunked-prefill engine look ~20 % slower at high
  load. The simulator charges it once per request instead, before the request reaches the
  engine (``request_path_s`` = ``a_p - a_d - per_join_s``). So a prefill-only step costs
  ``a_d + per_join_s · prompts + β · tokens + γ · attention`` and a mixed step adds the decode
  part's variable terms; an isolated prefill step is shorter than the profiled TTFT by exactly
  the request path. Without a decode section, ``a_p`` is the fixed cost.

When the profile chose a flexible predictor for a section (it won cross-validation clearly), the
part is scaled by ``chosen / physical`` at the step's token count (prefill) or shape (decode)
inside the profiled range, so ``prefill_time`` matches the profile's own ``prefill_time``.

Outside what the profile claims (``extrapolation.limits``) the model does not refuse — an engine
must time every step — it uses the physical predictors, counts the step in
``extrapolated_steps`` (reported by ``describe()``) and logs one warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from etalon.cli_errors import UserError
from etalon.perf.base import PerfModel, StepBatch
from etalon.profiles.profile import PROFILE_KIND, SCHEMA_VERSION, Profile, load_profile
from etalon.profiles.section import Section

log = logging.getLogger(__name__)


@dataclass
class ProfiledPerfModel(PerfModel):
    """Step times from a profile with both a prefill and a decode section."""

    profile: Profile
    extrapolated_steps: int = field(default=0, init=False)

    name = "profiled"

    def __post_init__(self) -> None:
        prefill, decode = self.profile.section("prefill"), self.profile.section("decode")
        p, d = prefill.physical, decode.physical
        sp, sd = prefill.scale, decode.scale  # re-anchored to the engine's speed now (else 1)
        self._a_p = sp * p.intercept
        self._beta = sp * p.coefficient("prompt_tokens")
        self._gamma = sp * p.coefficient("attention_pairs")
        self._gamma_ctx = prefill.context_pair_cost  # = γ unless the context probe measured it
        self._a_d = sd * d.intercept
        self._b_d = sd * d.coefficient("decode_batch")
        self._c_d = sd * d.coefficient("decode_context")
        # the join is the part of a_p - a_d that runs inside steps, so it cannot exceed it: a
        # larger measured join (probe noise on a fast engine) would push isolated TTFTs above
        # the fitted curve
        self._join = min(prefill.join_cost, max(0.0, self._a_p - self._a_d))
        self._request_path = max(0.0, self._a_p - self._a_d - self._join)
        self._cross = prefill.cross_pair_cost
        self._prefill_flex = prefill.predictor is not prefill.physical
        self._decode_flex = decode.predictor is not decode.physical
        n_max = prefill.limit("prompt_tokens")
        self._max_tokens = n_max
        self._max_attention = n_max * (n_max + 1) / 2.0
        self._max_batch = decode.limit("decode_batch")
        self._max_context = decode.limit("decode_context")
        self._warned = False

    # -- parts -------------------------------------------------------------------------------

    def _prefill_part(self, batch: StepBatch) -> float:
        own = batch.prefill_attention - batch.prefill_context_pairs
        t = (self._a_d + self._join * batch.num_prefill_seqs + self._beta * batch.prefill_tokens
             + self._gamma * own + self._gamma_ctx * batch.prefill_context_pairs
             + self._cross * batch.prefill_cross_pairs)
        if batch.prefill_tokens > self._max_tokens or batch.prefill_attention > self._max_attention:
            self._flag("prefill", f"{batch.prefill_tokens} prefill tokens")
        elif self._prefill_flex:
            t *= _correction(self.profile.prefill, {"prompt_tokens": batch.prefill_tokens})
        return float(t)

    def _decode_part(self, batch_size: int, context: np.ndarray) -> np.ndarray:
        t = self._a_d + self._b_d * batch_size + self._c_d * context
        over = (batch_size > self._max_batch) | (context > self._max_context)
        if np.any(over):
            self._flag("decode", f"batch {batch_size}, context {float(np.max(context)):g}",
                       int(np.count_nonzero(over)))
        if self._decode_flex:
            t = t * np.where(over, 1.0, _correction(
                self.profile.decode, {"decode_batch": batch_size, "decode_context": context}))
        return t

    def _flag(self, part: str, what: str, count: int = 1) -> None:
        self.extrapolated_steps += count
        if not self._warned:
            self._warned = True
            log.warning("profiled perf model: a %s step (%s) is beyond what %s claims; timed with "
                        "the physical predictors", part, what, self.profile.label)

    # -- PerfModel -----------------------------------------------------------------------------

    @property
    def request_path_s(self) -> float:
        return self._request_path

    def wake_up_s(self, idle_s: float) -> float:
        return self.profile.prefill.wake_up_s(idle_s)

    def step_time(self, batch: StepBatch) -> float:
        if batch.empty:
            return 0.0
        t = 0.0
        if batch.prefill_tokens:
            t += self._prefill_part(batch)
        if batch.decode_batch:
            b, ctx = batch.decode_batch, batch.decode_context
            if self._decode_flex or b > self._max_batch or ctx > self._max_context:
                t += float(self._decode_part(b, np.asarray(float(ctx)))[()])
            else:  # the common case, without numpy's per-call cost
                t += self._a_d + self._b_d * b + self._c_d * ctx
            if batch.prefill_tokens:
                t -= self._a_d  # one fixed cost per step
        return t

    def decode_step_times(self, batch_size: int, context_sums: np.ndarray) -> np.ndarray:
        ctx = np.asarray(context_sums, dtype=float)
        if batch_size <= 0:
            return np.zeros_like(ctx)
        return np.asarray(self._decode_part(batch_size, ctx), dtype=float)

    def describe(self) -> dict:
        wake = self.profile.prefill.wake_up
        return {
            "kind": self.name,
            "source_file": self.profile.path,
            "model": self.profile.source.get("model"),
            "prefill": {"intercept": self._a_p, "per_prefill_token": self._beta,
                        "per_attention_pair": self._gamma, "per_context_pair": self._gamma_ctx,
                        "chosen": self.profile.prefill.chosen,
                        "per_cross_pair": self._cross, "per_join": self._join,
                        "wake_up": None if wake is None else {"gaps_s": list(wake.gaps_s),
                                                              "penalty_s": list(wake.penalty_s)}},
            "decode": {"intercept": self._a_d, "per_decode_seq": self._b_d,
                       "per_context_token": self._c_d, "chosen": self.profile.decode.chosen},
            "speed_scale": {"prefill": self.profile.prefill.scale,
                            "decode": self.profile.decode.scale},
            "request_path_s": self._request_path,
            "mixed_step": "decode intercept + per-join cost + prefill and decode variable terms",
            "extrapolated_steps": self.extrapolated_steps,
        }

    @classmethod
    def from_spec(cls, spec: dict, *, where: str = "profiled perf model") -> "ProfiledPerfModel":
        """``{"path": FILE}``, or a profile's sections inline (``{"prefill": {...},
        "decode": {...}}``, as they appear in a profile file)."""
        spec = dict(spec)
        if "path" in spec:
            if set(spec) != {"path"}:
                raise UserError(f"{where}: with 'path', no other keys are allowed "
                                 f"(got {sorted(set(spec) - {'path'})})")
            return cls(load_profile(spec["path"]))
        unknown = sorted(set(spec) - {"prefill", "decode", "source"})
        if unknown:
            raise UserError(f"{where}: unknown key(s) {unknown}; give 'path' or the 'prefill' "
                             f"and 'decode' sections of a profile")
        data = {"kind": PROFILE_KIND, "schema_version": SCHEMA_VERSION, "created_at": "inline",
                "source": spec.pop("source", {}), **spec}
        profile = Profile.from_dict(data, where=where)
        profile.path = where
        return cls(profile)


def _correction(section: Section, values: dict) -> np.ndarray | float:
    """``chosen / physical`` inside the profiled range, 1 outside it."""
    x = {k: np.asarray(v, dtype=float) for k, v in values.items()}
    inside = np.ones(np.broadcast(*x.values()).shape, dtype=bool)
    for name, (lo, hi) in section.valid_range.items():
        inside &= (x[name] >= lo) & (x[name] <= hi)
    ratio = np.where(inside, section.predictor.predict(x) / section.physical.predict(x), 1.0)
    return float(ratio) if ratio.ndim == 0 else ratio

"""What the probes found, as a profile section stores it: one frozen class per probe entry.

A section carries up to five probe entries (``batching``, ``join``, ``wake_up``, ``context``:
prefill only; ``anchor``: either section). Each holds the number the models use
(``per_cross_pair``, ``per_join_s``, the ``gaps_s``/``penalty_s`` table, ``per_context_pair``,
``scale``) and the evidence behind it. The
evidence is optional: a hand-written entry with only the model's number is a valid one, and
``to_dict`` writes back only what is there, in the order the probes write it, so a file
round-trips unchanged. ``from_dict`` checks every field and raises one ``ValueError`` naming the
file and the field; ``describe(section)`` is the line a person reads after a probe ran (the
section's name words an anchor's line; the prefill-only entries ignore it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from etalon.cli_errors import UserError
from etalon.profiles.schema import Fields


def _floats(f: Fields, key: str, **checks) -> tuple[float, ...] | None:
    values = f.numbers(key, required=False, **checks)
    return None if values is None else tuple(values)


def _field_names(cls: type) -> set[str]:
    """The JSON keys of an entry whose keys are its fields."""
    return {f.name for f in fields(cls)}


def _fields_present(entry: object) -> dict:
    """An entry whose keys are its fields, in field order, without the absent ones."""
    return _present({f.name: getattr(entry, f.name) for f in fields(entry)})


def _present(pairs: dict, *, nulls: tuple[str, ...] = ()) -> dict:
    """The JSON object of ``pairs`` without the absent (None) ones but ``nulls``; tuples as
    lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in pairs.items()
            if v is not None or k in nulls}


@dataclass(frozen=True)
class BatchingResult:
    """What a token pair across two prompts of one step costs (``etalon.calibration.batching``):
    ``per_cross_pair`` seconds, also as a fraction of the prefill fit's attention pair, from the
    gaps of groups of one and of ``followers`` prompts of ``prompt_tokens`` tokens."""

    per_cross_pair: float
    cross_pair_fraction: float | None = None  # null when the fit's attention cost is 0
    measured_extra_s: float | None = None
    alone_s: float | None = None  # predicted extra seconds, prompts priced alone ...
    as_one_prompt_s: float | None = None  # ... and priced as one prompt of their total length
    prompt_tokens: int | None = None
    followers: int | None = None
    gaps_1_s: tuple[float, ...] | None = None
    gaps_k_s: tuple[float, ...] | None = None  # stored as "gaps_<followers>_s"
    groups_left_out: int | None = None

    entry: ClassVar[str] = "batching"

    def __post_init__(self) -> None:
        if self.gaps_k_s is not None and self.followers is None:
            raise UserError("batching result: gaps_k_s needs followers (k)")

    def to_dict(self) -> dict:
        predicted = (None if self.alone_s is None else
                     {"alone": self.alone_s, "as_one_prompt": self.as_one_prompt_s})
        return _present({"per_cross_pair": self.per_cross_pair,
                        "cross_pair_fraction": self.cross_pair_fraction,
                        "measured_extra_s": self.measured_extra_s, "predicted_extra_s": predicted,
                        "prompt_tokens": self.prompt_tokens, "followers": self.followers,
                        "gaps_1_s": self.gaps_1_s, f"gaps_{self.followers}_s": self.gaps_k_s,
                        "groups_left_out": self.groups_left_out},
                        # the probe writes a null fraction (the fit's attention cost was 0)
                        nulls=("cross_pair_fraction",) if self.measured_extra_s is not None else ())

    @classmethod
    def from_dict(cls, data: object, where: str) -> "BatchingResult":
        f = Fields(data, where)
        followers = f.int("followers", required=False, minimum=2)
        many = f"gaps_{followers}_s" if followers is not None else None
        if many is None and any(re.fullmatch(r"gaps_\d+_s", k) and k != "gaps_1_s" for k in f.data):
            raise UserError(f"{where}: a gaps_<k>_s list needs 'followers' (k)")
        f.only({"per_cross_pair", "cross_pair_fraction", "measured_extra_s", "predicted_extra_s",
                "prompt_tokens", "followers", "gaps_1_s", "groups_left_out"} | ({many} if many else set()))
        predicted = f.obj("predicted_extra_s", required=False)
        alone = one = None
        if predicted is not None:
            predicted.only({"alone", "as_one_prompt"})
            alone, one = predicted.num("alone"), predicted.num("as_one_prompt")
        return cls(per_cross_pair=f.num("per_cross_pair", minimum=0),
                   cross_pair_fraction=f.num("cross_pair_fraction", required=False),
                   measured_extra_s=f.num("measured_extra_s", required=False),
                   alone_s=alone, as_one_prompt_s=one,
                   prompt_tokens=f.int("prompt_tokens", required=False, minimum=1),
                   followers=followers, gaps_1_s=_floats(f, "gaps_1_s"),
                   gaps_k_s=_floats(f, many) if many else None,
                   groups_left_out=f.int("groups_left_out", required=False, minimum=0))

    def describe(self, section: str = "prefill") -> str:
        cost = f"a cross-prompt token pair costs {self.per_cross_pair:.3g} s" + (
            "" if self.cross_pair_fraction is None
            else f" ({self.cross_pair_fraction:.2f} of an attention pair)")
        if None in (self.measured_extra_s, self.alone_s, self.followers, self.prompt_tokens):
            return f"several prompts in one step: {cost}"
        return (f"several prompts in one step: {self.followers} prompts of {self.prompt_tokens} "
                f"cost {self.measured_extra_s * 1e3:.1f} ms more than one (alone: "
                f"{self.alone_s * 1e3:.1f}); {cost}")


@dataclass(frozen=True)
class JoinResult:
    """What a prompt joining sequences that decode adds to their step beyond its tokens
    (``etalon.calibration.join``): ``per_join_s``, the median of the joins' ``extras_s``."""

    per_join_s: float
    extras_s: tuple[float, ...] | None = None
    decode_step_s: float | None = None  # the decoders' own step before the joins
    prompt_tokens: int | None = None
    decoders: int | None = None
    joins_left_out: int | None = None

    entry: ClassVar[str] = "join"

    def to_dict(self) -> dict:
        return _fields_present(self)

    @classmethod
    def from_dict(cls, data: object, where: str) -> "JoinResult":
        f = Fields(data, where)
        f.only(_field_names(cls))
        return cls(per_join_s=f.num("per_join_s", minimum=0), extras_s=_floats(f, "extras_s"),
                   decode_step_s=f.num("decode_step_s", required=False, minimum=0),
                   prompt_tokens=f.int("prompt_tokens", required=False, minimum=1),
                   decoders=f.int("decoders", required=False, minimum=1),
                   joins_left_out=f.int("joins_left_out", required=False, minimum=0))

    def standard_error_s(self) -> float | None:
        """How far the joins' own scatter moves their median: 1.2533 · sd / √n (the normal
        approximation); None without at least two joins."""
        if not self.extras_s or len(self.extras_s) < 2:
            return None
        return 1.2533 * float(np.std(self.extras_s, ddof=1)) / len(self.extras_s) ** 0.5

    def conclusive(self) -> bool:
        """Whether the joins agree enough to tell the cost from nothing: their (unclipped)
        median lies two standard errors or more from 0. On a busy 2-core VM twelve joins have
        scattered by ±50 ms around a ~20 ms cost; such a probe prices the join at its median
        but says it could not resolve it."""
        se = self.standard_error_s()
        if se is None:
            return True  # a profile without the evidence: nothing to judge it by
        return abs(float(np.median(self.extras_s))) >= 2.0 * se

    def describe(self, section: str = "prefill") -> str:
        work = f"+{self.per_join_s * 1e3:.1f} ms of engine work beyond its tokens"
        if None in (self.extras_s, self.decode_step_s, self.prompt_tokens, self.decoders):
            return f"a prompt joining decoding sequences: {work}"
        text = (f"a prompt of {self.prompt_tokens} joining {self.decoders} decoding sequences: "
                f"{work} (median of {len(self.extras_s)} joins; their own step "
                f"{self.decode_step_s * 1e3:.1f} ms)")
        if not self.conclusive():
            text += (f"; INCONCLUSIVE: the joins scatter by ±{self.standard_error_s() * 1e3:.1f} ms "
                     "(standard error of their median), more than half the cost measured: "
                     "profile again on a quieter machine or with more repetitions")
        return text


@dataclass(frozen=True)
class WakeUpResult:
    """Extra seconds of the first step after a pause (``etalon.calibration.wake_up``):
    ``penalty_s[i]`` after ``gaps_s[i]`` idle seconds (increasing), with the probe's plan and
    median TTFTs as evidence."""

    gaps_s: tuple[float, ...]
    penalty_s: tuple[float, ...]
    planned_gaps_s: tuple[float, ...] | None = None
    ttft_s: tuple[float, ...] | None = None  # median TTFT at each planned gap
    prompt_tokens: int | None = None
    repetitions: int | None = None

    entry: ClassVar[str] = "wake_up"

    def penalty_at(self, idle_s: float) -> float:
        """Linear between the probed gaps, the longest gap's value beyond them."""
        return float(np.interp(idle_s, self.gaps_s, self.penalty_s))

    def to_dict(self) -> dict:
        return _fields_present(self)

    @classmethod
    def from_dict(cls, data: object, where: str) -> "WakeUpResult":
        f = Fields(data, where)
        f.only(_field_names(cls))
        gaps = f.numbers("gaps_s", minimum=0)
        penalty = f.numbers("penalty_s", length=len(gaps), minimum=0)
        if not gaps or any(b <= a for a, b in zip(gaps, gaps[1:])):
            raise UserError(f"{f.at('gaps_s')}: expected increasing idle gaps")
        planned = _floats(f, "planned_gaps_s", minimum=0)
        return cls(gaps_s=tuple(gaps), penalty_s=tuple(penalty), planned_gaps_s=planned,
                   ttft_s=_floats(f, "ttft_s", minimum=0,
                                  length=None if planned is None else len(planned)),
                   prompt_tokens=f.int("prompt_tokens", required=False, minimum=1),
                   repetitions=f.int("repetitions", required=False, minimum=1))

    def describe(self, section: str = "prefill") -> str:
        steps = ", ".join(f"{g:.2g} s: +{p * 1e3:.0f} ms" for g, p in zip(self.gaps_s, self.penalty_s))
        return f"first step after a pause: {steps}"


@dataclass(frozen=True)
class ContextResult:
    """What a new prompt token's attention over a cached prefix costs
    (``etalon.calibration.context``): ``per_context_pair`` seconds per (new token, cached token)
    pair, fitted through the origin to how much longer ``suffix_tokens`` new tokens took after
    each cached prefix (``extras_s[i]`` after ``prefix_tokens[i]``) than with none
    (``alone_s``, their median TTFT)."""

    per_context_pair: float
    suffix_tokens: int | None = None
    prefix_tokens: tuple[float, ...] | None = None
    extras_s: tuple[float, ...] | None = None
    alone_s: float | None = None
    repetitions: int | None = None

    entry: ClassVar[str] = "context"

    def to_dict(self) -> dict:
        return _fields_present(self)

    @classmethod
    def from_dict(cls, data: object, where: str) -> "ContextResult":
        f = Fields(data, where)
        f.only(_field_names(cls))
        prefixes = _floats(f, "prefix_tokens", minimum=1)
        return cls(per_context_pair=f.num("per_context_pair", minimum=0),
                   suffix_tokens=f.int("suffix_tokens", required=False, minimum=1),
                   prefix_tokens=prefixes,
                   extras_s=_floats(f, "extras_s",
                                    length=None if prefixes is None else len(prefixes)),
                   alone_s=f.num("alone_s", required=False, minimum=0),
                   repetitions=f.int("repetitions", required=False, minimum=1))

    def describe(self, section: str = "prefill") -> str:
        cost = f"a new token's pair with a cached one costs {self.per_context_pair:.3g} s"
        if None in (self.suffix_tokens, self.prefix_tokens, self.extras_s, self.alone_s):
            return f"attention over a cached prefix: {cost}"
        after = ", ".join(f"{p:.0f}: +{e * 1e3:.1f} ms" for p, e in zip(self.prefix_tokens, self.extras_s))
        return (f"attention over a cached prefix: {self.suffix_tokens} new tokens took "
                f"{self.alone_s * 1e3:.1f} ms alone, and after cached prefixes of {after}; {cost}")


#: what an anchor of each section compares with its fit
ANCHOR_MEASURES = {"prefill": "TTFT", "decode": "inter-token gap"}


@dataclass(frozen=True)
class AnchorResult:
    """How fast the engine runs now against when the section was profiled
    (``etalon.calibration.anchor``): every time the section predicts is multiplied by ``scale``
    (now / then), the engine's ``measured_s`` over the fit's ``predicted_s`` divided by the
    ratio the profile's own measurements had (``profiled_ratio``)."""

    scale: float
    measured_s: float | None = None
    predicted_s: float | None = None
    profiled_ratio: float | None = None
    requests: int | None = None
    prompt_tokens: int | None = None
    measured_at: str | None = None
    output_tokens: int | None = None  # decode only

    entry: ClassVar[str] = "anchor"

    def to_dict(self) -> dict:
        return _fields_present(self)

    @classmethod
    def from_dict(cls, data: object, where: str) -> "AnchorResult":
        f = Fields(data, where)
        f.only(_field_names(cls))
        if not 0.1 <= f.num("scale") <= 10:
            raise UserError(f"{f.at('scale')}: expected a factor between 0.1 and 10 "
                             "(the engine's speed now against the fit's)")
        return cls(scale=f.num("scale"), measured_s=f.num("measured_s", required=False, minimum=0),
                   predicted_s=f.num("predicted_s", required=False, minimum=0),
                   profiled_ratio=f.num("profiled_ratio", required=False, minimum=0),
                   requests=f.int("requests", required=False, minimum=1),
                   prompt_tokens=f.int("prompt_tokens", required=False, minimum=1),
                   measured_at=f.str("measured_at", required=False),
                   output_tokens=f.int("output_tokens", required=False, minimum=1))

    def describe(self, section: str = "prefill") -> str:
        """``section`` (``prefill``/``decode``) names what was compared."""
        speed = f"{abs(self.scale - 1):.1%} " + ("slower" if self.scale >= 1 else "faster")
        if None in (self.measured_s, self.predicted_s, self.profiled_ratio):
            return f"engine {speed} than when profiled; scale {self.scale:.3f}"
        return (f"engine {speed} than when profiled ({ANCHOR_MEASURES[section]} "
                f"{self.measured_s * 1e3:.1f} ms now, {self.predicted_s * 1e3:.1f} ms fitted, where "
                f"the profile measured {self.profiled_ratio:.3f} x the fit); scale {self.scale:.3f}")


ProbeResult = BatchingResult | JoinResult | WakeUpResult | ContextResult | AnchorResult

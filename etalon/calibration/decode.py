"""Decode profiling: inter-token gaps at controlled batch sizes and contexts, steady state only.

A *level* sends ``batch`` requests with the same prompt length all at once, with long outputs.
While some of them are still prefilling, or after the first has finished, the server's batch is
not the level's, so only the steady window counts: from the last first token of the level to
its first last token, every request of the level is decoding in every step. The context of a
step is the sum over the level's requests of their prompt (as the server reported it) plus the
tokens each had received by then — the KV tokens the step read.

Single inter-token gaps are noisy (client and server wake-ups, stream jitter), so each
request's window is cut into ``bins_per_level`` segments and a segment's step time is its
duration over the tokens it delivered (chunks carrying several tokens count them all); a level
gives one point per segment, the median over its requests; with repetitions, the fit sees the
median over them of each (level, segment). Cross-validation holds out whole levels.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from etalon.calibration.fitting import FitSettings, fit_section
from etalon.calibration.measure import Target, send, successful
from etalon.cli_errors import UserError
from etalon.profiles import Section
from etalon.records import RequestRecord
from etalon.workload.request import Request

WARMUP_TOKENS = 16


@dataclass(frozen=True)
class DecodeSettings:
    """What the decode profiler sends."""

    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    prompt_lengths: tuple[int, ...] = (128, 512, 1024)
    decode_tokens: int = 128
    num_repetitions: int = 1
    bins_per_level: int = 8
    warmup: bool = True
    seed: int = 0

    def validate(self) -> "DecodeSettings":
        for flag, values in (("--batch-sizes", self.batch_sizes),
                             ("--prompt-lengths", self.prompt_lengths)):
            if not values or min(values) < 1 or len(set(values)) != len(values):
                raise UserError(f"{flag}: give distinct integers >= 1")
        if len(self.batch_sizes) < 2:
            raise UserError("--batch-sizes: give at least 2 batch sizes (the fit separates "
                             "per-sequence from per-context cost)")
        if self.decode_tokens < 8:
            raise UserError("--fixed-request-generator-decode-tokens must be >= 8 for decode "
                             "profiling (long outputs give the steady window)")
        for name, low in (("num_repetitions", 1), ("bins_per_level", 1)):
            if getattr(self, name) < low:
                raise UserError(f"--{name.replace('_', '-')} must be >= {low}")
        return self

    def levels(self) -> list[tuple[int, int]]:
        """(batch, prompt) pairs in the order sent: a seeded shuffle per repetition."""
        rng = np.random.default_rng([self.seed, 0xDE])
        grid = [(b, p) for p in self.prompt_lengths for b in self.batch_sizes]
        return [grid[i] for _ in range(self.num_repetitions) for i in rng.permutation(len(grid))]


@dataclass
class LevelPoints:
    """Steady-state step times of one level, one per context bin."""

    batch: int
    prompt_tokens: int
    step_time_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    context: np.ndarray = field(default_factory=lambda: np.zeros(0))


def steady_points(records: list[RequestRecord], batch: int, prompt_tokens: int,
                  bins: int) -> LevelPoints:
    """Step times of ``records`` (one level, all successful) while the whole batch decoded.

    Each request's steady window is cut into ``bins`` segments of consecutive chunks; a
    segment's step time is its duration over the tokens it delivered — a telescoping sum, so a
    late chunk delays one segment end instead of skewing every gap around it. A bin's point is
    the median over the level's requests of their segment's step time and context.
    """
    out = LevelPoints(batch, prompt_tokens)
    if len(records) != batch or any(len(r.chunk_times) < 2 for r in records):
        return out
    times = [np.asarray(r.chunk_times, dtype=float) for r in records]
    cums = [np.cumsum(np.asarray(r.chunk_tokens, dtype=float)) for r in records]
    prompts = np.array([r.num_prompt_tokens or r.requested_prompt_tokens for r in records], float)
    start, stop = max(t[0] for t in times), min(t[-1] for t in times)
    slopes, mids = [], []
    for t, cum in zip(times, cums):
        idx = np.flatnonzero((t >= start) & (t <= stop))
        if idx.size < 2:
            return out
        edges = np.unique(np.linspace(idx[0], idx[-1], min(bins, idx.size - 1) + 1).round().astype(int))
        a, b = edges[:-1], edges[1:]
        slopes.append((t[b] - t[a]) / (cum[b] - cum[a]))
        mids.append((t[a] + t[b]) / 2.0)
    n = min(len(s) for s in slopes)
    slope = np.array([s[:n] for s in slopes])
    mid = np.array([m[:n] for m in mids])
    context = np.full(mid.shape, prompts.sum())
    for t, cum in zip(times, cums):  # tokens each request had received by each midpoint
        k = np.searchsorted(t, mid, side="right") - 1
        context += np.where(k >= 0, cum[np.maximum(k, 0)], 0.0)
    out.step_time_s = np.median(slope, axis=0)
    out.context = np.median(context, axis=0)
    return out


@dataclass
class DecodePoints:
    """Steady-state points of every level: what the decode fit sees."""

    decode_batch: list[int] = field(default_factory=list)
    decode_context: list[float] = field(default_factory=list)
    step_time_s: list[float] = field(default_factory=list)
    level_prompt_tokens: list[int] = field(default_factory=list)
    level: list[int] = field(default_factory=list)
    bin: list[int] = field(default_factory=list)
    repetition: list[int] = field(default_factory=list)

    def add(self, points: LevelPoints, level: int, repetition: int = 0) -> int:
        """Adds one level's points; returns how many."""
        for i, (ctx, step) in enumerate(zip(points.context, points.step_time_s)):
            self.decode_batch.append(points.batch)
            self.decode_context.append(float(ctx))
            self.step_time_s.append(float(step))
            self.level_prompt_tokens.append(points.prompt_tokens)
            self.level.append(level)
            self.bin.append(i)
            self.repetition.append(repetition)
        return len(points.context)

    def columns(self) -> dict[str, list]:
        return asdict(self)

    def combined(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(X, y, level)`` with the repetitions of each (level, bin) combined by their median:
        a burst of interference slows every step of one repetition of a level, so the median
        over repetitions drops it where a mean would spread it into the fit."""
        keys = np.column_stack([self.level, self.bin])
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        batch, ctx, y = (np.asarray(v, dtype=float) for v in
                         (self.decode_batch, self.decode_context, self.step_time_s))
        X = np.array([[batch[inverse == k][0], np.median(ctx[inverse == k])] for k in range(len(uniq))])
        ys = np.array([np.median(y[inverse == k]) for k in range(len(uniq))])
        return X.reshape(-1, 2), ys, uniq[:, 0]


def measure_decode(target: Target, settings: DecodeSettings, prog: str
                   ) -> tuple[list[RequestRecord], DecodePoints, list[dict]]:
    """Runs every level; returns all records, the binned points and a per-level summary."""
    settings.validate()
    records: list[RequestRecord] = []
    points = DecodePoints()
    summary: list[dict] = []
    next_id = 0
    if settings.warmup:
        b = max(settings.batch_sizes)
        warm = [Request(next_id + i, 0.0, min(settings.prompt_lengths), WARMUP_TOKENS) for i in range(b)]
        records += send(target, warm, concurrency=b)
        next_id += b
    grid = sorted(set(settings.levels()), key=lambda bp: (bp[1], bp[0]))
    order = settings.levels()
    for k, (batch, prompt) in enumerate(order):
        repetition = k // len(grid)
        reqs = [Request(next_id + j, 0.0, prompt, settings.decode_tokens) for j in range(batch)]
        next_id += batch
        got = send(target, reqs, concurrency=batch)
        records += got
        ok = successful(got, f"decode (batch {batch}, prompt {prompt})", prog)
        level = steady_points(ok, batch, prompt, settings.bins_per_level)
        n_points = points.add(level, grid.index((batch, prompt)), repetition)
        median = float(np.median(level.step_time_s)) if n_points else None
        summary.append({"batch": batch, "prompt_tokens": prompt, "repetition": repetition,
                        "points": n_points, "median_step_s": median})
        if n_points == 0:
            print(f"{prog}: level batch={batch} prompt={prompt}: no steady-state window (the "
                  f"server never ran all {batch} at once: its max batch size, a failed request, "
                  f"or too few output tokens); left out", file=sys.stderr)
        else:
            print(f"{prog}: level {k + 1}/{len(order)}: batch {batch}, prompt {prompt}: "
                  f"median step {median * 1e3:.2f} ms", file=sys.stderr)
    if len(set(points.level)) < 2:
        raise UserError("decode profiling produced steady-state points for fewer than 2 levels; "
                         "nothing to fit")
    return records, points, summary


def fit_decode(points: DecodePoints, fit: FitSettings = FitSettings(),
               settings: DecodeSettings | None = None, summary: list[dict] | None = None) -> Section:
    X, y, groups = points.combined()
    info = asdict(settings) if settings is not None else {}
    for key in ("batch_sizes", "prompt_lengths"):
        if key in info:
            info[key] = list(info[key])
    info["fit_on"] = ("steady-state step time per context bin of each level, median over "
                      "the level's requests, then over repetitions")
    if summary is not None:
        info["levels"] = summary
        info["repeatability"] = repeatability(summary)
    return fit_section("decode", X, y, groups, fit, measurements=points.columns(),
                       profiler_settings=info)


def repeatability(summary: list[dict]) -> dict[str, float | None]:
    """How far the engine's own repetitions of one level disagree, from the per-level summary.

    ``speed_drift``: each repetition's speed (median over levels of its step time over the
    level's median across repetitions); the largest relative difference between two of them.
    The engine slowing down over the profile shows here. ``level_scatter``: the median over
    levels of the relative range of their repetitions. Bursts that hit some levels show here.
    A fit cannot be held to an error below these: the points it fits scatter by as much.
    None where there is a single repetition."""
    steps: dict[tuple[int, int], dict[int, float]] = {}
    for lv in summary:
        if lv.get("median_step_s"):
            steps.setdefault((lv["batch"], lv["prompt_tokens"]), {})[lv["repetition"]] = lv["median_step_s"]
    repeated = {k: v for k, v in steps.items() if len(v) >= 2}
    if not repeated:
        return {"speed_drift": None, "level_scatter": None}
    ratios: dict[int, list[float]] = {}
    scatter = []
    for reps in repeated.values():
        times = np.array(list(reps.values()))
        mid = float(np.median(times))
        scatter.append(float((times.max() - times.min()) / mid))
        for rep, t in reps.items():
            ratios.setdefault(rep, []).append(t / mid)
    speeds = [float(np.median(r)) for r in ratios.values()]
    return {"speed_drift": max(speeds) / min(speeds) - 1, "level_scatter": float(np.median(scatter))}

"""Numeric formats: how many bits a weight or KV element takes, and which are quantized.

Weights and the KV cache are sized from these figures, so block-scaled formats carry their
scale overhead here (documented per entry) instead of as a fudge factor elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from etalon.estimator.errors import EstimatorError


@dataclass(frozen=True)
class DType:
    """A storage format.

    ``bits`` is the average storage per element *including* scales. ``quantized`` formats apply
    to the linear layers only: embeddings, the LM head, norms and routers stay in the model's
    activation dtype, which is how vLLM loads FP8, GPTQ/AWQ and MXFP4 checkpoints.
    ``compute`` names the tensor-core rate used for FLOP/s (``bf16`` or ``fp8``).
    """

    name: str
    bits: float
    quantized: bool
    compute: str
    note: str = ""

    @property
    def bytes(self) -> float:
        return self.bits / 8.0


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("fp32", 32, False, "bf16", "full precision; timed at the bf16 tensor rate"),
        DType("bf16", 16, False, "bf16"),
        DType("fp16", 16, False, "bf16"),
        DType("fp8", 8, True, "fp8", "E4M3/E5M2; per-tensor or 128x128 block scales are negligible"),
        DType("int8", 8, True, "bf16", "weight-only int8 (W8A16)"),
        DType("int4", 4.125, True, "bf16", "GPTQ/AWQ int4 with one fp16 scale per 128 weights"),
        DType(
            "mxfp4", 4.25, True, "bf16",
            "OCP MX FP4: 4-bit E2M1 values plus one 8-bit E8M0 scale per 32 = 4.25 bits",
        ),
    )
}

ALIASES: dict[str, str] = {
    "float32": "fp32", "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16",
    "float8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "f8_e4m3": "fp8", "e4m3": "fp8",
    "w4a16": "int4", "awq": "int4", "gptq": "int4",
    "w8a16": "int8",
    "mx_fp4": "mxfp4",
}

KV_DTYPES = ("bf16", "fp16", "fp32", "fp8")


def get_dtype(name: str) -> DType:
    """Look a dtype up by name or alias (case-insensitive)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DTYPES:
        raise EstimatorError(
            f"unknown dtype '{name}'; valid: {', '.join(DTYPES)} (aliases: {', '.join(sorted(ALIASES))})"
        )
    return DTYPES[key]


def get_kv_dtype(name: str) -> DType:
    """A KV-cache dtype: only unquantized floats and fp8 are valid cache formats."""
    dtype = get_dtype(name)
    if dtype.name not in KV_DTYPES:
        raise EstimatorError(f"invalid KV-cache dtype '{name}'; valid: auto, {', '.join(KV_DTYPES)}")
    return dtype

"""What is deployed where: the settings the estimator and the simulator share, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from etalon.options import option


@dataclass
class DeploymentConfig:
    """A model on an accelerator under a parallel layout, with vLLM's memory budget."""

    model: str | None = option(None, "catalog name (see `etalon estimate catalog`), path to a "
                                     "config.json (or its folder), or Hugging Face repo id")
    hardware: str | None = option(None, "catalog accelerator (e.g. h100-sxm, a100-80gb, "
                                        "rtx-4090) or a YAML file")
    dtype: str | None = option(None, "weight format: bf16, fp16, fp32, fp8, int8, int4 "
                                     "(4.125 bits), mxfp4 (4.25 bits) (none: the checkpoint's)")
    kv_dtype: str | None = option(None, "KV-cache format: auto, bf16, fp16, fp32, fp8 "
                                        "(none or auto: the activation dtype)")
    tp: int = option(1, "tensor-parallel size")
    pp: int = option(1, "pipeline-parallel size")
    gpu_memory_utilization: float = option(0.9, "share of device memory the engine may use")

    @property
    def kv_dtype_or_none(self) -> str | None:
        return None if self.kv_dtype in (None, "auto") else self.kv_dtype

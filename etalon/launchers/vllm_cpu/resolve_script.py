"""Runs inside the vLLM venv (never imported by etalon): prints vLLM's resolved engine config.

    <venv>/bin/python -c "$(cat resolve_script.py)" MODEL_DIR '{"max_num_seqs": 4}'

prints one line ``ETALON_JSON {...}`` with the scheduler, cache and model settings vLLM picks
for those engine arguments, without loading the model (~10 s). Standard library and vLLM only.
"""

import json
import sys


def plain(obj) -> dict:
    """The public attributes of ``obj`` that are plain values."""
    out = {}
    for k in dir(obj):
        if k.startswith("_"):
            continue
        try:
            v = getattr(obj, k)
        except Exception:  # noqa: BLE001 (a property may raise; skip it)
            continue
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
    return out


def main() -> None:
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    kw = json.loads(sys.argv[2])
    cfg = EngineArgs(model=sys.argv[1], enforce_eager=True, **kw).create_engine_config(
        UsageContext.OPENAI_API_SERVER)
    print("ETALON_JSON " + json.dumps({
        "scheduler": plain(cfg.scheduler_config),
        "cache": {k: v for k, v in plain(cfg.cache_config).items() if k in (
            "block_size", "enable_prefix_caching", "cache_dtype", "cpu_kvcache_space_bytes")},
        "model": {"max_model_len": cfg.model_config.max_model_len, "dtype": str(cfg.model_config.dtype)},
    }))


if __name__ == "__main__":
    main()

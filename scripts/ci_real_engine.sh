#!/usr/bin/env bash
# CI's real-engine stage: prepare vLLM on CPU with a real model, then run the `real_engine` tests.
# When vLLM cannot be installed here the stage is skipped with the reason printed — never silently.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! bash scripts/setup_vllm_cpu.sh; then
  echo "REAL-ENGINE STAGE SKIPPED: vLLM-on-CPU setup failed (reason above)."
  exit 0
fi
python -m pytest -q -m real_engine tests/real_engine -rsx
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "REAL-ENGINE STAGE: no real_engine tests were collected."
  exit 0
fi
exit "$rc"

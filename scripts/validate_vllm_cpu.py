#!/usr/bin/env python3
"""Kept so existing commands work: the loop is ``python -m etalon.validation`` (same flags).

    python scripts/validate_vllm_cpu.py [--job J.yaml] [--profile P.json | --save-profile P.json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without `pip install -e`

from etalon.validation.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

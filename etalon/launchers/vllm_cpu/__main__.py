"""``python -m etalon.launchers.vllm_cpu``: see :mod:`etalon.launchers.vllm_cpu.cli`."""

import sys

from etalon.launchers.vllm_cpu.cli import main

sys.exit(main())

"""The real-engine validation loop: does a profile of vLLM on CPU predict the server under load?

``python -m etalon.validation --job validation/vllm_cpu_smollm2.yaml`` runs it and regenerates
docs/validation_vllm_cpu.md; ``tests/real_engine/test_vllm_calibration.py`` runs the same job's
steps on the test session's server. Modules, one job each:

* ``job``: the strict job file (what to profile, anchor, run and hold);
* ``vllm_settings``: vLLM's scheduler settings → :class:`~etalon.engine.config.EngineConfig`;
* ``steps``: each step against the server (profilers, anchor, live run, replay) and the capacity;
* ``verdict``: what the test holds (TTFT/TBT p50/p90 within the tolerance) and the drift check;
* ``meter``: step timings and other work's share of the machine;
* ``loop``: the steps in order on a vLLM it starts and stops;
* ``render``: the result as Markdown.
"""

"""etalon: measure, model and calibrate LLM serving deployments."""

__version__ = "0.1.0"

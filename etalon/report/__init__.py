"""Turning records and their summary into files, plots, console tables and W&B runs."""

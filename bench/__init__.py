"""Benchmark scripts: run each with the project venv, e.g. ``.venv/bin/python bench/bench_model.py``."""

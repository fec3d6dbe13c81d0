# Entry points: `make test`, `make demo` and `make cluster-demo`. All build .venv/ in the checkout when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo cluster-demo cluster-files bench clean

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, so that the rest resolves against it: a local CPU wheel where the machine has one, else PyPI's build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Flink and Spark (from PyPI) and Beam's job servers (built by Maven), cached in $$MIMAMO_CLUSTER_CACHE or
# ~/.cache/mimamo-cluster; a no-op once there (every jar's SHA-256 is checked each time).
cluster-files: $(STAMP)
	$(PY) -m cluster.prepare

test: cluster-files
	$(PY) -m pytest -q --durations=15 tests

demo: $(STAMP)
	$(PY) -m beam_pipeline.cli.demo

# A local Flink cluster (a JobManager, two TaskManagers) runs the sample clip, then stops.
cluster-demo: $(STAMP)
	$(PY) -m cluster.demo

bench: $(STAMP)
	$(PY) bench/bench_model.py

clean:
	rm -rf $(VENV) build *.egg-info

# Entry points: `make test`, `make demo` and `make cluster-demo`. They build the virtual environments in the
# checkout when they are missing:
#   .venv                 the project on the newest Apache Beam release pip resolves (requirements.txt: >=2.62,<3)
#   .venv-beam-2.62.0     the project on Beam $(CLUSTER_BEAM), the release whose Flink/Spark job servers
#                         cluster.prepare builds (cluster/versions.py): the cluster tests and the cluster demo run
#                         there, and so do the tests of the adapter around Beam internals (both ends of the range).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CLUSTER_BEAM := 2.62.0
CLUSTER_VENV := .venv-beam-$(CLUSTER_BEAM)
CLUSTER_PY := $(CLUSTER_VENV)/bin/python
CLUSTER_STAMP := $(CLUSTER_VENV)/.installed
BEAM_EXTRAS := gcp,aws,dataframe

.PHONY: test demo cluster-demo cluster-files bench clean

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, so that the rest resolves against it: a local CPU wheel where the machine has one, else PyPI's build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(CLUSTER_STAMP): setup.py requirements.txt
	test -x $(CLUSTER_PY) || $(PYTHON) -m venv $(CLUSTER_VENV)
	$(CLUSTER_PY) -m pip install --quiet --upgrade pip
	$(CLUSTER_PY) -m pip install --quiet torch==2.13.0
	$(CLUSTER_PY) -m pip install --quiet -e '.[test]' 'apache-beam[$(BEAM_EXTRAS)]==$(CLUSTER_BEAM)'
	touch $(CLUSTER_STAMP)

# Flink and Spark (from PyPI) and Beam's job servers (built by Maven), cached in $$MIMAMO_CLUSTER_CACHE or
# ~/.cache/mimamo-cluster; a no-op once there (every jar's SHA-256 is checked each time).
cluster-files: $(CLUSTER_STAMP)
	$(CLUSTER_PY) -m cluster.prepare

# The main suite runs on pytest-xdist, one worker per CPU (at most 4, each worker needing up to 3 GB), each
# worker pinned to its share of the CPUs (tests/conftest.py); a file's tests stay on one worker, so module
# fixtures (a pipeline run that several tests read) run once. The cluster tests run alone: their clusters take
# every core.
test: $(STAMP) cluster-files
	$(PY) -m pytest -q --durations=15 -n auto --maxprocesses 4 --dist loadfile tests --ignore=tests/cluster
	$(CLUSTER_PY) -m pytest -q --durations=5 tests/cluster tests/pipeline/test_beam_compat.py \
		tests/pipeline/test_local_runner.py

demo: $(STAMP)
	$(PY) -m beam_pipeline.cli.demo

# A local Flink cluster (a JobManager, two TaskManagers) runs the sample clip, then stops.
cluster-demo: cluster-files
	$(CLUSTER_PY) -m cluster.demo

bench: $(STAMP)
	$(PY) bench/bench_model.py

clean:
	rm -rf $(VENV) $(CLUSTER_VENV) build *.egg-info

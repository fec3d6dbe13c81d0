# Two entry points: `make test` and `make demo`. Both build .venv/ in the checkout when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo bench clean

$(STAMP): setup.py requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first: 2.13.0 resolves to the CPU build on local disk, and keeps pip from pulling a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m beam_pipeline.demo

bench: $(STAMP)
	$(PY) bench/bench_model.py

clean:
	rm -rf $(VENV) build *.egg-info

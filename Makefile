# Every command a user needs. `make test` builds the environment from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch and torchvision are pinned to the builds this project is tested with.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.resque-installed

.PHONY: env test bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_dist.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

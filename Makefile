# Every command a user needs. `make test` builds the environment from nothing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch and torchvision are pinned to the builds this project is tested with.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.resque-installed

.PHONY: env data test browser bench book clean

# Fashion-MNIST, the offline default dataset, comes from Debian's package.
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SUDO_N := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)  # optional installs never wait for a password

env: $(STAMP) data

data:
	@test -f $(FMNIST) || { \
	  echo "Installing Debian's dataset-fashion-mnist (the offline Fashion-MNIST files)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

test: env browser
	$(PY) -m pytest

# The book's browser check (tests/test_browser.py, resque book check) needs
# Chromium: installed from Debian where it is missing, else those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium (for the book's browser check)"; \
	  { $(SUDO_N) apt-get update -qq && $(SUDO_N) apt-get install -y -qq chromium; } >/dev/null 2>&1 || \
	  echo "chromium could not be installed: the browser checks will be skipped"; }

# The main job: run a profile's experiments (resumable), then build the book.
PROFILE ?= quick
book: env
	$(PY) -m resque.cli study run --profile $(PROFILE)
	$(PY) -m resque.cli book build --profile $(PROFILE)

bench: env
	$(PY) benchmarks/bench_dist.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info _build book/_generated

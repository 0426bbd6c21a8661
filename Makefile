VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
OUT ?= separated

.PHONY: setup demo test test-fast lint bench clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) bash scripts/bootstrap.sh

$(TEST_STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) WITH_TEST=1 bash scripts/bootstrap.sh

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m demixer separate --example -o $(OUT) --overwrite

# the full suite (what .ci/run calls after lint)
test: $(TEST_STAMP)
	$(PY) -m pytest -q

# in-process tests on small inputs, under 3 minutes on 2 cores: no CLI subprocesses, servers, DDP, browser
test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check src tests scripts benchmarks
	$(VENV)/bin/ruff format --check src tests scripts benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/engine_memory.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
OUT ?= separated

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) bash scripts/bootstrap.sh

$(TEST_STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) WITH_TEST=1 bash scripts/bootstrap.sh

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m demixer separate --example -o $(OUT) --overwrite

test: $(TEST_STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/engine_memory.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache

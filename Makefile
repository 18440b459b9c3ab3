# recstream: `make demo` sets everything up and runs the pipeline on the
# embedded broker; `make test` runs the import contracts and the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch goes in first, pinned, so pip takes the CPU wheel here instead of
# resolving a CUDA build through sentence-transformers. For a CUDA build set
# TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cu126 (or similar).
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install demo test test-fast bench bench-quick clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/recstream demo

# pytest exits 5 when it collects no tests, which fails this target too.
test: install
	$(BIN)/lint-imports
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not integration"

# Performance harness (README, Performance): JSON + PNG charts in bench/results.
bench: install
	HF_HUB_OFFLINE=1 $(BIN)/recstream bench --output bench/results/bench.json

bench-quick: install
	HF_HUB_OFFLINE=1 $(BIN)/recstream bench --quick --output bench/results/bench-quick.json

clean:
	rm -rf $(VENV) .recstream .pytest_cache

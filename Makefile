# mmreason: `make demo` runs the main job, `make test` runs the test suite (both install first).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARCH   := $(shell uname -m)
# torch/torchvision pairs that import together on these machines (see the README's set-up notes)
ifeq ($(ARCH),aarch64)
TORCH_PINS := torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
endif
EXTRAS ?= cpu,embedded,dev
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" $(TORCH_PINS)
	touch $@

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/mmreason demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: install
	for b in scripts/bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

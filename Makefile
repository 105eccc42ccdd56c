# Two commands do all the set-up: `make run` (dashboard on the embedded default) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# CPU-only machines get torch's CPU build first (a bare `torch` pulls a multi-GB CUDA build).
# On a CUDA or Apple machine: make setup TORCH_SPEC=torch
TORCH_SPEC ?= torch==$(TORCH_VERSION)

.PHONY: setup run lint test bench gpu-check screenshots clean

$(BIN)/.llorch-installed: pyproject.toml worker/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ./worker -e ".[dev,tui]"
	touch $@

setup: $(BIN)/.llorch-installed

run: setup
	$(BIN)/llorch-tui $(ARGS)

# The static checks (docs/architecture.md, "Checked by tools"): lint, types, import layers.
lint: setup
	$(BIN)/python -m ruff check llorch_tui worker tests bench scripts
	$(BIN)/python -m mypy
	$(BIN)/python -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())" --no-logo

test: setup lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# Real-size figures on a CUDA machine, offline (docs/gpu-check.md); ARGS=--dry-run proves it on the cpu.
gpu-check: setup
	$(BIN)/python scripts/gpu_check.py $(ARGS)

screenshots: setup
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) *.egg-info worker/*.egg-info .pytest_cache

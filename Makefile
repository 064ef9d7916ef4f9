# Two commands for a fresh machine (see README):  make demo  |  make test
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU PyTorch first, from PyTorch's CPU index: on PyPI, Linux torch is the multi-GB CUDA build.
# With an NVIDIA GPU choose your build, e.g. `make demo TORCH_SPEC="torch==2.13.0"` (PyPI: CUDA on
# Linux) or the command pytorch.org gives. Where the CPU index cannot be reached, pip warns and
# retries (about 10 s), then takes torch from the indexes pip is configured with (as on this
# project's machines).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0 --index-url $(TORCH_INDEX)

.PHONY: venv install install-all install-dev system-deps demo test lint screenshots bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e .

# The package with the viewer's Qt binding (PyQt6), so `.venv/bin/napari` works after `make demo`.
install-all: venv
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[all]"

install-dev: venv
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[testing]"

system-deps:
	bash scripts/install-system-deps.sh

demo: install-all
	bash scripts/demo.sh $(BIN)

lint: install-dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/npe2 validate napari-brainseg

test: system-deps install-dev lint
	env -u QT_QPA_PLATFORM $(BIN)/python -m pytest

screenshots: install-dev
	env -u QT_QPA_PLATFORM xvfb-run -a -s "-screen 0 1400x1000x24" $(BIN)/python scripts/screenshots.py

# The benchmark suite (about 10 minutes on 2 cores); each script prints a Markdown table.
bench: install-dev
	$(BIN)/python benchmarks/peak.py
	$(BIN)/python benchmarks/cpu_backends.py
	$(BIN)/python benchmarks/segment.py
	$(BIN)/python benchmarks/batch_folder.py
	$(BIN)/python benchmarks/train_pipeline.py
	$(BIN)/python benchmarks/train_throughput.py
	env -u QT_QPA_PLATFORM xvfb-run -a $(BIN)/python benchmarks/train_worker.py
	$(BIN)/python benchmarks/skullstrip.py
	$(BIN)/python benchmarks/skullstrip_real.py
	$(BIN)/python benchmarks/real_scans.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/correction_loop.py

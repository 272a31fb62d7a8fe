# lcgan_lightning — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines and CUDA machines both: PyPI's torch wheel for Linux x86_64 carries CUDA.
# To pick another build, set TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cu126).
TORCH_VERSION ?= 2.13.0
TORCH_INDEX_URL ?=
RUN_DIR ?= runs/smoke
# pytest-xdist workers for make test / test-fast (one test file per worker at a time: module fixtures are
# built once); 0 = no workers, in this process.
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint typecheck clean run paper report bench gpu-check sweep-gan sweep-seg wandb-sync

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed  ## create .venv/ and install the package with its dependencies

test: install  ## run the whole test suite (what CI runs), TEST_WORKERS files at a time
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: install  ## the suite without the slow end-to-end tests
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: install  ## ruff check
	$(VENV)/bin/ruff check lcgan_lightning tests

typecheck: install  ## mypy on the package (config in pyproject.toml)
	$(VENV)/bin/mypy

clean:  ## remove caches and run outputs (keeps .venv and data/)
	rm -rf outputs runs .pytest_cache .ruff_cache .mypy_cache lightning_logs wandb
	find multirun -mindepth 1 ! -name README.md -exec rm -rf {} + 2>/dev/null || true
	find . -name __pycache__ -prune -exec rm -rf {} +

run: install  ## the whole experiment at smoke scale on the built-in phantom (2-core CPU: ~4.5 min)
	$(VENV)/bin/lcgan-pipeline scale=smoke hydra.run.dir=$(RUN_DIR) $(ARGS)

paper: install  ## the paper's protocol at 256² (GPUs; one GPU per job via Ray)
	$(VENV)/bin/lcgan-pipeline scale=paper hydra.run.dir=runs/paper $(ARGS)

report: install  ## rewrite the report of RUN_DIR (default runs/smoke)
	$(VENV)/bin/lcgan-report run_dir=$(RUN_DIR)

gpu-check: install  ## GPU paths in one command (< 8 min on one GPU): bf16 vs fp32, DDP, Ray 0.25 GPU, memory, bench -> gpu_check.json
	$(PY) -m lcgan_lightning.gpu_check --out gpu_check.json $(ARGS)

sweep-gan: install  ## the paper's GAN grid (3 fractions x 200 epochs; 10/50/100 are its checkpoints)
	$(VENV)/bin/lcgan-train -m experiment=gan_paper_grid $(ARGS)

sweep-seg: install  ## segmentation grid (3 fractions x 4 variants); gan/both need ARGS="data.synthetic_dir='...'"
	$(VENV)/bin/lcgan-train -m experiment=seg_sweep $(ARGS)

bench: install  ## LcGAN step: plain PyTorch vs Lightning fp32 vs channels_last/compile (bench.json); ARGS=--loader: DataLoader slices/s, --mask-bank / --audit: their wall time
	$(PY) -m lcgan_lightning.bench --out bench.json $(ARGS)

wandb-sync: install  ## upload every offline W&B run under outputs/, multirun/ and runs/
	@find outputs multirun runs -type d -name 'offline-run-*' 2>/dev/null | xargs -r $(VENV)/bin/wandb sync

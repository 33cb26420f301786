# ddpm-course: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.DEFAULT_GOAL := help
.PHONY: site weights release student-edition help install test test-unit test-notebooks test-notebooks-and-student test-student test-slow test-oldest run lab lint student grade data fid-weights bench gpu-data clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-15s %s\n", $$1, $$2}'

# torch's wheels: PyPI's by default (on Linux the CUDA build: .venv is about 6 GB, 3.2 GB of it NVIDIA libraries).
# TORCH_INDEX=cpu installs torch's CPU build from torch's own index first (no CUDA libraries), checks that
# torchvision works with it, and falls back to PyPI's when the index is unreachable or the pair does not work.
TORCH_INDEX ?= pypi
TORCH_CPU_URL := https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ "$(TORCH_INDEX)" = cpu ] && ! $(PY) -c "import torch, torchvision" 2>/dev/null; then \
	  $(PY) -m pip install --timeout 15 --retries 1 torch torchvision --index-url $(TORCH_CPU_URL) \
	  && $(PY) -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)" 2>/dev/null \
	  || { echo "make: no working CPU build of torch + torchvision from $(TORCH_CPU_URL): installing PyPI's instead"; \
	       $(PY) -m pip uninstall -y -q torch torchvision 2>/dev/null; true; }; fi
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install ddpm_lib with the dev tools

# make test runs its two halves side by side (make -j2), each on half the cores (one each on 2 cores): the unit
# tests are single-threaded for most of their time, so the second core would idle beside them. CI's records
# (not an interleaved A/B): benchmarks/RESULTS.md, "make test". --output-sync prints each half's output whole when it ends.
TEST_THREADS ?= $(shell n=$$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2); echo $$(( n > 3 ? n / 2 : 1 )))

test: $(STAMP) ## unit tests, and side by side every notebook under nbval in FAST mode, then the student copies (unanswered)
	@echo "make test: the unit tests and the notebooks (then their student copies) run side by side, $(TEST_THREADS) thread(s) each; each half prints its output when it ends"
	@OMP_NUM_THREADS=$(TEST_THREADS) $(MAKE) --no-print-directory -j2 --output-sync=target test-unit test-notebooks-and-student

test-notebooks-and-student: test-notebooks
	@$(MAKE) --no-print-directory test-student

test-unit: $(STAMP) ## unit tests only
	$(PY) -m pytest -m "not slow" tests

test-notebooks: $(STAMP) ## notebooks only, under nbval in FAST mode
	DDPM_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env notebooks/

test-student: student ## the student copies (every exercise unanswered) run top to bottom in FAST mode
	DDPM_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env build/student/

test-slow: $(STAMP) ## the slow tests too (minutes)
	$(PY) -m pytest tests

test-oldest: ## unit tests + notebooks 04 and 06 with the oldest supported torch/torchvision/numpy/ipywidgets (own venv, ~3 GB download)
	tools/test_oldest.sh

run: $(STAMP) ## execute every notebook headless into build/notebooks/ (DDPM_MODE: gpu with a CUDA GPU, else cpu; DDPM_MODE=fast for seconds)
	@mkdir -p build/notebooks
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
		--ExecutePreprocessor.kernel_name=python3 --output-dir build/notebooks $(NOTEBOOKS)

site: $(STAMP) ## the rendered edition into build/site/: execute every notebook (DDPM_MODE), or SITE_FROM=dir of executed ones; a page each, notation, index; checks links and images
	$(PY) -m tools.build_site $(if $(SITE_FROM),--from "$(SITE_FROM)") $(if $(MATHJAX_URL),--mathjax-url "$(MATHJAX_URL)")

# Jupyter refuses to start as root (Docker, Colab-like containers) without --allow-root: pass it only then.
# TOKEN=...: a fixed login token (Jupyter Server 2's IdentityProvider.token; ServerApp.token is deprecated).
LAB_ARGS = $(if $(filter 0,$(shell id -u)),--allow-root) $(if $(TOKEN),--IdentityProvider.token=$(TOKEN))
lab: $(STAMP) ## JupyterLab in notebooks/ (as root too; TOKEN=... sets a fixed login token)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $(LAB_ARGS)

lint: $(STAMP) ## ruff on .py and .ipynb, and check notebooks carry no outputs
	$(VENV)/bin/ruff check ddpm_lib tests benchmarks tools notebooks
	$(VENV)/bin/nbstripout --keep-id --verify $(NOTEBOOKS)

student: $(STAMP) ## student copies (solutions removed) into build/student/
	$(PY) -m ddpm_lib.course.student notebooks build/student

student-edition: $(STAMP) ## refresh the committed student edition student/ (what its Colab badges open; tests/test_student_edition.py)
	$(PY) -m ddpm_lib.course.student notebooks student

grade: $(STAMP) ## grade a class: make grade SUBMISSIONS=dir [OUT=grades.csv] [TIMEOUT=600] (dir/<student>/*.ipynb)
	@test -n "$(SUBMISSIONS)" || { echo "make grade: set SUBMISSIONS=dir, the folder holding one sub-folder of notebooks per student." >&2; exit 2; }
	$(PY) -m ddpm_lib.course.grade "$(SUBMISSIONS)" --out "$(or $(OUT),grades.csv)" --timeout "$(or $(TIMEOUT),600)"

data: $(STAMP) ## download Fashion-MNIST and CIFAR-10 into the data dir (needs internet)
	$(PY) -m ddpm_lib.data.sources download fashion_mnist cifar10

fid-weights: $(STAMP) ## download the Inception-v3 FID weights (pt_inception, 91 MB) into the data dir (needs internet)
	$(PY) -m ddpm_lib.evaluation.features download --variant fid

WEIGHTS_RUNS ?= runs/weights
weights: $(STAMP) ## retrain the starter weights and FID classifiers in ddpm_lib/pretrained (real data in DDPM_DATA_DIR; hours on a CPU, see MODEL_CARD.md)
	$(PY) -m ddpm_lib.evaluation.classifier train --dataset fashion_mnist --steps 600 --out $(WEIGHTS_RUNS)/classifier-fashion_mnist.pt
	$(PY) -m tools.build_pretrained fashion_mnist --classifier $(WEIGHTS_RUNS)/classifier-fashion_mnist.pt \
		--command "make weights" --machine "$$(uname -m), $$(nproc) cores"
	$(PY) -m ddpm_lib.evaluation.classifier train --dataset cifar10 --steps 1000 --out $(WEIGHTS_RUNS)/classifier-cifar10.pt
	$(PY) -m tools.build_pretrained cifar10 --classifier $(WEIGHTS_RUNS)/classifier-cifar10.pt \
		--command "make weights" --machine "$$(uname -m), $$(nproc) cores"
	$(PY) -m ddpm_lib train --recipe fashion_mnist_cpu --out $(WEIGHTS_RUNS)/fashion_mnist --resume
	$(PY) -m tools.build_pretrained fashion_mnist --run $(WEIGHTS_RUNS)/fashion_mnist --recipe fashion_mnist_cpu \
		--command "make weights" --machine "$$(uname -m), $$(nproc) cores"
	$(PY) -m ddpm_lib train --recipe cifar10_cpu --out $(WEIGHTS_RUNS)/cifar10 --resume
	$(PY) -m tools.build_pretrained cifar10 --run $(WEIGHTS_RUNS)/cifar10 --recipe cifar10_cpu \
		--command "make weights" --machine "$$(uname -m), $$(nproc) cores"

bench: $(STAMP) ## speed of ddpm_lib's UNet against diffusers' UNet2DModel
	$(PY) benchmarks/unet_throughput.py

gpu-data: ## pack the GPU suite's data into .devdata/ (and with WHEELS=1 diffusers' wheel into .whl/) for the device call
	tools/gpu_data.sh

release: ## make release VERSION=X.Y.Z: write the version into ddpm_lib and every notebook, commit, pin the Colab cells to that commit, tag vX.Y.Z
	@test -n "$(VERSION)" || { echo "make release: set VERSION=X.Y.Z, the version to release (now $$(sed -n 's/^__version__ = \"\(.*\)\"/\1/p' ddpm_lib/__init__.py))." >&2; exit 2; }
	$(PYTHON) tools/set_version.py "$(VERSION)" --tag

clean: ## remove build outputs and caches (keeps .venv, data/ and runs/)
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

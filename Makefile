# One venv for everything; `make setup` is idempotent (the stamp file records success).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
DATA ?= data/phantom
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo recipe-demo lint test test-all bench clean

setup: $(STAMP)

# mmcv's ops are compiled for the CPU with any GPU hidden: no shipped config calls an mmcv op,
# and its setup.py would otherwise compile 58 CUDA files whenever a GPU is visible, failing
# where nvcc's major version differs from torch's CUDA. `make setup MMCV_CUDA=1` compiles
# them (needs a matching nvcc; TORCH_CUDA_ARCH_LIST where no GPU is visible).
MMCV_CUDA ?=
MMCV_BUILD_ENV := $(if $(MMCV_CUDA),FORCE_CUDA=1,env -u FORCE_CUDA CUDA_VISIBLE_DEVICES=)

# torch first (the CPU wheel on this disk; GPU users install their CUDA build first, see README),
# then mmcv from source with its compiled ops: isolated builds cannot see torch and silently
# skip the ops, and setuptools 82 removed the pkg_resources its setup.py imports. Chromium
# (apt, as root or password-less sudo) renders the HTML report in a test; without it that
# test is skipped and set-up goes on.
$(STAMP): requirements.txt setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools>=77,<82' wheel ninja
	$(PY) -c 'import torch' 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q mmengine==0.10.7 opencv-python==5.0.0.93 'numpy>=2,<3'
	$(PY) -c 'import mmcv._ext' 2>/dev/null || \
		$(MMCV_BUILD_ENV) MMCV_WITH_OPS=1 $(PIP) install --no-build-isolation mmcv==2.1.0
	# PyPI's torchvision (which timm needs) is a CUDA build whose import fails under a CPU
	# torch; the hook lets its Python part import (tools/torchvision_cpu_shim.py says how).
	$(PY) tools/torchvision_cpu_shim.py
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -c 'import mmcv._ext, mmseg.models, timm, handbone_mmseg; print("set-up OK: mmseg", mmseg.__version__, "timm", timm.__version__)'
	command -v chromium >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) || \
		sudo -n apt-get install -y -q chromium || \
		echo "chromium missing: the report screenshot test will be skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --data $(DATA) --work-dir work_dirs/demo

# The leaderboard recipe in small (recipes/demo_cpu.py): 2 models x 3 folds, choices on the
# pooled out-of-fold predictions, the fold ensemble's submission; reruns skip what is done.
recipe-demo: $(STAMP)
	test -d $(DATA)/train || $(PY) tools/make_phantom.py $(DATA) --patients 40 \
		--test-patients 10 --size 512 --seed 0 --test-labels
	$(PY) tools/run_recipe.py recipes/demo_cpu.py --cfg-options data_root=$(DATA)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-all: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# Wheels and mmcv's source for the device tool's GPU machine (no network there), into
# gpu_bundle/ (ignored; under 60 MiB): benchmarks/gpu_run.sh installs them there, see README.
.PHONY: gpu-bundle
gpu-bundle:
	$(PYTHON) benchmarks/gpu_bundle.py --dest gpu_bundle

clean:
	rm -rf work_dirs data/phantom

# medstream: `make demo` and `make test` bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Keep DeepSpeed's JIT-built CPU ops inside the venv, not in $HOME.
export TORCH_EXTENSIONS_DIR := $(CURDIR)/$(VENV)/torch_extensions
export PYTHONUNBUFFERED := 1
export DS_PREBUILD := from deepspeed.accelerator import get_accelerator; \
	builders = [get_accelerator().create_op_builder(n) for n in ('ShareMemCommBuilder', 'FusedAdamBuilder', 'CPUAdamBuilder')]; \
	[b.load() for b in builders if b is not None]

.PHONY: venv demo test lint typecheck unit bench protos clean

venv: $(STAMP)

# CPU-only machines get the local CPU build of torch first, so the
# dependency resolver never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q torch==2.13.0; fi
	DS_BUILD_OPS=0 $(PY) -m pip install -q -e '.[dev]'
	# Build DeepSpeed's CPU ops (shared-memory collective, fused Adam, the CPU
	# Adam of --offload-optimizer cpu) once,
	# here, rather than inside the first training tests (minutes of g++).
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -c "$$DS_PREBUILD"; fi
	# The real promtool for tests/deploy (Debian's prometheus package, into
	# .venv/tools; the tests fetch it themselves when it is missing).
	$(PY) tools/promtool.py --path
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m dataengine.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check dataengine trainer tests benchmarks tools
	$(VENV)/bin/ruff format --check dataengine trainer tests benchmarks tools

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks

protos: $(STAMP)
	$(PY) tools/gen_protos.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

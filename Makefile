# Two commands for a fresh clone: `make demo` and `make test`. Each installs what it needs first
# into a virtualenv in the repository (.venv); the install is redone only when setup.py or
# requirements.txt change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch 2.13.0 is the CPU build this environment serves quickly; any other version downloads GBs.
TORCH ?= torch==2.13.0
DEMO_DIR ?= runs/demo
JUPYTER_ARGS ?=
PYTEST_ARGS ?=
# Test workers (pytest-xdist): `auto` is one per CPU core; 0 runs the suite in this process.
TEST_WORKERS ?= auto

.PHONY: install demo test notebooks benchmarks clean

install: $(STAMP)

$(STAMP): setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[torch,dev]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/models-genesis demo --out $(DEMO_DIR)

# JupyterLab in .venv, with .venv registered as the kernel "Models Genesis (.venv)" (also for
# VS Code or a Jupyter installed elsewhere), then JupyterLab on notebooks/.
notebooks: install
	$(PY) -m pip install -q -e ".[notebooks]"
	$(PY) -m ipykernel install --sys-prefix --name models-genesis --display-name "Models Genesis (.venv)"
	$(VENV)/bin/jupyter lab $(JUPYTER_ARGS) notebooks/

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS) tests

benchmarks: install
	$(PY) benchmarks/transforms.py
	$(PY) benchmarks/extraction.py

clean:
	rm -rf $(VENV) build *.egg-info keras/*.egg-info

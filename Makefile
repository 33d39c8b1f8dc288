# Two entry points: `make demo` (the quick reproduction) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean clean-outputs

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray,pyvene,hf,nnsight]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/numvars reproduce --preset quick

test: $(STAMP)
	$(PY) -m pytest

# Build leftovers, caches and the virtual environment. Never trained models or results.
clean:
	rm -rf $(VENV) build dist src/numvars.egg-info .pytest_cache
	find src tests benchmarks -name __pycache__ -prune -exec rm -rf {} +

# Deletes the default output folders (trained models, alignments, reports): only when asked by name.
clean-outputs:
	rm -rf runs results

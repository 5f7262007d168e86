# The two set-up commands of the README:
#   make main   bootstrap .venv (not the end-to-end tests' Debian packages), build the digit scenes, run the
#               quick sweep from the shipped backbone, rebuild figures/ from the runs
#   make test   bootstrap .venv and run the whole test suite (slow end-to-end tests included)
# The suite runs in one pytest worker per core (pytest-xdist), a test file per worker: the files' module
# fixtures (notebook runs, a SLURM cluster, a JupyterLab server) are then built once each.
PY := .venv/bin/python
PYTEST := $(PY) -m pytest -q -n auto --dist loadfile
.PHONY: main test test-fast env clean

env:
	@bash scripts/bootstrap.sh

main:
	@E2E_PACKAGES=0 bash scripts/bootstrap.sh
	$(PY) -m reprokit.main --size quick

test: env
	$(PYTEST)

test-fast: env
	$(PYTEST) -m "not slow and not e2e"

clean:  # keeps the shipped glyph backbone (data/pretrained)
	rm -rf runs data/digits .pytest_cache

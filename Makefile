# The two set-up commands of the README:
#   make main   bootstrap .venv (not the end-to-end tests' Debian packages), build the digit scenes, run the
#               quick sweep from the shipped backbone, rebuild figures/ from the runs
#   make test   bootstrap .venv and run the whole test suite (slow end-to-end tests included)
PY := .venv/bin/python
.PHONY: main test test-fast env clean

env:
	@bash scripts/bootstrap.sh

main:
	@E2E_PACKAGES=0 bash scripts/bootstrap.sh
	$(PY) -m reprokit.main --size quick

test: env
	$(PY) -m pytest -q

test-fast: env
	$(PY) -m pytest -q -m "not slow and not e2e"

clean:  # keeps the shipped glyph backbone (data/pretrained)
	rm -rf runs data/digits .pytest_cache

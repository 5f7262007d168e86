# The two set-up commands of the README:
#   make main   bootstrap .venv, build the digit scenes and the glyph-pretrained backbone, run the quick sweep,
#               rebuild figures/ from the runs
#   make test   bootstrap .venv and run the whole test suite (slow end-to-end tests included)
PY := .venv/bin/python
.PHONY: main test test-fast env clean

env:
	@bash scripts/bootstrap.sh

main: env
	$(PY) -m reprokit.main --size quick

test: env
	$(PY) -m pytest -q

test-fast: env
	$(PY) -m pytest -q -m "not slow and not e2e"

clean:  # keeps the shipped glyph backbone (data/pretrained)
	rm -rf runs data/digits .pytest_cache

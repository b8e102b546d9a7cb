# Two commands set everything up: `make book` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: book test nbval-all lint unit notebooks clean

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3.11 or python3 on PATH; install Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# Execute every notebook (quick profile) and build the HTML book into _build/html.
book: $(STAMP)
	$(BIN)/nacode book --profile quick

# Chapters nbval executes a second time in `make test`, comparing the outputs marked
# NBVAL_CHECK_OUTPUT with the first execution. The calf, brain, breast and benchmark chapters
# (nearly all of the book's time) are left out to keep `make test` within CI's budget: their
# determinism is tested at small size by two-execution unit tests (tests/test_calf_volunteers.py,
# test_brain_study.py, test_breast_study.py, test_benchmark_study.py: identical tables);
# `make nbval-all` re-executes every chapter.
NBVAL_CHAPTERS ?= intro primer mni152

# Lint, unit tests, notebooks executed and built with warnings as errors, then nbval re-executes
# the executed copies of NBVAL_CHAPTERS and compares the outputs marked NBVAL_CHECK_OUTPUT.
test: $(STAMP)
	$(BIN)/ruff check nacode tests
	$(BIN)/python -m pytest tests
	$(BIN)/nacode book --profile quick --strict
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider \
		$(foreach chapter,$(NBVAL_CHAPTERS),_build/executed/$(chapter).ipynb)

# Every executed chapter a second time under nbval (after `make book` or `make test`).
nbval-all: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider _build/executed

clean:
	rm -rf _build

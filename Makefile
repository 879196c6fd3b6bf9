# Two commands do all the set-up: `make book` and `make test` each create
# .venv from requirements.txt on first use (and again when it changes).

PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed

# The venv's bin/ comes first on PATH for every target: nbgrader's own commands (make exercises)
# shell out to `alembic`, and tests start tools by name. (python -m grading does without it.)
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Keep matplotlib headless in every target (tests, book, grading).
export MPLBACKEND := Agg
# A font cache of our own: a shared ~/.cache/matplotlib written by another environment can
# point at font files that no longer exist, and the warnings would change notebook outputs.
export MPLCONFIGDIR := $(abspath $(VENV))/matplotlib
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: help venv book test check lint exercises grade lock clean

help:
	@echo "make book   build the HTML book into _build/html (creates .venv on first use)"
	@echo "make test   make lint, then the whole test suite, at most 5 minutes on 2 cores (creates .venv on first use)"
	@echo "make check  make lint, then the quick tests: convlib and repository checks, under a minute"
	@echo "make lint   ruff (lint, import order) on every Python file, mypy on convlib/ and grading/"
	@echo "make exercises  regenerate exercises/ from solutions/ with nbgrader (commit the result)"
	@echo "make grade ASSIGNMENT=ps03-kernel-gradients SUBMISSIONS=path/to/folder-or.zip [OUT=graded/ps03-kernel-gradients] [JOBS=2]"
	@echo "           autograde a class: OUT/grades.csv, OUT/feedback/, OUT/scores.png"
	@echo "make lock   regenerate requirements.lock with pip-tools (UPGRADE=1: newest allowed versions)"
	@echo "make clean  remove _build (keeps .venv)"

venv: $(STAMP)

# On Linux x86-64 the whole environment is pinned by requirements.lock (what CI tested); torch is
# the one package left out of it (see `make lock`). Elsewhere pip resolves requirements.txt alone.
LOCKED := $(shell [ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ] && echo yes)
CONSTRAINTS := $(if $(LOCKED),-c requirements.lock)

$(STAMP): requirements.txt requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt $(CONSTRAINTS) 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	touch $(STAMP)

# Regenerate requirements.lock from requirements.txt with pip-tools, in a venv of its own: the pins
# already in the lock are kept (a new requirement gets its dependencies pinned); UPGRADE=1 moves every
# package to its newest version that requirements.txt allows.
# torch is left out of the lock (its CPU build has a local version, 2.13.0+cpu, that installs from
# no other index, and its default Linux build pulls CUDA packages), and so is the editable convlib.
# Run it where `torch==2.13.0` resolves to the CPU build (PIP_EXTRA_INDEX_URL, see CONTRIBUTING.md), so
# that torch's own dependencies are the CPU build's: the recipe fails if a CUDA package reaches the lock.
LOCK_TOOLS := .lock-tools
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install --quiet pip-tools==7.7.0; }
	$(LOCK_TOOLS)/bin/pip-compile --quiet $(if $(UPGRADE),--upgrade) --strip-extras --no-emit-index-url --no-emit-find-links \
		--unsafe-package torch --unsafe-package convlib --output-file requirements.lock requirements.txt
	@! grep -n -i -E '^(nvidia-|triton|torch)' requirements.lock || { echo "error: CUDA packages in requirements.lock: let pip see torch's CPU build (CONTRIBUTING.md, section 6)"; exit 1; }
	@echo "requirements.lock regenerated: review with git diff, run make test, commit"

# A clean build every time (--all): an incremental build skips unchanged
# notebooks, so one that fails would go unnoticed. -W turns warnings into errors.
book: $(STAMP)
	jupyter-book build . --all -W --keep-going
	@echo "book built: _build/html/index.html"

# Lint first (make lint, a few seconds), then every core: pytest-xdist spreads the tests over one worker per core; a notebook's cells and the
# tests that share a fixture stay together on one worker (--dist loadgroup, groups set in tests/conftest.py).
test: lint
	python -m pytest -n auto --dist loadgroup

# The edit-test loop, under a minute: lint, convlib's tests and doctests and the quick repository checks.
check: lint
	python -m pytest -m "convlib or repo" tests convlib

# ruff on every Python file (pyproject.toml says which rules), mypy on convlib/ and grading/ (its cache in
# .venv: a fresh clone checks in about 10 s, then in 1 s). Part of make test and make check.
lint: $(STAMP)
	ruff check --quiet .
	mypy

# nbgrader's release step: solutions/<a> -> exercises/<a> (answers stubbed, hidden tests removed).
exercises: $(STAMP)
	for a in $$(ls solutions); do nbgrader generate_assignment "$$a" --force; done
	@echo "exercises regenerated from solutions/: review with git diff and commit"

JOBS ?= 2
OUT  ?= graded/$(ASSIGNMENT)
grade: $(STAMP)
	@test -n "$(ASSIGNMENT)" -a -n "$(SUBMISSIONS)" || { echo "usage: make grade ASSIGNMENT=ps03-kernel-gradients SUBMISSIONS=folder-or-zip [OUT=...] [JOBS=2]"; exit 2; }
	python -m grading autograde "$(ASSIGNMENT)" "$(SUBMISSIONS)" --out "$(OUT)" --jobs $(JOBS)

clean:
	rm -rf _build

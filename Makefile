# Two commands do all the set-up: `make book` and `make test` each create
# .venv from requirements.txt on first use (and again when it changes).

PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed

# nbgrader shells out to `alembic`, so the venv's bin/ must be on PATH for
# every target, not only for the ones that call nbgrader directly.
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Keep matplotlib headless in every target (tests, book, grading).
export MPLBACKEND := Agg
# A font cache of our own: a shared ~/.cache/matplotlib written by another environment can
# point at font files that no longer exist, and the warnings would change notebook outputs.
export MPLCONFIGDIR := $(abspath $(VENV))/matplotlib
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: help venv book test exercises grade clean

help:
	@echo "make book   build the HTML book into _build/html (creates .venv on first use)"
	@echo "make test   run the whole test suite (creates .venv on first use)"
	@echo "make exercises  regenerate exercises/ from solutions/ with nbgrader (commit the result)"
	@echo "make grade ASSIGNMENT=ps03-kernel-gradients SUBMISSIONS=path/to/folder-or.zip [OUT=graded/ps03-kernel-gradients] [JOBS=2]"
	@echo "           autograde a class: OUT/grades.csv, OUT/feedback/, OUT/scores.png"
	@echo "make clean  remove _build (keeps .venv)"

venv: $(STAMP)

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	touch $(STAMP)

# A clean build every time (--all): an incremental build skips unchanged
# notebooks, so one that fails would go unnoticed. -W turns warnings into errors.
book: $(STAMP)
	jupyter-book build . --all -W --keep-going
	@echo "book built: _build/html/index.html"

test: $(STAMP)
	python -m pytest

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

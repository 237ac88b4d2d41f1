# The two commands of the project (see README.md):
#   make figures   execute every notebook under notebooks/ and write figures/   (PROFILE=ci|paper)
#   make test      unit tests + nbval over the executed notebooks
# Each creates .venv and installs the pinned environment when it is missing or out of date.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ufm-installed
PROFILE ?= ci

.PHONY: figures test setup bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,data]'
	# animal-mnist's own loader imports TensorFlow: install its data files only
	$(PY) -m pip install -q -c constraints.txt --no-deps animal-mnist
	touch $@

setup: $(STAMP)

figures: $(STAMP)
	$(PY) scripts/run_notebooks.py --profile $(PROFILE)

# the tests: three pytest processes side by side (scripts/run_tests.py): the unit tests; the notebooks that share
# training runs (02, 06, 07) in order; the other notebooks. nbval re-executes every notebook and compares the
# cells marked NBVAL_CHECK_OUTPUT with their committed outputs; figures go to .test-figures/ (never figures/),
# runs to one fresh cache .test-runs/ (a run two notebooks need is trained once, by the current code)
test: $(STAMP)
	$(PY) scripts/run_tests.py

# speed targets, each printed as ratios measured side by side in one run (not part of the tests)
bench: $(STAMP)
	$(PY) benchmarks/bench_supcon.py
	$(PY) benchmarks/bench_solvers.py
	$(PY) benchmarks/bench_gd.py --threads 1
	$(PY) benchmarks/bench_training.py --threads 1
	$(PY) benchmarks/bench_study.py
	$(PY) benchmarks/bench_shared_views.py

clean-venv:
	rm -rf $(VENV)

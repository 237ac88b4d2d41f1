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

# nbval re-executes every notebook and compares the cells marked NBVAL_CHECK_OUTPUT with their committed outputs;
# the figures the notebooks draw meanwhile go to .test-figures/, so the test command never rewrites figures/;
# the notebooks share one run cache, emptied first (a run two notebooks need is trained once, by the current code);
# the unit tests (one thread) run beside the notebooks, their report printed after the notebooks'
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
test: $(STAMP)
	rm -rf .test-runs .test-unit.log
	UFM_FIGURES=$(CURDIR)/.test-figures $(PY) -m pytest -p no:cacheprovider tests > .test-unit.log 2>&1 & unit=$$!; \
	UFM_RUN_CACHE=$(CURDIR)/.test-runs UFM_FIGURES=$(CURDIR)/.test-figures $(PY) -m pytest -p no:cacheprovider notebooks $(NBVAL); nb=$$?; \
	wait $$unit; u=$$?; cat .test-unit.log; echo "unit tests: exit $$u; notebooks: exit $$nb"; test $$u -eq 0 -a $$nb -eq 0

# speed targets, each printed as ratios measured side by side in one run (not part of the tests)
bench: $(STAMP)
	$(PY) benchmarks/bench_supcon.py
	$(PY) benchmarks/bench_solvers.py
	$(PY) benchmarks/bench_gd.py --threads 1
	$(PY) benchmarks/bench_training.py --threads 1
	$(PY) benchmarks/bench_study.py

clean-venv:
	rm -rf $(VENV)

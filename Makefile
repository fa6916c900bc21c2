# The two entry points of the README. Each installs what it needs itself,
# idempotently: Debian packages (we are root on the lab's VMs and in CI) and
# a project virtualenv in .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fairbig-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-long unit lint install clean

$(STAMP): pyproject.toml scripts/bootstrap
	@scripts/bootstrap $(VENV)
	@touch $(STAMP)

install: $(STAMP)

TEST_STAMP := $(VENV)/.fairbig-test-installed
$(TEST_STAMP): $(STAMP) scripts/bootstrap
	@scripts/bootstrap --test $(VENV)
	@touch $(TEST_STAMP)

demo: $(STAMP)
	@examples/ukb-mini/run

lint: $(STAMP)
	@$(VENV)/bin/ruff check .

# two workers (this machine kind has 2 cores; jobs wait on git, datalad and the
# schedulers much of the time); tests of the one SLURM cluster and HTCondor pool
# run in turn on one of them (tests/conftest.py groups them)
XDIST ?= -n 2 --dist loadgroup

test: lint $(TEST_STAMP)
	@$(PY) -m pytest -q $(XDIST) -m "not long" $(PYTEST_ARGS)

# the layer make test leaves out for time (CI runs it after make test): sweeps and
# repetitions (every kill point, 24-64 jobs in contention, two submits at once on
# SLURM), the example on each scheduler, scheduler failure paths, whole workflows
# driven again through Snakemake, every command's -C audit
LONG ?= long
test-long: $(TEST_STAMP)
	@$(PY) -m pytest -q $(XDIST) -m "$(LONG)" $(PYTEST_ARGS)

unit: $(STAMP)
	@$(PY) -m pytest -q $(XDIST) -m "not slurm and not htcondor and not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

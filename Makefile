# nnlab: every target sets itself up on a fresh machine (creates .venv and installs on first use).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow test-all bench findings lint clean server postgres

# editable_mode=compat puts the checkout on sys.path, so Hydra's plugin scan (pkgutil over the
# hydra_plugins namespace) finds nnlab's launchers; the default editable finder hides them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]" --config-settings editable_mode=compat
	touch $(STAMP)

run: $(STAMP)           ## train the default experiment (LeNet-5 on the offline digits) and log it
	$(PY) -m nnlab

test: $(STAMP) postgres ## the default test suite (budget 15 min: 14 min 46 s on 2 cores, bench/results.md; the cluster tests need SLURM)
	@PATH=/usr/sbin:$$PATH command -v slurmctld >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; else sudo apt-get install -y slurm-wlm munge; fi; }
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

test-slow: $(STAMP) postgres ## the long tests (1000-epoch parity, resume, MLflow UI in headless Chromium)
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; else sudo apt-get install -y chromium; fi; }
	$(PY) -m pytest -q -m slow

test-all: test test-slow

server: $(STAMP) postgres ## the team's tracking server (needs NNLAB_ADMIN_PASSWORD): README "Team server"
	$(PY) -m nnlab.server $(SERVER_ARGS)

postgres:               ## Debian's PostgreSQL server programs (initdb, pg_ctl), for the server and its tests
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; else sudo apt-get install -y postgresql; fi; }

bench: $(STAMP)         ## benchmarks; figures go to bench/results.md
	$(PY) bench/run.py

findings: $(STAMP)     ## run every study (full mode, 5 seeds: 21 min on 2 idle cores) and rewrite docs/findings.md
	NNLAB_DATA=$${NNLAB_DATA:-../shared/data} $(PY) -m nnlab.findings $(FINDINGS_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf mlruns/hydra mlruns/artifacts mlruns/mlflow.db

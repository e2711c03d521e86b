# Two commands on a fresh machine with only python3:
#   make demo   set up .venv (CPU torch + gen with its extras, once) and run the main job
#   make test   set up the same way and run the tests
# Set TORCH to another torch requirement, or TORCH_INDEX to a wheel index (e.g. a CPU-only
# one), where the default torch wheel of your platform is not the one you want.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= train,cpu,parquet,sign,ray,serve,report,test
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gen-installed

.PHONY: demo test bench setup clean browser

setup: $(STAMP)

# torch first, so pip does not pull a CUDA build as a dependency of the project; the stamp
# is remade when pyproject.toml or setup.py change, so new dependencies get installed.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gen demo --out artifacts/demo

test: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider

# The browser tests of `gen report` drive Debian's chromium through chromium-driver: installed
# here where apt-get runs as root; elsewhere those tests skip and say why in one line.
browser:
	@command -v chromedriver >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
	   chromium chromium-driver) >/dev/null 2>&1; } || echo "no chromium-driver: the browser tests will skip"

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS),bench]"
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) artifacts/demo

# Two commands matter: `make run` and `make test`. Both work on a fresh machine.
# Python packages are installed at the exact versions of requirements/constraints.txt (`make lock`
# refreshes it); the Debian packages the tests need (promtool, Chromium) are installed when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt
# The pins apply to what is installed and to the build backend (setuptools) of `-e .`.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) \
	--build-constraint $(CONSTRAINTS)
LOCK_VENV := .lock-venv

.PHONY: run test test-fast lint format bench clean install system-packages lock vendor

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade --constraint $(CONSTRAINTS) pip setuptools
	$(PIP_INSTALL) -e '.[test]'
	touch $(STAMP)

# Debian packages the tests run: promtool (package prometheus) checks and unit-tests the alert
# rules; Chromium, its driver and CJK fonts run the console's browser tests (tests/browser).
# Quick when present; apt-get as root, through sudo otherwise, else a clear failure.
APT_INSTALL = \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	else echo "make: $$what is missing; install Debian's $$packages as root" >&2; exit 1; fi; \
	command -v apt-get >/dev/null 2>&1 || { \
	  echo "make: $$what is missing and there is no apt-get; install $$packages" >&2; exit 1; }; \
	echo "make: installing Debian's $$packages ($$what)"; \
	$$sudo apt-get -qq -o DPkg::Lock::Timeout=300 update && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 \
	  install -y --no-install-recommends $$packages >/dev/null

CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

system-packages:
	@command -v promtool >/dev/null 2>&1 || { \
	  what=promtool packages=prometheus; $(APT_INSTALL) && \
	  command -v promtool >/dev/null || { \
	    echo "make: installing Debian's prometheus did not give a promtool on PATH" >&2; exit 1; }; }
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver -a -f $(CJK_FONT) || { \
	  what="Chromium, its driver or the CJK fonts" \
	  packages="chromium chromium-driver fonts-noto-cjk"; $(APT_INSTALL) && \
	  test -x /usr/bin/chromium -a -x /usr/bin/chromedriver -a -f $(CJK_FONT) || { \
	    echo "make: installing Debian's chromium did not give /usr/bin/chromium," \
	      "/usr/bin/chromedriver and $(CJK_FONT)" >&2; exit 1; }; }

install: system-packages $(STAMP)

# The demo tenants' traffic, console users and library: a newcomer's console is never empty.
run: $(STAMP)
	$(BIN)/siyu dev --demo

test: system-packages $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The inner loop: lint and the unit tests (tests/unit: no PostgreSQL, no broker), on two
# processes (pytest-xdist): about 20 s on 2 cores.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2 tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(PIP_INSTALL) -e '.[test,bench]'
	$(BIN)/python -m bench

# Re-resolve pyproject.toml's ranges to the newest releases in a throwaway venv and write every
# distribution it installed (runtime, dev, test and bench extras, pip and setuptools, Siyu
# itself excepted) to $(CONSTRAINTS). Review the diff, run `make test`, commit both.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LOCK_VENV)/bin/python -m pip install --quiet '.[test,bench]'
	mkdir -p $(dir $(CONSTRAINTS))
	{ echo "# Exact versions of every distribution Siyu installs (runtime, dev, test, bench),"; \
	  echo "# transitive ones included, for Python $$($(LOCK_VENV)/bin/python -c 'import sys; print(*sys.version_info[:2], sep=".")') on Linux x86_64. Written by \`make lock\`; do not edit."; \
	  echo "# Used as: pip install --constraint $(CONSTRAINTS) --build-constraint $(CONSTRAINTS) -e '.[test]'"; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude siyu | LC_ALL=C sort -f; \
	} > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(LOCK_VENV)

# The console's browser libraries (docs/console.md "Vendored files"): npm installs the versions
# package-lock.json pins, and their built files and licences are copied into
# console/static/vendor/, where they are committed: the server and `make test` never need npm
# or the network. Bump a version in package.json, `npm install --package-lock-only`, then
# `make vendor`, review and commit.
VENDOR := console/static/vendor
vendor:
	npm ci --ignore-scripts --no-audit --no-fund
	rm -rf $(VENDOR)/echarts
	mkdir -p $(VENDOR)/echarts
	cp node_modules/echarts/dist/echarts.min.js node_modules/echarts/LICENSE \
	  node_modules/echarts/NOTICE $(VENDOR)/echarts/
	cp node_modules/echarts/licenses/LICENSE-d3 $(VENDOR)/echarts/LICENSE-d3
	cp node_modules/zrender/LICENSE $(VENDOR)/echarts/LICENSE-zrender
	cp node_modules/tslib/LICENSE.txt $(VENDOR)/echarts/LICENSE-tslib

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache build *.egg-info node_modules

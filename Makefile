# bitbylaw-motia: the two commands a new user needs are `make run` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
TOOLS := .venv-tools

.PHONY: run dev test bench venv system-deps test-deps clean lock audit

# Dependencies come from the lock files only, every package pinned with its hashes
# (pip refuses anything else): requirements.txt is the runtime (production installs it),
# requirements-dev.txt adds tests, lint and types. Their sources are requirements*.in.
$(STAMP): requirements.txt requirements-dev.txt
	@test -n "$(PY)" || { echo "Python 3.11 is required (python3.11 not found)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# The project's commands, `iii-cli` and `bitbylaw-ops` (pyproject.toml [project.scripts]; the one
# pip call installs both, the first stands for them): an editable install
# of this checkout, nothing else, built by the venv's own setuptools (hash-pinned in
# requirements-dev.txt; no build isolation, so nothing unpinned is fetched).
$(VENV)/bin/iii-cli: pyproject.toml $(STAMP)
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(STAMP) $(VENV)/bin/iii-cli

# The tools that write and check the lock files live in a venv of their own.
$(TOOLS)/bin/pip-audit:
	$(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check pip-tools==7.6.2 pip-audit==2.10.1

# Recompiles the lock files from requirements*.in (after changing a pin there).
lock: $(TOOLS)/bin/pip-audit
	$(TOOLS)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	$(TOOLS)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in

# Known vulnerabilities in the locked packages (PyPI's advisory data via pip-audit).
audit: $(TOOLS)/bin/pip-audit
	@$(PY) scripts/audit.py $(TOOLS)/bin/pip-audit requirements.txt requirements-dev.txt

# Debian packages, installed when missing and we may (root + apt-get), else we say which
# apt-get line to run. `make run` needs only redis-server. `make test` also needs nginx (the
# shipped reverse-proxy config is tested with it), systemd (its systemd-analyze verifies the
# units; installing it starts nothing and does not replace init, also in a container) and
# chromium (the console's browser tests; skipped with a note when it cannot be installed).
define install_debs
	@missing=""; \
	for need in $(1); do case $$need in \
	  redis-server) command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server";; \
	  nginx) { [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1; } || missing="$$missing nginx";; \
	  systemd) command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd";; \
	  chromium) [ -x /usr/bin/chromium ] || missing="$$missing chromium";; \
	esac; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  elif echo "$$missing" | grep -q -E "redis-server|nginx|systemd"; then \
	    echo "Missing Debian packages:$$missing — run: sudo apt-get install$$missing"; exit 1; \
	  else echo "note: chromium is missing, the console's browser tests will be skipped (sudo apt-get install chromium)"; fi; \
	fi
endef

system-deps:
	$(call install_debs,redis-server)

test-deps:
	$(call install_debs,redis-server nginx systemd chromium)

# Runs the service: Redis, the simulators in sandbox mode, the engine and the worker. Ctrl-C, or
# killing the launcher (or make) any way, stops all; ports still taken are named in one line.
run: venv system-deps
	$(PYTHON) scripts/run_service.py

# `iii-cli dev`: like run, with the worker reloaded when src/ or services/ change.
dev: venv system-deps
	$(VENV)/bin/iii-cli dev

# The whole test suite.
test: venv test-deps
	$(PYTHON) -m pytest

bench: venv system-deps
	$(PYTHON) bench/run_all.py

clean:
	rm -rf data .pytest_cache .hypothesis $(TOOLS)

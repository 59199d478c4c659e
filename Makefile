# Home Mind — the two commands: `make run` (the cloud server on SQLite) and `make test` (everything).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= $(or $(HOMEMIND_HOST),127.0.0.1)
PORT ?= $(or $(HOMEMIND_PORT),8080)
DATA_DIR ?= $(or $(HOMEMIND_DATA_DIR),./data)

.PHONY: run test lint typecheck pytest pytest-ha-newest test-install py314-env hooks audit audit-strict fuzz constraints constraints-py314 clean

# The venv is rebuilt when the interpreter is gone and refreshed when the
# project's dependencies or pins change (the stamps are newer than both files).
$(VENV)/bin/python:
	@set -e; PYTHON=$$(scripts/find-python); echo "Creating $(VENV) with $$PYTHON"; \
	"$$PYTHON" -m venv $(VENV); $(VENV)/bin/python -m pip install --quiet --upgrade pip

# Both distributions are installed editable: the client (homemind_client/pyproject.toml)
# and the server (pyproject.toml), which requires exactly that client release.
$(VENV)/.stamp-server: $(VENV)/bin/python pyproject.toml homemind_client/pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ./homemind_client -e .
	@touch $@

$(VENV)/.stamp-test: $(VENV)/bin/python pyproject.toml homemind_client/pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ./homemind_client -e '.[test]'
	@touch $@ $(VENV)/.stamp-server

run: $(VENV)/.stamp-server
	$(VENV)/bin/homemind-server serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

# Every shell script of the repository (.ci/run installs shellcheck when missing).
SHELL_SCRIPTS := .ci/run scripts/find-python scripts/py314 scripts/ha-venv homeassistant-addon/homemind/run.sh

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@command -v shellcheck >/dev/null || { echo "lint: shellcheck is missing (Debian: apt-get install shellcheck)" >&2; exit 1; }
	shellcheck $(SHELL_SCRIPTS)

typecheck: $(VENV)/.stamp-test
	$(VENV)/bin/mypy --strict homemind_client custom_components/home_mind
	$(VENV)/bin/mypy --strict cloud_server

# The server, client and fake-API tests run without Home Assistant's pytest plugin
# (it disables sockets and checks for HA-specific leftovers); the HA-harness tests
# (integration and end to end) run with it.
pytest: $(VENV)/.stamp-test
	$(VENV)/bin/pytest -p no:homeassistant -p no:cacheprovider tests/fakes tests/client tests/contract tests/packaging tests/server
	$(VENV)/bin/pytest -p no:cacheprovider tests/components tests/e2e

# The same HA-harness tests on the newest harness (HA 2026.10.4, Python 3.14), in the
# Debian chroot of scripts/py314 (built once per machine, cached in /var/cache/homemind).
py314-env:
	scripts/py314 setup

pytest-ha-newest: py314-env
	scripts/py314 run pytest -p no:cacheprovider tests/components tests/e2e

# The install path as a HACS user's Home Assistant takes it (tests/install/): a real HA
# process installs the client wheel itself, then answers through the real server. HA 2025.4.4
# runs on this machine's Python, HA 2026.11.0 on 3.14 in the chroot; each skips the release
# of the other Python. The plain HA installs are built once per machine (scripts/ha-venv).
# The two installs are built side by side (mostly downloads), the two runs one after the other.
test-install: $(VENV)/.stamp-test py314-env
	@set -e; scripts/ha-venv 2025.4.4 $(PY) >/dev/null & host=$$!; \
	    scripts/py314 run scripts/ha-venv 2026.11.0 python >/dev/null; wait $$host
	$(VENV)/bin/pytest -p no:homeassistant -p no:cacheprovider tests/install
	scripts/py314 run pytest -p no:homeassistant -p no:cacheprovider tests/install


# The pre-commit hooks of .pre-commit-config.yaml (ruff, ruff format, mypy from this venv).
hooks: $(VENV)/.stamp-test
	$(PY) -m pip install --quiet -c constraints.txt -e '.[server,test,dev]'
	$(VENV)/bin/pre-commit install

# pip-audit over constraints.txt (a known-vulnerable pin fails; skipped, saying so, when
# the vulnerability service is unreachable) and bandit. audit-strict fails when unreachable.
audit: $(VENV)/.stamp-test
	$(PY) scripts/audit

audit-strict: $(VENV)/.stamp-test
	$(PY) scripts/audit --strict

# The long schemathesis run (make test runs 20 cases per operation and mode, on SQLite and
# on PostgreSQL + Redis); FUZZ_EXAMPLES sets the depth.
FUZZ_EXAMPLES ?= 300
fuzz: $(VENV)/.stamp-test
	HOMEMIND_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HOMEMIND_FUZZ_RANDOM=1 HOMEMIND_FUZZ_VERBOSE=1 $(VENV)/bin/pytest -p no:homeassistant \
	    -p no:cacheprovider -q tests/server/test_schemathesis.py

test: lint typecheck audit pytest pytest-ha-newest test-install

constraints: $(VENV)/.stamp-test
	@( echo "# Exact pins for everything the tests and the server install (one resolution for every machine)."; \
	   echo "# Regenerate with: make constraints"; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^homemind' ) > constraints.txt

constraints-py314: py314-env
	@( echo "# Exact pins of the Python 3.14 test environment (scripts/py314: HA 2026.10.4's harness)."; \
	   echo "# Regenerate with: make constraints-py314"; \
	   scripts/py314 freeze ) > constraints-py314.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Two commands do all the set-up on a fresh machine:
#   make demo   - live demo of the bridge between throwaway local servers
#   make test   - the test suite (unit, property and integration tests on private servers)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test unit bench deps venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

venv: $(VENV)/.installed

# System packages the servers and the report test need (PostgreSQL 15 and MariaDB server are
# expected; Chromium renders the HTML conflict report in a test).
deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium missing (sudo apt-get install chromium); the report rendering test will be skipped"; fi; }
	@test -x /usr/lib/postgresql/15/bin/initdb || { echo "PostgreSQL 15 server binaries missing: apt-get install postgresql-15"; exit 1; }
	@command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 || { echo "MariaDB/MySQL server missing: apt-get install mariadb-server"; exit 1; }

demo: venv deps
	$(PY) -m bridge demo

test: venv deps
	$(PY) -m pytest -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

unit: venv
	$(PY) -m pytest -q -m "not integration" -p no:cacheprovider

bench: venv deps
	$(PY) -m bench

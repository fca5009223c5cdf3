# Two commands do everything: `make demo` runs the product, `make test` passes the tests.
# Both create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lock test test-fast ci-tools test-faults lint demo demo-ha bench clean browser promtool translations

# The runtime packages at requirements.lock's versions (without its hashes, which pip would
# demand of every package then): the tests run what production runs.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	sed -e '/--hash=/d' -e 's/ \\$$//' requirements.lock > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -e '.[test]'
	touch $(STAMP)

# The pages' translations (service/i18n.py), compiled from the committed .po files into the .mo
# files Flask-Babel reads, again whenever a .po changes. The Dockerfile compiles them too.
CATALOGS := $(patsubst %.po,%.mo,$(wildcard service/translations/*/LC_MESSAGES/messages.po))
service/translations/%/LC_MESSAGES/messages.mo: service/translations/%/LC_MESSAGES/messages.po | $(STAMP)
	$(BIN)/pybabel compile --locale $* --input-file $< --output-file $@

# For developers, after adding or changing a message (docs/development.md, "Translations"):
# extract every message into messages.pot (babel.cfg says where), merge it into each language's
# .po, then translate there what is new (an empty msgstr) or marked fuzzy.
translations: $(STAMP)
	$(BIN)/pybabel extract --mapping-file babel.cfg --keywords lazy_gettext --keywords phrase \
	  --add-comments Translators: --project wisphub-bqn-sync \
	  --copyright-holder 'the wisphub-bqn-sync authors' \
	  --output-file service/translations/messages.pot .
	$(BIN)/pybabel update --input-file service/translations/messages.pot \
	  --output-dir service/translations --ignore-obsolete

# The whole suite, as CI runs it: lint, the layer contracts (pyproject.toml), every test, in
# one pytest process per core (at most four: each test starts its own Redis, simulators and
# processes); the slowest tests named at the end, to keep the suite within about ten minutes.
test: $(STAMP) $(CATALOGS)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest --numprocesses auto --maxprocesses 4 --durations=25

# For the edit loop, under a minute: the pure tests and the quick integration ones (no Procfile
# processes, no fault injection, no browser).
test-fast: $(STAMP) $(CATALOGS)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -m "not slow and not faults" -q

# What two tests use from the system, kept out of `make test` (which changes nothing outside
# .venv): CI runs it first. Without them, those two tests are skipped and say why.
ci-tools: browser promtool

# The status page's browser test drives Debian's Chromium: installed here when missing and
# `make` runs as root with apt-get.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Chromium for the browser test (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver >/dev/null || echo "note: Chromium could not be installed"; \
	  else \
	    echo "note: no Chromium and not root: the status page's browser test will be skipped"; \
	  fi; \
	fi

# Prometheus' promtool checks /metrics in a test: taken from Debian's prometheus package into
# .venv/tools (a download, no root, nothing installed).
promtool: $(STAMP)
	@if ! command -v promtool >/dev/null && [ ! -x $(VENV)/tools/promtool ]; then \
	  rm -rf $(VENV)/tools && mkdir -p $(VENV)/tools && cd $(VENV)/tools && \
	  if apt-get download -qq prometheus >/dev/null 2>&1 && dpkg-deb -x prometheus_*.deb deb; then \
	    mv deb/usr/bin/promtool . && rm -rf deb prometheus_*.deb; \
	  else \
	    echo "note: promtool not available: the /metrics promtool check will be skipped"; \
	  fi; \
	fi

# Only the fault-injection suite (also part of `make test`).
test-faults: $(STAMP) $(CATALOGS)
	$(BIN)/pytest -m faults

# The benchmarks (bench/README.md): each prints one table; about 40 minutes in all.
bench: $(STAMP) $(CATALOGS)
	$(BIN)/python -m bench.reconcile
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.poll
	$(BIN)/python -m bench.cutoff
	$(BIN)/python -m bench.targets
	$(BIN)/python -m bench.search

# requirements.lock: the runtime dependencies and the build backend, each pinned with its
# hashes, for production installs (Dockerfile, deploy/README.md):
#   pip install --require-hashes -r requirements.lock && pybabel compile -d service/translations
#   && pip install --no-deps --no-build-isolation .
# No sandbox or test extra. pip-tools lives in a throw-away virtualenv, not in the project.
# Run after changing pyproject.toml's dependencies, with the Python of the image (3.11); it
# keeps the pins it can: delete requirements.lock first to move every pin to the newest allowed.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip 'pip-tools>=7.4,<8'
	CUSTOM_COMPILE_COMMAND='make lock' .lock-venv/bin/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --build-deps-for wheel --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml
	rm -rf .lock-venv

# DEMO_BQNS=2 (`make demo DEMO_BQNS=2`): two BQN simulators kept in step as an HA pair.
demo: $(STAMP) $(CATALOGS)
	$(BIN)/python -m sandbox.demo

# The demo on a replicated Redis watched by Sentinel (docs/high-availability.md, "Trying it").
demo-ha: $(STAMP) $(CATALOGS)
	$(BIN)/python -m sandbox.demo_ha

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .import_linter_cache

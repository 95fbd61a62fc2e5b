# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-ls
PY := $(VENV)/bin/python
PORT ?= 7860

.PHONY: run test install install-test browser label-studio lint format

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

# Label Studio (for the integration tests) pins its own Django, pydantic and numpy: it gets its own venv.
$(LS_VENV)/.installed: requirements-label-studio.txt
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q -r requirements-label-studio.txt
	touch $@

install: $(VENV)/.installed

label-studio: $(LS_VENV)/.installed

install-test: $(VENV)/.installed-test

# Debian's Chromium drives the browser tests; Playwright never downloads a browser of its own.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

run: install
	$(VENV)/bin/loupe demo --if-empty
	$(VENV)/bin/loupe serve --port $(PORT)

test: install-test browser label-studio
	$(PY) -m pytest

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

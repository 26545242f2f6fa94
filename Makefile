# Set-up is part of every target: a fresh Debian machine with Python 3.11, cmake and a C++ compiler needs
# nothing else. Everything is idempotent: a second run reinstalls and rebuilds nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-install

.PHONY: demo test engines clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

engines: $(STAMP)
	$(BIN)/moebench engines build mainline
	$(BIN)/moebench engines build ik

demo: $(STAMP)
	$(BIN)/moebench engines build mainline
	$(BIN)/moebench run bench.yaml --resume

test: engines
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)

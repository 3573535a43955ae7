# Two commands: `make demo` and `make test`. Each bootstraps .venv from nothing and is safe to rerun.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint sysdeps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# tshark is the peer oracle of the parser tests; install it from Debian when we can (root + apt).
sysdeps:
	@if ! command -v tshark >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing tshark (Debian)" >&2; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null; \
	  else echo "tshark not found and cannot install it: peer-comparison tests will skip" >&2; fi; \
	fi

demo: $(STAMP)
	$(BIN)/icsight demo

test: $(STAMP) sysdeps
	TZ=UTC $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) sysdeps
	TZ=UTC $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Two entry points for a fresh machine: `make repro` (the pipeline) and `make test` (the suite).
# Both create or reuse .venv and install Python and Debian dependencies idempotently.

VENV   ?= .venv
PYTHON ?= python3.11
BIN    := $(VENV)/bin
# Stage commands in dvc.yaml call `python`: it must be the venv's.
RUN    := PATH="$(abspath $(BIN)):$$PATH"
STAMP  := $(VENV)/.paha-installed
APT_PACKAGES := ffmpeg espeak-ng
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps browser-deps repro test lint bench clean-venv

setup: system-deps $(STAMP)

# Debian packages: installed only when a tool is missing.
system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

# Headless Chromium and its driver for the browser tests (tests/web, Selenium): installed only
# when missing, and only by `make test` (`make repro` does not need a browser).
browser-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The venv is (re)built when pyproject.toml changes. torch first, by exact version, so pip takes
# the local CPU wheel rather than resolving a CUDA build from the registry.
$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,dask,web]"
	@# librosa's numba cache, compiled once here: processes compiling it at once can break it.
	$(BIN)/python -c "from pipeline.io.pool import compile_numba_caches; compile_numba_caches()"
	@touch $@

repro: setup
	$(RUN) dvc repro

test: setup browser-deps
	$(RUN) python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(RUN) python -m benchmarks.extract

clean-venv:
	rm -rf $(VENV)

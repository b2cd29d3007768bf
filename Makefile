# `make demo` runs the main job, `make test` the test suite; both set up .venv first.
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install demo test bench

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/emergence demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q -n auto --dist loadfile

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/engine_vs_lmeval.py

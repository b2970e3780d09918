# make demo: set up (one line a step, the whole log in demo-output/setup.log), then run the whole pipeline
# on the built-in clip (camwire/media) with the built-in model (camwire/demo.py).
# make demo-console: the web console over the demo's results, afterwards.
# make test: set up (Debian packages too) and run the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLIP ?=
DEMO_DIR ?= demo-output
DEMO_PORT ?=
DEMO_LOG := $(DEMO_DIR)/setup.log

# one set-up step as one line: "WHAT... done"; its output goes to the log, whose end is shown if it fails
step = printf '%s... ' '$(1)'; if ( $(2) ) >>$(DEMO_LOG) 2>&1; then echo done; else echo failed; \
	tail -n 20 $(DEMO_LOG); echo "the whole log: $(DEMO_LOG)"; exit 1; fi

.PHONY: demo demo-console test screenshots venv debs bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

debs:
	bash deploy/install-debian-packages.sh

demo:
	@mkdir -p $(DEMO_DIR); : > $(DEMO_LOG)
	@$(call step,setting up the Python environment,$(MAKE) --no-print-directory venv)
	@$(call step,installing Debian packages,$(MAKE) --no-print-directory debs)
	@$(PY) -m camwire.demo --out $(DEMO_DIR) $(if $(CLIP),--clip '$(CLIP)') $(if $(DEMO_PORT),--port $(DEMO_PORT))

demo-console:
	$(PY) -m camwire web --config $(DEMO_DIR)/camwire.toml

test: venv debs
	$(PY) -m pytest -q

# the README's pictures of the console, taken by its Chromium tests (tests/console.py screenshot)
screenshots: venv debs
	CAMWIRE_SCREENSHOTS=$(CURDIR)/docs $(PY) -m pytest -q -p no:cacheprovider \
		tests/camwire/test_demo.py

bench: venv
	$(PY) bench/transport.py
	$(PY) bench/recorder.py
	$(PY) bench/cameras.py
	$(PY) bench/events.py
	$(PY) bench/replay.py
	$(PY) bench/tracks.py
	$(PY) bench/web.py
	$(PY) bench/upload.py
	$(PY) bench/frame_cost.py
	$(PY) bench/pool.py
	$(PY) bench/clip.py
	$(PY) bench/ventilator.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

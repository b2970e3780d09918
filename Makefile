# make demo: set up and run the whole pipeline on the built-in clip (camwire/media) with the built-in model.
# make test: set up (Debian packages too) and run the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLIP ?=
DEMO_DIR ?= demo-output

.PHONY: demo test venv debs bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

debs:
	bash deploy/install-debian-packages.sh

demo: venv debs
	@mkdir -p $(DEMO_DIR)
	@clip="$(CLIP)"; [ -n "$$clip" ] || clip=camwire/media/people-walking-30s.mp4; \
	rm -rf $(DEMO_DIR)/events.jsonl $(DEMO_DIR)/recordings $(DEMO_DIR)/status.db* $(DEMO_DIR)/snapshots; \
	CAMWIRE_LOG_FORMAT=console $(VENV)/bin/camwire run --camera demo=$$clip --detector onnx \
	  --workers 2 --once --events $(DEMO_DIR)/events.jsonl --data-dir $(DEMO_DIR) \
	  --record $(DEMO_DIR)/recordings --segment 4 --pre 2 --post 2 --keep-types object \
	  --stats $(DEMO_DIR)/stats.json
	@echo "events: $(DEMO_DIR)/events.jsonl  snapshots: $(DEMO_DIR)/snapshots  counters: $(DEMO_DIR)/stats.json"
	@echo "recordings: $(DEMO_DIR)/recordings (kept event clips under kept/; camwire clip cuts any range)"
	@echo; $(VENV)/bin/camwire status --dir $(DEMO_DIR)

test: venv debs
	$(PY) -m pytest -q

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

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

# Two commands for a fresh machine: `make demo` (the whole pipeline on synthetic
# data) and `make test` (the test suite). Each installs what it needs into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DOCS_INSTALLED := $(VENV)/.docs-installed

# The demo's size: the data and epochs of the defaults sweep (docs/training.md, "Defaults"),
# minutes on 2 CPU cores. Everything else is train_keras.py's defaults.
DEMO ?= demo
DEMO_TRAIN ?= 1200
DEMO_TEST ?= 300
DEMO_SIZE ?= 128
DEMO_EPOCHS ?= 20
# The crop-level model of the single-cell steps: about 2.5x the images of the
# fields at a quarter of their pixels, so half the epochs cost about as much.
DEMO_CROP_EPOCHS ?= 10
SEED ?= 0

.PHONY: install demo test format docs clean

install: $(INSTALLED)

$(INSTALLED): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(INSTALLED)
	$(PY) -m data_prep synth --out $(DEMO)/raw --train $(DEMO_TRAIN) --test $(DEMO_TEST) --size $(DEMO_SIZE) --seed $(SEED)
	$(PY) -m data_prep convert --csv $(DEMO)/raw/train.csv --images $(DEMO)/raw/train --out $(DEMO)/tfrecords --seed $(SEED) --overwrite
	$(PY) -m data_prep verify $(DEMO)/tfrecords
	$(PY) train_keras.py --data $(DEMO)/tfrecords --model-dir $(DEMO)/run --epochs $(DEMO_EPOCHS) --seed $(SEED) --export $(DEMO)/export
	$(PY) -m protein_location predict --model $(DEMO)/export --images $(DEMO)/raw/test \
		--csv $(DEMO)/raw/sample_submission.csv --out $(DEMO)/submission.csv
	$(PY) -m protein_location score --submission $(DEMO)/submission.csv --truth $(DEMO)/raw/test_labels.csv
	$(PY) -m data_prep crops --csv $(DEMO)/raw/train.csv --images $(DEMO)/raw/train --out $(DEMO)/raw_crops
	$(PY) -m data_prep convert --csv $(DEMO)/raw_crops/train.csv --images $(DEMO)/raw_crops/train \
		--out $(DEMO)/tfrecords_crops --group-column Group --seed $(SEED) --overwrite
	$(PY) train_keras.py --data $(DEMO)/tfrecords_crops --model-dir $(DEMO)/run_crops --epochs $(DEMO_CROP_EPOCHS) \
		--seed $(SEED) --export $(DEMO)/export_crops
	$(PY) -m data_prep synth --out $(DEMO)/cells --train 0 --test 100 --size $(DEMO_SIZE) --seed 5 --cells
	$(PY) -m protein_location cells --model $(DEMO)/export --crop-model $(DEMO)/export_crops \
		--images $(DEMO)/cells/test --out $(DEMO)/cells.csv --overlays $(DEMO)/cells_overlays
	$(PY) -m protein_location score --cells --submission $(DEMO)/cells.csv --truth $(DEMO)/cells/test_cells.csv \
		--masks $(DEMO)/cells/test_cells
	@echo "demo: raw images $(DEMO)/raw, shards $(DEMO)/tfrecords, run $(DEMO)/run (report.json, report.png, logs/), SavedModel $(DEMO)/export/<version>, submission $(DEMO)/submission.csv, crop-level model $(DEMO)/export_crops, single cells $(DEMO)/cells.csv and $(DEMO)/cells_overlays/"

# The suite runs in PYTEST_WORKERS processes (pytest-xdist), whole files to
# each: most of a test's time is Python tracing TensorFlow graphs, one core each.
PYTEST_WORKERS ?= 2

test: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests

# ruff's layout and import order over the tree (what `make test` checks first).
format: $(INSTALLED)
	$(PY) -m ruff check --select I --fix .
	$(PY) -m ruff format .

# The documentation site (mkdocs.yml: docs/ -> site/); --strict fails on any warning, a broken link included.
$(DOCS_INSTALLED): $(INSTALLED)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

docs: $(DOCS_INSTALLED)
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(DEMO) .pytest_cache

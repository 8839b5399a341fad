# Two commands for a fresh machine: `make demo` (the whole pipeline on synthetic
# data) and `make test` (the test suite). Each installs what it needs into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# The demo's size: small enough for minutes on 2 CPU cores.
DEMO ?= demo
DEMO_TRAIN ?= 6000
DEMO_TEST ?= 400
DEMO_SIZE ?= 128
DEMO_EPOCHS ?= 24
DEMO_BATCH ?= 32
DEMO_ARCH ?= seresnet18
DEMO_WIDTH ?= 0.5
DEMO_LR ?= 2.4e-2
SEED ?= 0

.PHONY: install demo test clean

install: $(INSTALLED)

$(INSTALLED): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(INSTALLED)
	$(PY) -m data_prep synth --out $(DEMO)/raw --train $(DEMO_TRAIN) --test $(DEMO_TEST) --size $(DEMO_SIZE) --seed $(SEED)
	$(PY) -m data_prep convert --csv $(DEMO)/raw/train.csv --images $(DEMO)/raw/train --out $(DEMO)/tfrecords \
		--val-fraction 0.15 --shards 4 --seed $(SEED) --overwrite
	$(PY) -m data_prep verify $(DEMO)/tfrecords
	$(PY) train_keras.py --data $(DEMO)/tfrecords --model-dir $(DEMO)/run --epochs $(DEMO_EPOCHS) \
		--batch-size $(DEMO_BATCH) --arch $(DEMO_ARCH) --width $(DEMO_WIDTH) --lr $(DEMO_LR) --oversample --tta 8 --seed $(SEED) --export $(DEMO)/export
	$(PY) -m protein_location predict --model $(DEMO)/export --images $(DEMO)/raw/test \
		--csv $(DEMO)/raw/sample_submission.csv --out $(DEMO)/submission.csv --tta 8
	$(PY) -m protein_location score --submission $(DEMO)/submission.csv --truth $(DEMO)/raw/test_labels.csv
	@echo "demo: raw images $(DEMO)/raw, shards $(DEMO)/tfrecords, run $(DEMO)/run (report.json, report.png, logs/), SavedModel $(DEMO)/export/<version>, submission $(DEMO)/submission.csv"

test: $(INSTALLED)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(DEMO) .pytest_cache

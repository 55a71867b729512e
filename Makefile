# Two commands do all the set-up on a fresh machine:
#   make train   -- venv, data (downloaded and verified; ml-1m-neg999, ml-1m with 999 test
#                   negatives, derived from it in seconds), GMF, MLP, then NeuMF from them
#                   (records in runs/, weights in runs/models/, both ignored by git), and
#                   their numbers beside the paper's and the committed runs'.
#   make test    -- venv, tests
#   make test-jax -- the model, training-loop, scoring and optimizer tests again on Keras's JAX backend
# DATA_FROM=DIR copies the data from a local folder instead of downloading it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EPOCHS ?= 20
DATA_FROM ?=

JAX_TESTS := tests/test_models.py tests/test_training.py tests/test_scoring.py tests/test_optimizers.py

.PHONY: install data train test test-jax report

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

data: install
	$(BIN)/python bin/download_data --dataset ml-1m --dataset ml-1m-pretrain --dataset ml-1m-neg999 $(if $(DATA_FROM),--from $(DATA_FROM))

train: data
	$(BIN)/python bin/train_gmf --epochs $(EPOCHS)
	$(BIN)/python bin/train_mlp --epochs $(EPOCHS)
	$(BIN)/python bin/train_neumf --pretrain --epochs $(EPOCHS)
	$(BIN)/python bin/reproduce --compare runs/

test: install
	$(BIN)/python -m pytest

test-jax: install
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q $(JAX_TESTS)

report: install
	$(BIN)/python bin/reproduce --report

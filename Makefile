# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The demo: BYOL on the embedded digits data, CPU, a few minutes, tracked in ./mlflow.db.
DEMO_ARGS ?= method=byol backbone=resnet18 backbone.small_input=true data=digits \
	data.image_size=16 trainer.epochs=6 trainer.batch_size=64 \
	byol.proj_hidden_dim=1024 byol.pred_hidden_dim=1024 byol.tau_base=0.95 \
	optim.lr=3.0 optim.warmup_epochs=1 augment.crop_scale_min=0.3 augment.flip_prob=0 \
	tracking.experiment=demo

.PHONY: install demo test lint docs bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	$(BIN)/ssl run $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m benchmarks

docs: install
	$(BIN)/python tests/test_docs.py   # regenerates README's configuration reference

clean:
	rm -rf $(VENV) runs mlflow.db .pytest_cache

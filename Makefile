# The two commands of the README:  make demo  and  make test.  Both start with `make setup`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
DEMO_DIR := outputs/demo
DEMO_STEPS ?= 6000

.PHONY: setup demo test lock clean

setup: $(STAMP)

# The virtual environment, with the exact versions of constraints.txt; redone when either changes.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

# Figure 1's MLP with and without BN on Fashion-MNIST, a short schedule, and its accuracy plot.
demo: setup
	bash scripts/get_fashion_mnist.sh
	rm -rf $(DEMO_DIR)
	$(PY) experiments/train.py -m experiment=fig1_mnist data=fashion_mnist data.download=true \
		variant=baseline,bn trainer.max_steps=$(DEMO_STEPS) trainer.eval_every=250 \
		hydra.sweep.dir=$(DEMO_DIR)
	$(PY) scripts/plot_accuracy.py $(DEMO_DIR) --out $(DEMO_DIR)/test_accuracy.png
	@echo "Demo done: runs in $(DEMO_DIR)/, plot $(DEMO_DIR)/test_accuracy.png; tensorboard --logdir $(DEMO_DIR)"

test: setup
	$(PY) -m pytest -q

# Re-pin constraints.txt from the current environment (after changing pyproject.toml).
lock: setup
	{ head -n 2 constraints.txt; $(PY) -m pip freeze --exclude-editable --exclude bnrepro; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) outputs

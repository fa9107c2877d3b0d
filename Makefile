# make demo  — create .venv, install everything, run the embedded default job
# make test  — create/update .venv the same way, run the test suite (what CI runs)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt -e ".[all]"
	touch $(STAMP)

# the demo sweep: Optuna + ASHA over λ, heads, hidden width and n on digits, embedded local Ray
demo: $(STAMP)
	rm -rf results/demo
	$(BIN)/rlp-tune sweep search_spaces/demo.toml --storage results
	$(BIN)/rlp-tune report results/demo --out reports/demo

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf runs .pytest_cache

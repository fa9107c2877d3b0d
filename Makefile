# make demo  — create .venv, install everything, run the demo experiment (λ grid on digits) and its analysis
# make test  — create/update .venv the same way, run the test suite (what CI runs)
# make reproduce — run (or reuse) the CPU search spaces and write docs/reproduction.md (REPRO_STORAGE=results)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo tune-demo test venv bench clean reproduce
REPRO_STORAGE ?= results

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c constraints.txt -e ".[all]"
	touch $(STAMP)

# the demo: a designed experiment on digits (a λ grid x 3 seeds, full-length trials, embedded local
# Ray) whose analysis shows memorization falling with λ (search_spaces/demo.toml)
demo: $(STAMP)
	rm -rf results/demo
	$(BIN)/rlp-tune sweep search_spaces/demo.toml --storage results
	$(BIN)/rlp-tune analyze results/demo
	$(BIN)/rlp-tune report results/demo --out reports/demo

# the tuning demo: Optuna TPE + ASHA over λ, heads, hidden width and n on digits
tune-demo: $(STAMP)
	rm -rf results/tune_demo
	$(BIN)/rlp-tune sweep search_spaces/tune_demo.toml --storage results
	$(BIN)/rlp-tune report results/tune_demo --out reports/tune_demo

# the reproduction table (docs/reproduction.md): every claim of papers 001/003/004 the CPU spaces test,
# measured with its CI and seeds, the verdict computed by a stated rule; finished sweeps are reused
reproduce: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python analysis/reproduce.py --storage $(REPRO_STORAGE)

test: $(STAMP)
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf runs .pytest_cache

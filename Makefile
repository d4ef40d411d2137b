# resilience.dr: one-command set-up, lab, demo and tests.
#   make test       install what is missing, then sanity, unit, integration and lint
#   make demo       install what is missing, bring up the lab, run the demo
#   make lab / make lab-down
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
BUILD := $(ROOT)/build
# the collection as ansible sees it (a symlink; ansible-playbook and pytest accept it)
COLL_PATH := $(BUILD)/collections
# ansible-test refuses symlinks: `make sanity` runs it on a real copy of the tracked files,
# in a folder of its own per run (runs side by side do not collide)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_PATH)
export ANSIBLE_ROLES_PATH := $(ROOT)/roles
export PATH := $(VENV)/bin:$(PATH)
LAB_ARGS ?=

.PHONY: help deps collection lab lab-down demo test sanity units integration lint changelog-lint bench chaos docs

help:
	@echo "make test | demo | lab | lab-down | sanity | units | integration | lint | docs | bench | chaos | deps"

deps:
	@bash scripts/bootstrap.sh

collection:
	@mkdir -p $(COLL_PATH)/ansible_collections/resilience
	@ln -sfn $(ROOT) $(COLL_PATH)/ansible_collections/resilience/dr

lab: deps collection
	ansible-playbook -i inventories/lab playbooks/lab.yml -e lab_state=present $(LAB_ARGS)

lab-down: deps collection
	ansible-playbook -i inventories/lab playbooks/lab.yml -e lab_state=absent $(LAB_ARGS)

# a fresh lab, then a failover with its report (the lab is rebuilt: the demo promotes its replica)
demo: deps collection
	ansible-playbook -i inventories/lab playbooks/lab.yml -e lab_state=absent $(LAB_ARGS)
	ansible-playbook -i inventories/lab playbooks/lab.yml -e lab_state=present $(LAB_ARGS)
	ansible-playbook -i inventories/lab playbooks/failover.yml $(LAB_ARGS)

sanity: deps
	@mkdir -p $(BUILD)
	@tmp=$$(mktemp -d $(BUILD)/sanity.XXXXXX) && root=$$tmp/ansible_collections/resilience/dr && mkdir -p $$root && \
	  git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $$root 2>/dev/null; \
	  cd $$root && git init -q . && git add -A >/dev/null && \
	  ansible-test sanity --venv --python 3.12 --color no; rc=$$?; rm -rf $$tmp; exit $$rc

units: deps collection
	$(PY) -m pytest -q tests/unit

integration: deps collection
	$(PY) -m pytest -q tests/integration

lint: deps collection
	ansible-lint --offline --profile production roles playbooks

changelog-lint: deps
	antsibull-changelog lint

# docs/modules/<module>.md from each module's DOCUMENTATION, EXAMPLES and RETURN (tests/unit/test_module_docs.py checks them)
docs: deps collection
	$(PY) scripts/gen_module_docs.py

# benchmarks: each script brings up its own private lab, measures against a floor taken in
# the same run, and writes bench/results/<name>.json and .md (not part of make test)
bench: deps collection
	@set -e; for script in bench/bench_*.py; do echo "=== $$script"; $(PY) $$script; done

# fault injection (docs/chaos.md): each scenario on its own private lab, results in chaos/results/
chaos: deps collection
	$(PY) chaos/chaos.py

test: deps collection
	@bash scripts/run-tests.sh

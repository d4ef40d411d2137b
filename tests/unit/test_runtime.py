# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/runtime.yml: every module is in the `dr` action group, and nothing else is."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _modules():
    folder = os.path.join(ROOT, "plugins", "modules")
    return sorted(
        name[:-3] for name in os.listdir(folder)
        if name.endswith(".py") and not name.startswith("_") and name != "__init__.py"
    )


def _runtime():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as handle:
        return yaml.safe_load(handle)


def test_every_module_is_in_the_action_group():
    group = _runtime()["action_groups"]["dr"] or []
    missing = sorted(set(_modules()) - set(group))
    assert not missing, "modules missing from action_groups.dr in meta/runtime.yml: %s" % missing


def test_action_group_names_only_existing_modules():
    group = _runtime()["action_groups"]["dr"] or []
    unknown = sorted(set(group) - set(_modules()))
    assert not unknown, "action_groups.dr lists modules that do not exist: %s" % unknown


def test_requires_ansible_matches_the_tested_core():
    runtime = _runtime()
    with open(os.path.join(ROOT, "requirements-test.txt")) as handle:
        pins = [line.strip() for line in handle if line.startswith("ansible-core")]
    assert pins, "requirements-test.txt must pin ansible-core"
    lowest = pins[0].split(">=")[1].split(",")[0]
    assert runtime["requires_ansible"] == ">=%s.0" % lowest

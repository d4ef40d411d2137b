# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module in-process in the unit tests and catch what it exits with.

``captured`` (the fixture in tests/unit/conftest.py) makes ``DRModule.exit_json`` and
``fail_json`` raise ``Exit`` instead of printing and exiting; ``run_main(entry, args)`` runs
``entry()`` (a module's ``main``, or any callable that builds a ``DRModule``) with ``args`` as
the module's arguments and returns that ``Exit``: ``kind`` is ``"exit"`` or ``"fail"``,
``payload`` the result dict (``msg`` included on a failure).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.resilience.dr.plugins.module_utils._module import DRModule


class Exit(Exception):
    def __init__(self, kind, payload):
        super(Exit, self).__init__(kind)
        self.kind = kind
        self.payload = payload


def _exit_json(self, **kwargs):  # pylint: disable=unused-argument
    raise Exit("exit", kwargs)


def _fail_json(self, msg, **kwargs):  # pylint: disable=unused-argument
    kwargs["msg"] = msg
    raise Exit("fail", kwargs)


def patch_exits(monkeypatch):
    monkeypatch.setattr(DRModule, "exit_json", _exit_json)
    monkeypatch.setattr(DRModule, "fail_json", _fail_json)


def run_main(entry, args, check=False, diff=False):
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(Exit) as info:
            entry()
    return info.value

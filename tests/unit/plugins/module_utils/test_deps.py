# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError


def test_missing_library_is_reported_with_its_pip_name():
    with _deps.declare("surely_not_installed_sdk", pip="surely-not-installed-sdk"):
        import surely_not_installed_sdk  # noqa: F401  pylint: disable=unused-import,import-error
    assert not _deps.available("surely_not_installed_sdk")
    with pytest.raises(DRError) as info:
        _deps.require("surely_not_installed_sdk")
    assert info.value.code == "MISSING_LIBRARY"
    assert "surely-not-installed-sdk" in info.value.msg
    assert info.value.details["library"] == "surely-not-installed-sdk"


def test_present_library_passes():
    with _deps.declare("json"):
        import json  # noqa: F401  pylint: disable=unused-import
    assert _deps.available("json")
    _deps.require("json")


def test_other_errors_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        with _deps.declare("broken"):
            1 / 0  # pylint: disable=pointless-statement


def test_undeclared_is_an_error():
    with pytest.raises(DRError):
        _deps.require("never_declared_anywhere")

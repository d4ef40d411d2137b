# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit-test fixtures shared by every test file: ``captured`` (see modrun.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from modrun import patch_exits  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def captured(monkeypatch):
    """DRModule.exit_json / fail_json raise modrun.Exit instead of exiting."""
    patch_exits(monkeypatch)

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The short chaos subset (chaos/chaos.py --short): two failovers started at once, and the
replication link cut while writes go on. Each scenario brings up its own lab in port block
30100/30300, checks real state (pg_is_in_recovery on both servers, HAProxy's servers state,
rows on both servers, the split-brain sampler) and tears the lab down."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "chaos"))

import chaos  # noqa: E402  pylint: disable=wrong-import-position
from lablib import LAB_BASE  # noqa: E402  pylint: disable=wrong-import-position


SHORT = [s for s in chaos.SCENARIOS if s[4]]


@pytest.mark.parametrize("scenario", SHORT, ids=[s[0] for s in SHORT])
def test_short_scenario(scenario):
    name, func, offset, synchronous, _short = scenario
    result = chaos.run_scenario(name, func, offset, synchronous)
    failed = [c["check"] for c in result["checks"] if not c["ok"]]
    assert result["outcome"] == "pass", json.dumps(result, indent=2, default=str)[-4000:]
    assert not failed
    # the scenario's checks ran against real state, and include the secret grep
    assert len(result["checks"]) >= 5
    assert any("password" in c["check"] for c in result["checks"])
    # the lab is gone afterwards
    assert not os.path.exists(os.path.join(LAB_BASE, "chaos-" + name.replace("_", "-")[:20], "lab.json"))


def test_cli_short_lists_only_the_short_subset():
    names = [s[0] for s in SHORT]
    assert names == ["two_failovers_at_once", "replication_link_cut"]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "chaos", "chaos.py"), "--help"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=False)
    assert proc.returncode == 0 and "--short" in proc.stdout

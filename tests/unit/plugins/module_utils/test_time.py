# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest

from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError


@pytest.mark.parametrize("text,seconds", [
    ("90s", 90), ("15m", 900), ("6h", 21600), ("7d", 604800), ("1w", 604800),
    ("1h30m", 5400), ("250ms", 0.25), ("2.5", 2.5), (30, 30.0), (0, 0.0),
    (" 10 s ", 10), ("1d2h3m4s", 93784), ("5min", 300), ("3sec", 3),
])
def test_parse_duration(text, seconds):
    assert _time.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "abc", "10x", "h", "5m3", "-5s", -1, True, [1], "1h 2q"])
def test_parse_duration_refuses(bad):
    with pytest.raises(DRError) as info:
        _time.parse_duration(bad, name="max_lag")
    assert info.value.code == "INVALID_ARGUMENT"
    assert "max_lag" in info.value.msg


def test_parse_duration_none_is_none():
    assert _time.parse_duration(None) is None


def test_format_duration():
    assert _time.format_duration(4.25) == "4.25s"
    assert _time.format_duration(3723) == "1h2m3s"
    assert _time.format_duration(90000) == "1d1h"


def test_parse_timestamp_offsets_are_the_same_instant():
    utc = _time.parse_timestamp("2026-01-15T10:15:00Z")
    plus2 = _time.parse_timestamp("2026-01-15T12:15:00+02:00")
    minus = _time.parse_timestamp("2026-01-15T05:15:00-0500")
    assert utc == plus2 == minus
    assert utc.tzinfo == datetime.timezone.utc
    assert _time.isoformat(plus2) == "2026-01-15T10:15:00.000Z"


def test_parse_timestamp_fraction_and_space():
    moment = _time.parse_timestamp("2026-01-15 10:15:00.123456789+00:00")
    assert moment.microsecond == 123456


@pytest.mark.parametrize("bad", [
    "2026-01-15T10:15:00",          # no zone: refused, never guessed
    "2026-01-15",                   # no time
    "yesterday",
    "2026-02-30T10:00:00Z",         # no such day
    "2026-01-15T10:15:00+25:00",    # impossible offset
    12345,
])
def test_parse_timestamp_refuses(bad):
    with pytest.raises(DRError) as info:
        _time.parse_timestamp(bad, name="target_time")
    assert info.value.code == "INVALID_ARGUMENT"
    assert "target_time" in info.value.msg


def test_parse_timestamp_datetime_inputs():
    aware = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert _time.parse_timestamp(aware).hour == 11
    with pytest.raises(DRError):
        _time.parse_timestamp(datetime.datetime(2026, 1, 1))


def test_isoformat_refuses_naive():
    with pytest.raises(ValueError):
        _time.isoformat(datetime.datetime(2026, 1, 1))
    assert _time.now_iso().endswith("Z")

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ctypes libpq driver's parameter and value conversions, the driver choice, and a real
connection failure through it (the whole query path runs against real PostgreSQL in
tests/integration/test_replica_promote_lab.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import decimal
import socket

import pytest

from ansible_collections.resilience.dr.plugins.module_utils import _libpq, _pg
from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError


def test_placeholders_become_numbered_and_percent_signs_stay():
    assert _libpq.convert_query("SELECT %s, '50%%', %s", (1, 2)) == "SELECT $1, '50%', $2"
    assert _libpq.convert_query("SELECT '50%'", None) == "SELECT '50%'"
    with pytest.raises(_libpq.PgError):
        _libpq.convert_query("SELECT %s", (1, 2))


def test_parameters_are_typed_as_psycopg_types_them():
    assert _libpq.adapt(None) == (0, None)
    assert _libpq.adapt(True) == (16, "t")
    assert _libpq.adapt(7) == (21, "7")
    assert _libpq.adapt(0x52445250) == (23, str(0x52445250))
    assert _libpq.adapt(2 ** 40) == (20, str(2 ** 40))
    assert _libpq.adapt(2 ** 70) == (1700, str(2 ** 70))
    assert _libpq.adapt(1.5) == (701, "1.5")
    assert _libpq.adapt("it's") == (0, "it's")


def test_values_are_parsed_by_type():
    assert _libpq.parse(16, "t") is True and _libpq.parse(16, "f") is False
    assert _libpq.parse(20, "-12") == -12 and _libpq.parse(26, "16384") == 16384
    assert _libpq.parse(701, "0.25") == 0.25
    assert _libpq.parse(1700, "2.50") == decimal.Decimal("2.50")
    assert _libpq.parse(25, "0/3000060") == "0/3000060"
    assert _libpq.parse(1184, "2026-11-23 00:00:00+00") == "2026-11-23 00:00:00+00"
    assert _libpq.parse(23, None) is None


def test_the_driver_is_libpq_when_loadable_unless_psycopg_is_asked_for(monkeypatch):
    monkeypatch.setenv(_pg.DRIVER_ENV, "psycopg")
    assert _pg.driver() == "psycopg"
    monkeypatch.delenv(_pg.DRIVER_ENV)
    assert _pg.driver() == ("libpq" if _libpq.load() is not None else "psycopg")
    monkeypatch.setattr(_libpq, "_LIB", [None])
    assert _pg.driver() == "psycopg"
    monkeypatch.setenv(_pg.DRIVER_ENV, "libpq")
    with pytest.raises(DRError) as info:
        _pg.driver()
    assert info.value.code == "MISSING_LIBRARY"


@pytest.mark.skipif(_libpq.load() is None, reason="no libpq.so.5 on this host")
def test_a_refused_connection_through_libpq_is_classified_without_the_password(monkeypatch):
    monkeypatch.setenv(_pg.DRIVER_ENV, "libpq")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    secret = "S3cret-libpq-%d" % port
    with pytest.raises(DRError) as info:
        _pg.connect(dict(host="127.0.0.1", port=port, user="postgres", password=secret, dbname="x", connect_timeout=2))
    assert info.value.code == "CONNECTION_FAILED" and "127.0.0.1:%d" % port in str(info.value)
    assert secret not in str(info.value)

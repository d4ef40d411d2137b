# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The system's libpq through ctypes: a minimal, fast-loading PostgreSQL client (private).

``import psycopg`` costs 0.1 s and more (it pulls in asyncio, ssl and logging), a third of a
whole Ansible task's fixed cost; loading ``libpq.so.5`` through ctypes costs about 0.02 s.
``_pg`` uses this client when the host has libpq (every host with the PostgreSQL client
tools does) and psycopg otherwise. It covers what ``_pg`` offers and no more: autocommit
connections from keyword settings, one statement at a time with psycopg-style ``%s``
parameters, rows as dicts.

Values come back as psycopg would return them for booleans, integers, floats and numerics;
every other type comes back as PostgreSQL's text form, so queries cast what they read to
``::text`` (as ``_promote_postgres`` does) and get the same value from either driver.
Authentication, TLS and every connection setting are libpq's own, exactly as with psycopg.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_LIB = []  # [] not tried yet; [None] not available; [CDLL] loaded
_NAMES = ("libpq.so.5", "libpq.so", "libpq.5.dylib")

CONNECTION_OK = 0
PGRES_EMPTY_QUERY, PGRES_COMMAND_OK, PGRES_TUPLES_OK = 0, 1, 2
PG_DIAG_SQLSTATE = ord("C")
PG_DIAG_MESSAGE_PRIMARY = ord("M")

_BOOL, _INT8, _INT2, _INT4, _OID, _FLOAT4, _FLOAT8, _NUMERIC = 16, 20, 21, 23, 26, 700, 701, 1700
_PLACEHOLDER = re.compile(r"%[s%]")


class PgError(Exception):
    """A failed connection or statement. ``sqlstate`` is PostgreSQL's error code (None for a
    connection failure); ``connection_lost`` is True when the connection is no longer usable."""

    def __init__(self, message, sqlstate=None, connection_lost=False):
        super(PgError, self).__init__(message)
        self.sqlstate = sqlstate
        self.connection_lost = connection_lost


def load():
    """The loaded libpq, or None when this host has none (or ctypes cannot load it)."""
    if not _LIB:
        _LIB.append(_load())
    return _LIB[0]


def _load():
    try:
        import ctypes  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover - ctypes is part of every CPython we support
        return None
    lib = None
    for name in _NAMES:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return None
    ptr, cstr, cint, uint = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint
    signatures = {
        "PQconnectdbParams": (ptr, [ctypes.POINTER(cstr), ctypes.POINTER(cstr), cint]),
        "PQstatus": (cint, [ptr]),
        "PQerrorMessage": (cstr, [ptr]),
        "PQfinish": (None, [ptr]),
        "PQexec": (ptr, [ptr, cstr]),
        "PQexecParams": (ptr, [ptr, cstr, cint, ctypes.POINTER(uint), ctypes.POINTER(cstr),
                               ctypes.POINTER(cint), ctypes.POINTER(cint), cint]),
        "PQresultStatus": (cint, [ptr]),
        "PQresultErrorField": (cstr, [ptr, cint]),
        "PQresultErrorMessage": (cstr, [ptr]),
        "PQntuples": (cint, [ptr]),
        "PQnfields": (cint, [ptr]),
        "PQfname": (cstr, [ptr, cint]),
        "PQftype": (uint, [ptr, cint]),
        "PQgetisnull": (cint, [ptr, cint, cint]),
        "PQgetvalue": (cstr, [ptr, cint, cint]),
        "PQcmdTuples": (cstr, [ptr]),
        "PQclear": (None, [ptr]),
    }
    try:
        for name, (restype, argtypes) in signatures.items():
            func = getattr(lib, name)
            func.restype = restype
            func.argtypes = argtypes
    except AttributeError:  # a libpq older than 9.0 (no PQconnectdbParams)
        return None
    lib.ctypes = ctypes
    return lib


def _text(raw):
    return raw.decode("utf-8", "replace") if raw is not None else None


def convert_query(query, params):
    """psycopg's ``%s`` placeholders as libpq's ``$1``, ``$2``...; ``%%`` as ``%``.
    Without parameters the query is sent as it is (psycopg does the same)."""
    if params is None:
        return query
    count = [0]

    def repl(match):
        if match.group(0) == "%%":
            return "%"
        count[0] += 1
        return "$%d" % count[0]

    out = _PLACEHOLDER.sub(repl, query)
    if count[0] != len(params):
        raise PgError("the query has %d placeholders but %d parameters were given" % (count[0], len(params)))
    return out


def adapt(value):
    """(oid, text) for one parameter, typed as psycopg 3 types it: integers as the smallest
    integer type that holds them, text as ``unknown`` so that the server infers it."""
    if value is None:
        return 0, None
    if isinstance(value, bool):
        return _BOOL, "t" if value else "f"
    if isinstance(value, int):
        if -2 ** 15 <= value < 2 ** 15:
            return _INT2, str(value)
        if -2 ** 31 <= value < 2 ** 31:
            return _INT4, str(value)
        if -2 ** 63 <= value < 2 ** 63:
            return _INT8, str(value)
        return _NUMERIC, str(value)
    if isinstance(value, float):
        return _FLOAT8, repr(value)
    return 0, str(value)


def parse(oid, text):
    """A column's text value as a Python value (see the module docstring)."""
    if text is None:
        return None
    if oid == _BOOL:
        return text == "t"
    if oid in (_INT2, _INT4, _INT8, _OID):
        return int(text)
    if oid in (_FLOAT4, _FLOAT8):
        return float(text)
    if oid == _NUMERIC:
        import decimal  # pylint: disable=import-outside-toplevel
        return decimal.Decimal(text)
    return text


class Connection(object):
    """One autocommit connection (libpq starts no transaction of its own)."""

    def __init__(self, lib, settings):
        self.lib = lib
        ctypes = lib.ctypes
        items = [(k, str(v)) for k, v in settings.items() if v not in (None, "")]
        items.append(("client_encoding", "UTF8"))
        keys = (ctypes.c_char_p * (len(items) + 1))(*([k.encode() for k, _v in items] + [None]))
        values = (ctypes.c_char_p * (len(items) + 1))(*([v.encode() for _k, v in items] + [None]))
        self.pgconn = lib.PQconnectdbParams(keys, values, 0)
        if not self.pgconn:
            raise PgError("libpq could not allocate a connection", connection_lost=True)
        if lib.PQstatus(self.pgconn) != CONNECTION_OK:
            message = _text(lib.PQerrorMessage(self.pgconn)) or "connection failed"
            self.close()
            raise PgError(message.strip(), connection_lost=True)

    @property
    def closed(self):
        return self.pgconn is None

    def close(self):
        if self.pgconn is not None:
            self.lib.PQfinish(self.pgconn)
            self.pgconn = None

    def run(self, query, params=None):
        """Run one statement; returns (rows as dicts or None when it returns no rows, rowcount)."""
        if self.pgconn is None:
            raise PgError("the connection is closed", connection_lost=True)
        lib, ctypes = self.lib, self.lib.ctypes
        text = convert_query(query, params).encode("utf-8")
        if params:
            adapted = [adapt(v) for v in params]
            count = len(adapted)
            oids = (ctypes.c_uint * count)(*[oid for oid, _v in adapted])
            values = (ctypes.c_char_p * count)(*[None if v is None else v.encode("utf-8") for _o, v in adapted])
            res = lib.PQexecParams(self.pgconn, text, count, oids, values, None, None, 0)
        else:
            res = lib.PQexecParams(self.pgconn, text, 0, None, None, None, None, 0)
        if not res:
            message = _text(lib.PQerrorMessage(self.pgconn)) or "no result from the server"
            raise PgError(message.strip(), connection_lost=lib.PQstatus(self.pgconn) != CONNECTION_OK)
        try:
            status = lib.PQresultStatus(res)
            if status not in (PGRES_EMPTY_QUERY, PGRES_COMMAND_OK, PGRES_TUPLES_OK):
                sqlstate = _text(lib.PQresultErrorField(res, PG_DIAG_SQLSTATE))
                message = (_text(lib.PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY))
                           or _text(lib.PQresultErrorMessage(res)) or _text(lib.PQerrorMessage(self.pgconn)) or "")
                raise PgError(message.strip(), sqlstate=sqlstate,
                              connection_lost=lib.PQstatus(self.pgconn) != CONNECTION_OK)
            rowcount = int(_text(lib.PQcmdTuples(res)) or -1)
            if status != PGRES_TUPLES_OK:
                return None, rowcount
            nfields, ntuples = lib.PQnfields(res), lib.PQntuples(res)
            names = [_text(lib.PQfname(res, c)) for c in range(nfields)]
            oids = [lib.PQftype(res, c) for c in range(nfields)]
            rows = []
            for r in range(ntuples):
                rows.append(dict(
                    (names[c], None if lib.PQgetisnull(res, r, c) else parse(oids[c], _text(lib.PQgetvalue(res, r, c))))
                    for c in range(nfields)))
            return rows, ntuples
        finally:
            lib.PQclear(res)

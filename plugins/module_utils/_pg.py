# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small shared PostgreSQL helper (private to this collection).

The driver is the system's libpq through ctypes (``_libpq``) when the host has it, and
psycopg 3 otherwise: ``import psycopg`` alone costs a third of an Ansible task's fixed cost.
``RESILIENCE_DR_PG_DRIVER=psycopg`` (or ``libpq``) in the module's environment forces one.
Both give the same rows for the types this collection reads (booleans, integers, floats,
numerics, and text: cast everything else to ``::text`` in the query).

* ``settings_from_params(params, prefix="pg_")``: connection settings from the flat
  options of ``_connection.postgres_spec`` (or the same names under another prefix).
* ``connect(settings)``: an autocommit connection; a failure becomes
  ``DRError(AUTH_FAILED)`` or ``DRError(CONNECTION_FAILED)`` with the password removed
  from the driver's message.
* ``fetch_one`` / ``fetch_all`` / ``execute``: run one statement, rows as dicts.
* LSN arithmetic as PostgreSQL's ``pg_wal_lsn_diff``: ``lsn_to_int``, ``int_to_lsn``,
  ``lsn_diff``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils import _libpq
from ansible_collections.resilience.dr.plugins.module_utils import _secrets
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    AUTH_FAILED,
    CONNECTION_FAILED,
    DRError,
    INVALID_ARGUMENT,
    MISSING_LIBRARY,
)

DRIVER_ENV = "RESILIENCE_DR_PG_DRIVER"
_PSYCOPG = {}


def _psycopg():
    """psycopg, imported on first use (a missing one becomes MISSING_LIBRARY)."""
    if "module" not in _PSYCOPG:
        with _deps.declare("psycopg", pip="psycopg[binary]", reason="to talk to PostgreSQL"):
            import psycopg  # pylint: disable=import-outside-toplevel
            _PSYCOPG["module"] = psycopg
        _PSYCOPG.setdefault("module", None)
    _deps.require("psycopg")
    return _PSYCOPG["module"]


def driver():
    """``libpq`` or ``psycopg``: the driver the next ``connect`` uses."""
    wanted = os.environ.get(DRIVER_ENV, "").strip().lower()
    if wanted == "psycopg":
        return "psycopg"
    if _libpq.load() is not None:
        return "libpq"
    if wanted == "libpq":
        raise DRError(MISSING_LIBRARY, "%s=libpq but this host has no loadable libpq (libpq.so.5). Install the libpq5 package, "
                      "or unset %s to use psycopg." % (DRIVER_ENV, DRIVER_ENV))
    return "psycopg"


_AUTH_PATTERNS = (
    "password authentication failed",
    "authentication failed",
    "no password supplied",
    "pg_hba.conf rejects",
    "no pg_hba.conf entry",
    "does not exist",  # role "x" does not exist / database "y" does not exist
    "permission denied for database",
)

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


# -- LSN arithmetic ---------------------------------------------------------------------
def lsn_to_int(lsn):
    """``'16/B374D848'`` -> int (bytes since the start of WAL); None stays None."""
    if lsn is None:
        return None
    if isinstance(lsn, int):
        return lsn
    match = _LSN.match(str(lsn).strip())
    if not match:
        raise DRError(INVALID_ARGUMENT, "%r is not a PostgreSQL LSN such as 16/B374D848." % (lsn,))
    return (int(match.group(1), 16) << 32) + int(match.group(2), 16)


def int_to_lsn(value):
    if value is None:
        return None
    return "%X/%X" % (value >> 32, value & 0xFFFFFFFF)


def lsn_diff(a, b):
    """``pg_wal_lsn_diff(a, b)``: bytes from ``b`` to ``a`` (negative when a is behind);
    None when either side is unknown."""
    if a is None or b is None:
        return None
    return lsn_to_int(a) - lsn_to_int(b)


def timeline_of_walfile(walfile):
    """Timeline id from a WAL file name (its first 8 hex digits)."""
    if not walfile:
        return None
    return int(walfile[:8], 16)


# -- connections ------------------------------------------------------------------------
def settings_from_params(params, prefix="pg_", **overrides):
    """Connection settings from flat options named ``<prefix>login_host`` and so on."""
    settings = dict(
        host=params.get(prefix + "login_host"),
        port=params.get(prefix + "port"),
        user=params.get(prefix + "login_user"),
        password=params.get(prefix + "login_password"),
        dbname=params.get(prefix + "database"),
        sslmode=params.get(prefix + "ssl_mode"),
        sslrootcert=params.get(prefix + "ca_cert"),
        connect_timeout=params.get(prefix + "connect_timeout"),
    )
    settings.update(overrides)
    return settings


def describe(settings):
    """``host:port/dbname`` (no user, no password) for messages and step targets."""
    host = settings.get("host") or "local socket"
    return "%s:%s/%s" % (host, settings.get("port") or 5432, settings.get("dbname") or "postgres")


def classify(exc):
    """AUTH_FAILED or CONNECTION_FAILED for a psycopg connection error."""
    text = str(exc).lower()
    for pattern in _AUTH_PATTERNS:
        if pattern in text:
            return AUTH_FAILED
    return CONNECTION_FAILED


def connect(settings, application_name="resilience.dr", autocommit=True):
    """Open a connection; raise DRError(AUTH_FAILED / CONNECTION_FAILED) without secrets."""
    kwargs = dict((k, v) for k, v in settings.items() if v not in (None, ""))
    kwargs["application_name"] = application_name
    secrets = [settings.get("password")]
    use = driver()
    try:
        if use == "libpq":
            if not autocommit:
                raise DRError(INVALID_ARGUMENT, "Internal error: the libpq driver opens autocommit connections only.")
            return _libpq.Connection(_libpq.load(), kwargs)
        psycopg = _psycopg()
        return psycopg.connect(autocommit=autocommit, **kwargs)
    except DRError:
        raise
    except Exception as exc:  # pylint: disable=broad-except
        if not (isinstance(exc, _libpq.PgError) or (use == "psycopg" and isinstance(exc, _psycopg().Error))):
            raise
        code = classify(exc)
        reason = _secrets.scrub(str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc), secrets)
        reason = reason.strip().rstrip(".")
        if code == AUTH_FAILED:
            msg = "PostgreSQL at %s refused the login of %s (%s). Check the user, password and pg_hba.conf." % (
                describe(settings), settings.get("user"), reason)
        else:
            msg = "Cannot connect to PostgreSQL at %s (%s). Check host, port and that the server is up." % (
                describe(settings), reason)
        raise DRError(code, msg, details={"server": describe(settings)})


def fetch_all(conn, query, params=None):
    if isinstance(conn, _libpq.Connection):
        return conn.run(query, params)[0] or []
    with conn.cursor(row_factory=_psycopg().rows.dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def fetch_one(conn, query, params=None):
    rows = fetch_all(conn, query, params)
    return rows[0] if rows else None


def execute(conn, query, params=None):
    if isinstance(conn, _libpq.Connection):
        return conn.run(query, params)[1]
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.rowcount


def close(conn):
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # pylint: disable=broad-except
        pass


def is_connection_error(exc):
    """True for errors that mean the server went away (not a SQL error)."""
    if isinstance(exc, _libpq.PgError):
        return exc.connection_lost
    psycopg = _PSYCOPG.get("module")
    if psycopg is None:
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))

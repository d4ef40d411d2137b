# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of the self-managed PostgreSQL provider (psycopg 3).
    DOCUMENTATION = r"""
options:
  pg_login_host:
    description:
      - Host name, IP address or Unix socket directory of the PostgreSQL server.
      - Falls back to the E(PGHOST) environment variable; when neither is set, libpq's
        default Unix socket is used.
    type: str
  pg_port:
    description:
      - TCP port (or socket file suffix) of the server. Falls back to E(PGPORT).
    type: int
    default: 5432
  pg_login_user:
    description:
      - Role to connect as. Falls back to E(PGUSER).
    type: str
    default: postgres
  pg_login_password:
    description:
      - Password of O(pg_login_user). Falls back to E(PGPASSWORD). Never returned or logged;
        a C(.pgpass) file also works.
    type: str
  pg_database:
    description:
      - Database to connect to. Falls back to E(PGDATABASE).
    type: str
    default: postgres
  pg_ssl_mode:
    description:
      - libpq C(sslmode). Falls back to E(PGSSLMODE).
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  pg_ca_cert:
    description:
      - CA certificate file to verify the server with. Falls back to E(PGSSLROOTCERT).
    type: path
  pg_connect_timeout:
    description:
      - Seconds to wait for a connection before giving up. Falls back to E(PGCONNECT_TIMEOUT).
    type: int
    default: 10
requirements:
  - psycopg >= 3.1 (C(pip install 'psycopg[binary]')) on the host the module runs on
    (M(resilience.dr.replica_promote) uses the host's C(libpq.so.5) instead when it has one).
"""

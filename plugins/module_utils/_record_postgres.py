# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_record, backend ``postgres``: an insert-only table (private).

The table is created when missing, with a statement-level trigger that raises on
``UPDATE``, ``DELETE`` and ``TRUNCATE``: the database refuses them, whoever asks (short of
dropping the trigger). One row per event; ``record`` holds the whole event (jsonb),
``prev_hash`` the ``hash`` of the previous event of the same record. Writers of one record
are serialised with a transaction-level advisory lock, and ``UNIQUE (record_id, seq)``
refuses a duplicate event.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.resilience.dr.plugins.module_utils import _deps
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    INVALID_ARGUMENT,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._record_common import (
    CONFLICT,
    GENESIS,
    RecordProvider,
    canonical,
    check_linked_events,
    event_hash,
)

with _deps.declare("psycopg", pip="psycopg"):
    import psycopg
    from psycopg import sql

# Templates shown in steps (identifiers filled in, no values).
CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    event_no bigserial PRIMARY KEY,
    record_id text NOT NULL,
    seq integer NOT NULL CHECK (seq > 0),
    kind text NOT NULL,
    status text NOT NULL,
    environment text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    record jsonb NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    UNIQUE (record_id, seq)
)"""
CREATE_FUNCTION = """CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'resilience.dr records in %.% are insert-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Write a new record (rollback_record) instead of changing one.';
END
$fn$"""
CREATE_TRIGGER = ("CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
                  "FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
INSERT = ("INSERT INTO {table} (record_id, seq, kind, status, environment, recorded_at, record, prev_hash, hash) "
          "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")


class PostgresRecordProvider(RecordProvider):
    name = "postgres"

    def __init__(self, module):
        super(PostgresRecordProvider, self).__init__(module)
        parts = self.params["pg_table"].split(".")
        if len(parts) > 2 or not all(parts):
            raise DRError(INVALID_ARGUMENT, "pg_table must be table or schema.table, not %r." % self.params["pg_table"])
        self.schema, self.table = (parts if len(parts) == 2 else ["public", parts[0]])
        self.conn = None
        self.exists = None

    def location(self):
        return "%s.%s.%s" % (self.params.get("pg_database"), self.schema, self.table)

    # -- identifiers -------------------------------------------------------------------
    def _ids(self):
        return dict(
            table=sql.Identifier(self.schema, self.table),
            function=sql.Identifier(self.schema, "%s_insert_only" % self.table),
            trigger=sql.Identifier("%s_insert_only" % self.table),
        )

    def _q(self, template):
        return sql.SQL(template).format(**dict((k, v) for k, v in self._ids().items() if "{%s}" % k in template))

    # -- connection --------------------------------------------------------------------
    def open(self):
        _deps.require("psycopg")
        p = self.params
        kwargs = dict(
            host=p.get("pg_login_host"), port=p.get("pg_port"), user=p.get("pg_login_user"),
            password=p.get("pg_login_password"), dbname=p.get("pg_database"), sslmode=p.get("pg_ssl_mode"),
            connect_timeout=p.get("pg_connect_timeout"), application_name="resilience.dr.rollback_record",
        )
        if p.get("pg_ca_cert"):
            kwargs["sslrootcert"] = p["pg_ca_cert"]
        kwargs = dict((k, v) for k, v in kwargs.items() if v is not None)
        try:
            self.conn = psycopg.connect(autocommit=True, **kwargs)
        except psycopg.OperationalError as exc:
            text = str(exc)
            code = AUTH_FAILED if ("password authentication" in text or "authentication failed" in text
                                   or "no password supplied" in text) else CONNECTION_FAILED
            raise DRError(code, "Cannot connect to PostgreSQL at %s:%s as %s: %s" % (
                p.get("pg_login_host") or "(default socket)", p.get("pg_port"), p.get("pg_login_user"), text.strip()))
        with self.conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (self._ids()["table"].as_string(self.conn),))
            self.exists = cur.fetchone()[0] is not None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def _rows(self, record_id=None, latest=False):
        if not self.exists:
            return []
        where = sql.SQL(" WHERE record_id = %s") if record_id is not None else sql.SQL("")
        if latest:
            query = sql.SQL("SELECT DISTINCT ON (record_id) event_no, record_id, record FROM {t}{w} "
                            "ORDER BY record_id, seq DESC").format(t=self._ids()["table"], w=where)
        else:
            query = sql.SQL("SELECT event_no, record_id, record FROM {t}{w} ORDER BY record_id, seq, event_no").format(
                t=self._ids()["table"], w=where)
        try:
            with self.conn.cursor() as cur:
                cur.execute(query, (record_id,) if record_id is not None else None)
                return cur.fetchall()
        except psycopg.Error as exc:
            raise DRError(APPLY_FAILED, "Cannot read records from %s: %s" % (self.location(), str(exc).strip()))

    @staticmethod
    def _decode(value):
        if isinstance(value, (bytes, str)):
            try:
                return json.loads(value)
            except ValueError:
                return None
        return value

    def events(self, record_id=None):
        return [self._decode(r[2]) for r in self._rows(record_id) if isinstance(self._decode(r[2]), dict)]

    def latest_records(self):
        return [self._decode(r[2]) for r in self._rows(latest=True) if isinstance(self._decode(r[2]), dict)]

    def check_chain(self):
        return check_linked_events([("row %d" % r[0], self._decode(r[2]), r[1]) for r in self._rows()])

    # -- writing -----------------------------------------------------------------------
    def extra_steps(self, current):
        if self.exists:
            return []
        return [Step("create_table", "%s.%s" % (self.schema, self.table), run=self._create_table,
                     sql=[self._q(t).as_string(self.conn) for t in (CREATE_TABLE, CREATE_FUNCTION, CREATE_TRIGGER)])]

    def _create_table(self):
        try:
            with self.conn.transaction():
                with self.conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("resilience.dr:" + self.location(),))
                    cur.execute(self._q(CREATE_TABLE))
                    cur.execute(self._q(CREATE_FUNCTION))
                    cur.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = to_regclass(%s)",
                                ("%s_insert_only" % self.table, self._ids()["table"].as_string(self.conn)))
                    if cur.fetchone() is None:
                        cur.execute(self._q(CREATE_TRIGGER))
        except psycopg.Error as exc:
            raise DRError(APPLY_FAILED, "Cannot create the record table %s: %s" % (self.location(), str(exc).strip()))
        self.exists = True
        return {"table": "%s.%s" % (self.schema, self.table)}

    def append(self, event):
        try:
            with self.conn.transaction():
                with self.conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                                ("resilience.dr:%s:%s" % (self.location(), event["id"]),))
                    cur.execute(sql.SQL("SELECT seq, hash FROM {t} WHERE record_id = %s ORDER BY seq DESC LIMIT 1").format(
                        t=self._ids()["table"]), (event["id"],))
                    row = cur.fetchone()
                    if (row[0] if row else 0) != event["seq"] - 1:
                        raise DRError(CONFLICT, "Record %s changed in %s since it was read; run the task again to see "
                                      "its state." % (event["id"], self.location()))
                    event["prev_hash"] = row[1] if row else GENESIS
                    event["hash"] = event_hash(event)
                    cur.execute(self._q(INSERT), (
                        event["id"], event["seq"], event.get("kind") or "", event["status"], event.get("environment"),
                        event["recorded_at"], canonical(event), event["prev_hash"], event["hash"]))
                    cur.execute("SELECT currval(pg_get_serial_sequence(%s, 'event_no'))",
                                (self._ids()["table"].as_string(self.conn),))
                    event_no = cur.fetchone()[0]
        except psycopg.errors.UniqueViolation:
            raise DRError(CONFLICT, "Another writer recorded the same event of %s at the same moment; run the task "
                          "again to see its state." % event["id"])
        except psycopg.Error as exc:
            raise DRError(APPLY_FAILED, "Cannot insert the record into %s: %s" % (self.location(), str(exc).strip()))
        return {"event_no": event_no, "hash": event["hash"]}

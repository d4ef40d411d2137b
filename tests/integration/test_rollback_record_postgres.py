# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_record, backend postgres, on a lab primary: rows and the database's refusals are asserted."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

import pytest

from lablib import Lab
from test_rollback_record_file import run_rr

psycopg = pytest.importorskip("psycopg")

PORT_BASE = 24000


@pytest.fixture(scope="module")
def lab():
    if not os.path.exists(os.path.join(os.path.dirname(__file__), "..", "..", "playbooks", "lab.yml")):
        pytest.skip("the lab (playbooks/lab.yml) is not available")
    instance = Lab.up("record", port_base=PORT_BASE)
    try:
        yield instance
    finally:
        instance.down()


def pg_args(lab, **extra):
    out = {"backend": "postgres", "pg_login_host": "127.0.0.1", "pg_port": lab.info["primary"]["port"],
           "pg_login_user": lab.info["superuser"], "pg_login_password": lab.info["password"],
           "pg_database": lab.info["database"], "pg_ssl_mode": "disable", "pg_table": "audit.dr_records"}
    out.update(extra)
    return out


def rows(lab):
    return lab.sql("select event_no, record_id, seq, status, record::text, prev_hash, hash from audit.dr_records "
                   "order by event_no")


def test_postgres_backend_on_the_lab(lab):
    lab.sql("create schema if not exists audit")
    start = pg_args(lab, id="rb-pg-0001", kind="failover", status="started", environment="lab",
                    details={"replica": {"password": "Row-Secret-99", "port": lab.info["replica"]["port"]}})
    # 1. check mode: the table is not created
    dry = run_rr(start, check=True)
    assert dry["failed"] is False and dry["changed"] is True, dry
    assert [s["action"] for s in dry["steps"]] == ["create_table", "append_record"]
    assert lab.sql("select to_regclass('audit.dr_records')")[0][0] is None
    # 2. apply
    real = run_rr(start)
    assert real["failed"] is False and real["changed"] is True, real
    assert [(s["action"], s["target"]) for s in real["steps"]] == [(s["action"], s["target"]) for s in dry["steps"]]
    # 3. independent read: the row, masked
    stored = rows(lab)
    assert [(r[1], r[2], r[3]) for r in stored] == [("rb-pg-0001", 1, "started")]
    record = json.loads(stored[0][4])
    assert record["details"]["replica"]["password"] == "********"
    assert "Row-Secret-99" not in stored[0][4]
    assert lab.info["password"] not in stored[0][4]
    assert stored[0][5] == "0" * 64 and stored[0][6] == record["hash"]
    # 4. idempotent, 5. check mode on the converged state
    again = run_rr(start)
    assert again["changed"] is False and again["event"] == "unchanged"
    assert run_rr(start, check=True)["changed"] is False
    assert len(rows(lab)) == 1

    done = run_rr(pg_args(lab, id="rb-pg-0001", status="completed", rpo_seconds=0.5, objectives={"rpo": "1s"}))
    assert done["changed"] is True, done
    stored = rows(lab)
    assert [(r[2], r[3]) for r in stored] == [(1, "started"), (2, "completed")]
    assert stored[1][5] == stored[0][6]
    assert json.loads(stored[1][4])["rpo_met"] is True
    back = run_rr(pg_args(lab, id="rb-pg-0001", status="started"))
    assert back["failed"] is True and back["error"] == "INVALID_TRANSITION"
    assert len(rows(lab)) == 2

    # the database itself refuses changes, from psycopg ...
    for statement in ("update audit.dr_records set status = 'aborted'",
                      "delete from audit.dr_records where seq = 1",
                      "truncate audit.dr_records"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            lab.sql(statement)
        assert "insert-only" in str(refused.value)
    # ... and from psql
    psql = os.path.join(lab.info["pg_bin"], "psql")
    proc = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(lab.info["primary"]["port"]), "-U", lab.info["superuser"],
                           "-d", lab.info["database"], "-v", "ON_ERROR_STOP=1", "-c",
                           "update audit.dr_records set record = '{}' where seq = 2"],
                          env=dict(os.environ, PGPASSWORD=lab.info["password"]), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=30, check=False)
    assert proc.returncode != 0 and "insert-only: UPDATE refused" in proc.stdout, proc.stdout
    assert [(r[2], r[3]) for r in rows(lab)] == [(1, "started"), (2, "completed")]

    query = run_rr(pg_args(lab, action="query", kind="failover", verify_chain=True))
    assert query["failed"] is False, query
    assert query["chain"] == {"valid": True, "checked": 2, "first_broken": None}
    assert [(r["id"], r["status"]) for r in query["records"]] == [("rb-pg-0001", "completed")]

    # a superuser who drops the trigger and edits a row is still caught by verify_chain
    lab.sql("alter table audit.dr_records disable trigger dr_records_insert_only")
    lab.sql("update audit.dr_records set record = jsonb_set(record, '{reason}', '\"edited\"') where seq = 1")
    lab.sql("alter table audit.dr_records enable trigger dr_records_insert_only")
    broken = run_rr(pg_args(lab, action="query", verify_chain=True))
    assert broken["failed"] is True and broken["error"] == "CHAIN_BROKEN"
    assert broken["chain"]["first_broken"]["id"] == "rb-pg-0001"
    assert broken["chain"]["first_broken"]["where"] == "row %d" % stored[0][0]

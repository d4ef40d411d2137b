# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/restore.yml on a private lab: --check first, then the restore, the safety dump,
the record, writers stopped in HAProxy, the pgBackRest engine, a refused target, and writers
resumed on the restored cluster. Every assertion reads real state (rows of the restored
cluster, the dump through pg_restore, the record file, HAProxy's server state)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import glob
import os
import subprocess
import time

import pytest

from lablib import Lab, haproxy_state, records, run_playbook, stop_pg, wait_until

pytestmark = pytest.mark.lab

NAME = "restore-playbook"
PORT_BASE = 26000
NATIVE_PORT = 26500
PGBACKREST_PORT = 26501


def play_vars(lab, **extra):
    out = {"lab_name": NAME, "lab_port_base": PORT_BASE, "lab_root": lab.root}
    out.update(extra)
    return out


def maint(lab, server):
    return int(lab.servers_state("pg")[server]["srv_admin_state"]) & 0x01


def _in_pgbackrest(lab, segment):
    for _root, _dirs, files in os.walk(os.path.join(lab.info["pgbackrest"]["repo"], "archive")):
        if any(name.startswith(segment) for name in files):
            return True
    return False


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up(NAME, port_base=PORT_BASE)
    yield instance
    instance.down()


@pytest.fixture(scope="module")
def instant(lab):
    """Rows written around a chosen instant; the WAL holding them archived (both archives)."""
    for _row in range(6):
        lab.sql("insert into events (written_at, payload) values (clock_timestamp(), 'restore-before')")
    time.sleep(0.4)
    moment = lab.sql("select clock_timestamp()")[0][0]
    time.sleep(0.4)
    for _row in range(4):
        lab.sql("insert into events (written_at, payload) values (clock_timestamp(), 'restore-after')")
    segment = lab.sql("select pg_walfile_name(pg_current_wal_lsn())")[0][0]
    lab.sql("select pg_switch_wal()")
    wait_until(lambda: os.path.exists(os.path.join(lab.info["wal_archive"], segment)), timeout=60, what="WAL archived")
    wait_until(lambda: _in_pgbackrest(lab, segment), timeout=60, what="WAL in pgBackRest")
    return moment.astimezone(datetime.timezone.utc)


def expected_ids(lab, moment):
    return [r[0] for r in lab.sql("select id from events where written_at <= %s order by id", (moment,))]


def restored_ids(lab, port):
    return [r[0] for r in lab.sql("select id from events order by id", node=str(port))]


@pytest.mark.parametrize("confirm, check", [("some-other-cluster", False), ("", False), ("default", True)])
def test_wrong_or_empty_confirmation_changes_nothing(lab, instant, confirm, check):
    """The AWX survey's confirm_cluster must equal the cluster's name (here the lab's name): a wrong
    one, an empty one (a survey answered with nothing) or the name of another lab is refused before
    anything is planned, stopped, dumped, restored or recorded, also in --check."""
    data_dir = os.path.join(lab.root, "restores", "unconfirmed")
    pg_before = haproxy_state(lab, "pg")
    rows_before = lab.sql("select count(*) from events")[0][0]
    proc = run_playbook("playbooks/restore.yml", play_vars(lab, db_restore_target_time=instant.isoformat(), db_restore_port=26503,
                                                           db_restore_data_dir=data_dir, confirm_cluster=confirm), check=check)
    assert proc.returncode != 0
    assert "confirm_cluster '%s' is not this inventory's cluster: nothing was changed." % confirm in proc.stdout, proc.stdout[-3000:]
    assert "Plan the restore" not in proc.stdout, "the role ran after a refused confirmation"
    assert not os.path.exists(data_dir)
    assert not glob.glob(os.path.join(lab.root, "dumps", "*")), "a dump was written"
    assert records(lab) == [], "a record was written"
    assert haproxy_state(lab, "pg") == pg_before, "HAProxy's pg backend changed"
    assert maint(lab, "primary") == 0
    assert lab.sql("select count(*) from events")[0][0] == rows_before


def test_matching_confirmation_is_accepted(lab, instant):
    dry = run_playbook("playbooks/restore.yml", play_vars(lab, db_restore_target_time=instant.isoformat(), db_restore_port=NATIVE_PORT,
                                                          confirm_cluster=NAME), check=True)
    assert dry.returncode == 0, dry.stdout[-4000:]
    assert "DRY RUN (check mode), nothing will change" in dry.stdout


def test_check_then_restore(lab, instant):
    data_dir = os.path.join(lab.root, "restores", "pitr")
    dumps = os.path.join(lab.root, "dumps")
    target = instant.isoformat()
    variables = play_vars(lab, db_restore_target_time=target, db_restore_port=NATIVE_PORT)

    # --check: the plan is printed, nothing is created, writers keep writing
    dry = run_playbook("playbooks/restore.yml", variables, check=True)
    assert dry.returncode == 0, dry.stdout[-5000:]
    assert "DRY RUN (check mode), nothing will change" in dry.stdout
    assert "backup chosen: base-" in dry.stdout
    assert "complete: True" in dry.stdout and "WAL needed: 0000000100000000000000" in dry.stdout
    assert not os.path.exists(data_dir), "check mode created the data dir"
    assert not glob.glob(os.path.join(dumps, "*")), "check mode wrote a dump"
    assert records(lab) == [], "check mode wrote a record"
    assert maint(lab, "primary") == 0, "check mode stopped writers"

    # the restore
    real = run_playbook("playbooks/restore.yml", variables)
    assert real.returncode == 0, real.stdout[-6000:]
    want = expected_ids(lab, instant)
    assert want and restored_ids(lab, NATIVE_PORT) == want
    payloads = dict(lab.sql("select payload, count(*) from events group by payload", node=str(NATIVE_PORT)))
    assert payloads["restore-before"] == 6 and "restore-after" not in payloads
    assert lab.sql("select pg_is_in_recovery()", node=str(NATIVE_PORT))[0][0] is False
    assert lab.sql("select count(*) from events where payload = 'restore-after'")[0][0] == 4, "the source lost rows"

    # writers stopped: HAProxy's primary is in maintenance, and stays so (no resume asked)
    assert maint(lab, "primary")

    # the safety dump is kept, and pg_restore reads it
    dumps_found = glob.glob(os.path.join(dumps, "appdb-pre-restore-*.dump"))
    assert len(dumps_found) == 1
    listing = subprocess.run([os.path.join(lab.info["pg_bin"], "pg_restore"), "--list", dumps_found[0]], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert listing.returncode == 0, listing.stdout
    assert "TABLE DATA public events" in listing.stdout
    assert os.stat(dumps).st_mode & 0o077 == 0

    # the record: started then completed, with the backup chosen and the dump path
    events = records(lab)
    assert [e["status"] for e in events] == ["started", "completed"]
    assert {e["kind"] for e in events} == {"restore"} and events[0]["id"] == events[1]["id"]
    details = events[1]["details"]
    assert details["dump_path"] == dumps_found[0]
    assert details["backup"]["id"].startswith("base-")
    assert details["proof"]["reached"] is True
    assert details["verification"]["rows"] == len(want)
    assert details["verification"]["newest_at_or_before_target"] is True
    assert details["writers_stopped"]["haproxy_commands"][0] == "set server pg/primary state maint"
    assert events[1]["undo"]["haproxy_commands"] == ["set server pg/primary state ready"]


def test_pgbackrest_engine(lab, instant):
    variables = play_vars(lab, db_restore_engine="pgbackrest", db_restore_target_time=instant.isoformat(),
                          db_restore_port=PGBACKREST_PORT, db_restore_data_dir=os.path.join(lab.root, "restores", "pgbackrest"),
                          db_restore_stop_writers=False, db_restore_safety_dump="none")
    real = run_playbook("playbooks/restore.yml", variables)
    assert real.returncode == 0, real.stdout[-6000:]
    assert restored_ids(lab, PGBACKREST_PORT) == expected_ids(lab, instant)
    stop_pg(lab, variables["db_restore_data_dir"])


def test_target_before_every_backup_is_refused(lab):
    data_dir = os.path.join(lab.root, "restores", "too-old")
    before = len(records(lab))
    proc = run_playbook("playbooks/restore.yml", play_vars(lab, db_restore_target_time="2020-01-01T00:00:00Z", db_restore_port=26502,
                                                           db_restore_data_dir=data_dir))
    assert proc.returncode != 0
    assert "NO_BACKUP_BEFORE_TARGET" in proc.stdout
    assert not os.path.exists(data_dir)
    assert len(records(lab)) == before, "a refused plan wrote a record"


def test_failed_verification_is_recorded(lab, instant):
    # the restore exists already; a verification statement that is false fails the run, and the record says so
    variables = play_vars(lab, db_restore_target_time=instant.isoformat(), db_restore_port=NATIVE_PORT,
                          db_restore_verify_sql=["select count(*) = 0 from events"])
    before = len(records(lab))
    proc = run_playbook("playbooks/restore.yml", variables)
    assert proc.returncode != 0
    assert "Restore failed at 'Check the restored data'" in proc.stdout, proc.stdout[-4000:]
    events = records(lab)[before:]
    assert [e["status"] for e in events] == ["started", "failed"]
    assert events[1]["details"]["failed_task"] == "Check the restored data"
    assert lab.sql("select pg_is_in_recovery()", node=str(NATIVE_PORT))[0][0] is False, "the restored cluster was touched"


def test_resume_writers_on_the_restored_cluster(lab, instant):
    # the same restore again (already done: nothing restored, nothing dumped), then writers resumed
    variables = play_vars(lab, db_restore_target_time=instant.isoformat(), db_restore_port=NATIVE_PORT, db_restore_resume_writers=True)
    dumps_before = sorted(glob.glob(os.path.join(lab.root, "dumps", "*")))
    proc = run_playbook("playbooks/restore.yml", variables)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "restored: False" in proc.stdout
    assert sorted(glob.glob(os.path.join(lab.root, "dumps", "*"))) == dumps_before
    state = lab.servers_state("pg")["primary"]
    assert int(state["srv_admin_state"]) & 0x23 == 0 and state["srv_port"] == str(NATIVE_PORT)
    through = wait_until(lambda: _write_through_haproxy(lab), timeout=15, what="a write through HAProxy")
    assert through == NATIVE_PORT
    assert lab.sql("select count(*) from events where payload = 'after-resume'", node=str(NATIVE_PORT))[0][0] == 1


def _write_through_haproxy(lab):
    try:
        return lab.sql("insert into events (payload) values ('after-resume') returning inet_server_port()",
                       node=str(lab.info["haproxy"]["pg_port"]))[0][0]
    except Exception:  # pylint: disable=broad-except
        return None

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/failback.yml on private labs: failover.yml, then failback.yml, and the lab ends as it began.

The synchronous lab (port base 29000) runs failover then failback with a writer going through
HAProxy the whole time (pg_rewind both ways); on the asynchronous lab (29200) the old primary
took writes after the failover (no fence) and lost its WAL, so pg_rewind fails and the role
re-clones it with pg_basebackup into its data directory, the old one moved aside."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import subprocess
import threading
import time

import psycopg
import pytest

from lablib import Lab, run_playbook, wait_until

pytestmark = pytest.mark.lab

SYNC = {"name": "failback-sync", "port_base": 29000, "synchronous": True}
CLONE = {"name": "failback-diverged", "port_base": 29200, "synchronous": False}


def lab_vars(spec, **extra):
    out = {"lab_name": spec["name"], "lab_port_base": spec["port_base"],
           "lab_root": os.path.join("/var/tmp/resilience-dr", spec["name"])}
    out.update(extra)
    return out


def _run_all(func, items):
    errors = []

    def one(item):
        try:
            func(item)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.fixture(scope="module")
def labs():
    started = {}
    errors = _run_all(lambda spec: started.__setitem__(spec["name"], Lab.up(spec["name"], port_base=spec["port_base"],
                                                                            synchronous=spec["synchronous"])),
                      [SYNC, CLONE])
    try:
        if errors:
            raise errors[0]
        yield started
    finally:
        _run_all(lambda lab: lab.down(), list(started.values()))


def state(lab):
    """Roles, timelines, replication and HAProxy, as a comparable value."""
    out = {}
    for node in ("primary", "replica"):
        try:
            # pg_control's timeline moves at the first checkpoint after a promotion, which may land at
            # any moment: take it now, so that two snapshots compare the cluster, not the checkpointer
            lab.sql("checkpoint", node=node)
            out[node] = lab.sql("select timeline_id, pg_is_in_recovery() from pg_control_checkpoint()", node=node)[0]
        except psycopg.OperationalError:
            out[node] = "down"
    out["pg"] = {name: row["srv_admin_state"] for name, row in lab.servers_state("pg").items()}
    return out


def through_haproxy(lab, payload):
    return lab.sql("insert into events (payload) values (%s) returning id, inet_server_port()", (payload,),
                   node=str(lab.info["haproxy"]["pg_port"]))[0]


def ids(lab, node="primary"):
    return {row[0] for row in lab.sql("select id from events", node=node)}


def streams(lab):
    return lab.sql("select application_name, state, sync_state from pg_stat_replication")


class Writer(object):
    """Inserts through HAProxy in a loop and keeps the ids of the commits that were acknowledged."""

    def __init__(self, lab):
        self.dsn = lab.dsn(str(lab.info["haproxy"]["pg_port"]))
        self.acked = []
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
                self.acked.append(conn.execute("insert into events (payload) values ('writer') returning id").fetchone()[0])
            except psycopg.Error:
                self.errors += 1
                conn = None
                time.sleep(0.05)
            time.sleep(0.01)
        if conn is not None:
            conn.close()

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: len(self.acked) > 10, what="the writer to write")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@pytest.fixture(scope="module")
def clone_run(labs):
    """The re-clone scenario runs in a thread beside the synchronous one (the file stays under
    ~3 minutes); test_failback_by_reclone_keeps_the_old_data_directories checks its outcome."""
    lab = labs[CLONE["name"]]
    result = {}

    def scenario():
        try:
            # a failover without fence: the old primary stays writable and takes writes (split brain) ...
            result["failover"] = run_playbook("playbooks/failover.yml", lab_vars(CLONE, dr_pg_fence="none"))
            if result["failover"].returncode == 0:
                result["diverged"] = {lab.sql("insert into events (payload) values ('split-brain') returning id")[0][0]
                                      for _n in range(5)}
                # ... then it is stopped and loses its WAL: pg_rewind cannot find where it diverged
                subprocess.run(["runuser", "-u", lab.info["os_user"], "--", os.path.join(lab.info["pg_bin"], "pg_ctl"),
                                "-D", lab.info["primary"]["data_dir"], "-m", "fast", "-w", "stop"], check=True, stdout=subprocess.PIPE)
                for segment in glob.glob(os.path.join(lab.info["primary"]["data_dir"], "pg_wal", "0000*")):
                    os.remove(segment)
                result["written"] = {through_haproxy(lab, "between-%d" % n)[0] for n in range(10)}
                result["failback"] = run_playbook("playbooks/failback.yml", lab_vars(CLONE))
        except Exception as exc:  # pylint: disable=broad-except
            result["error"] = exc

    thread = threading.Thread(target=scenario)
    thread.start()
    yield result, thread
    thread.join()


def test_failover_then_failback_with_a_writer_on_a_synchronous_lab(labs, clone_run):  # pylint: disable=unused-argument
    lab = labs[SYNC["name"]]
    records = os.path.join(lab.root, "records", "dr-records.jsonl")
    before_failover = {through_haproxy(lab, "before-failover-%d" % n)[0] for n in range(20)}
    assert streams(lab) == [("lab_replica", "streaming", "sync")]

    with Writer(lab) as writer:
        out = run_playbook("playbooks/failover.yml", lab_vars(SYNC))
        assert out.returncode == 0, out.stdout[-4000:]
        wait_until(lambda: len(writer.acked) > 0 and writer.errors and len(writer.acked) > 40, what="writes after the failover")
        between = {through_haproxy(lab, "between-%d" % n) for n in range(10)}
        assert {port for _id, port in between} == {lab.info["replica"]["port"]}

        # a dry run of the failback changes nothing: roles, timelines, HAProxy, the record file
        snapshot = state(lab)
        with open(records) as handle:
            record_text = handle.read()
        dry = run_playbook("playbooks/failback.yml", lab_vars(SYNC), check=True)
        assert dry.returncode == 0, dry.stdout[-4000:]
        assert "DRY RUN (check mode), nothing changed" in dry.stdout
        assert "plan: resync primary (down) as a replica of port %d" % lab.info["replica"]["port"] in dry.stdout
        assert state(lab) == snapshot
        with open(records) as handle:
            assert handle.read() == record_text

        acked_before_failback = len(writer.acked)
        out = run_playbook("playbooks/failback.yml", lab_vars(SYNC))
        assert out.returncode == 0, out.stdout[-4000:]
        wait_until(lambda: len(writer.acked) > acked_before_failback + 20, what="writes after the failback")
    # writes go through HAProxy to the ORIGINAL primary again
    _id, port = through_haproxy(lab, "after-failback")
    assert port == lab.info["primary"]["port"]
    assert lab.in_recovery("primary") is False and lab.in_recovery("replica") is True
    # every row written before both switches, and every acknowledged row of the writer, is there
    present = ids(lab)
    assert before_failover <= present
    assert {row_id for row_id, _port in between} <= present
    assert set(writer.acked) <= present, sorted(set(writer.acked) - present)[:20]
    # the lab is as it began: the replica streams synchronously again, and has every row
    wait_until(lambda: streams(lab) == [("lab_replica", "streaming", "sync")], what="synchronous streaming")
    wait_until(lambda: ids(lab, "replica") == ids(lab), what="the replica to catch up")
    pg = lab.servers_state("pg")
    assert int(pg["primary"]["srv_admin_state"]) & 0x23 == 0
    assert int(pg["replica"]["srv_admin_state"]) & 0x23
    # no read-only fence and no standby settings left on the primary; the failback slot is gone
    assert lab.sql("show default_transaction_read_only") == [("off",)]
    assert lab.sql("show primary_conninfo") == [("",)]
    assert lab.sql("select slot_name from pg_replication_slots", node="replica") == []
    assert "resynchronised: primary by rewind, replica by rewind" in out.stdout
    assert "data loss 0 bytes" in out.stdout
    with open(records) as handle:
        lines = [json.loads(line) for line in handle]
    failback = [r for r in lines if r["kind"] == "failback"]
    assert [r["status"] for r in failback] == ["started", "completed"]
    assert [r["method"] for r in failback[1]["details"]["resync"]] == ["rewind", "rewind"]
    assert failback[1]["details"]["data_loss_bytes"] == 0
    assert failback[1]["undo"]["active"] == "replica"

    # a second run finds everything in place and changes nothing
    timeline = lab.sql("select timeline_id from pg_control_checkpoint()")[0][0]
    again = run_playbook("playbooks/failback.yml", lab_vars(SYNC))
    assert again.returncode == 0, again.stdout[-4000:]
    assert "mode finish" in again.stdout and "resynchronised: nothing" in again.stdout
    assert "(changed: False)" in again.stdout
    assert lab.sql("select timeline_id from pg_control_checkpoint()")[0][0] == timeline
    assert streams(lab) == [("lab_replica", "streaming", "sync")]


def test_failback_reclones_when_rewind_fails_and_keeps_the_old_data_directory(labs, clone_run):
    lab = labs[CLONE["name"]]
    result, thread = clone_run
    thread.join()
    assert "error" not in result, result.get("error")
    assert result["failover"].returncode == 0, result["failover"].stdout[-4000:]
    written = result["written"]
    out = result["failback"]
    assert out.returncode == 0, out.stdout[-4000:]
    assert "pg_rewind failed" in out.stdout
    assert "resynchronised: primary by clone, replica by rewind" in out.stdout
    _id, port = through_haproxy(lab, "after-failback")
    assert port == lab.info["primary"]["port"]
    # every row of the current primary's timeline is there; the split-brain rows are not (ids
    # overlap: both sides drew from their own copy of the sequence, so compare by payload) ...
    assert {r[0] for r in lab.sql("select id from events where payload like 'between-%'")} == written
    assert len(result["diverged"]) == 5
    assert lab.sql("select count(*) from events where payload = 'split-brain'") == [(0,)]
    wait_until(lambda: streams(lab) == [("lab_replica", "streaming", "async")], what="streaming")
    wait_until(lambda: ids(lab, "replica") == ids(lab), what="the replica to catch up")
    # ... but kept, in the old data directory moved aside (not removed); each node kept its own settings
    pg_dir = os.path.dirname(lab.info["primary"]["data_dir"])
    aside = sorted(name for name in os.listdir(pg_dir) if ".failback-" in name)
    assert [name.split(".failback-")[0] for name in aside] == ["primary"]
    assert os.path.exists(os.path.join(pg_dir, aside[0], "PG_VERSION"))
    with open(os.path.join(lab.root, "records", "dr-records.jsonl")) as handle:
        done = [json.loads(line) for line in handle][-1]["details"]["resync"]
    assert [(r["node"], r["method"], r["rewind_rc"] != 0) for r in done] == [("primary", "clone", True), ("replica", "rewind", False)]
    assert done[0]["moved_aside"] == os.path.join(pg_dir, aside[0])
    for node in ("primary", "replica"):
        with open(os.path.join(lab.info[node]["data_dir"], "lab.conf")) as handle:
            assert "port = %d" % lab.info[node]["port"] in handle.read()

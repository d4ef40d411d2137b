# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider postgres, against real lab instances (PostgreSQL 15).

Three labs come up at once: ``promote-async`` (port_base 21000, asynchronous),
``promote-sync`` (21100, made synchronous) and ``promote-loss`` (21200, asynchronous). Tests on
the async lab run in file order: the ones
that change nothing first, then the concurrent promotion; the data-loss test has its own
lab. Every assertion reads PostgreSQL itself (rows, pg_is_in_recovery,
read-only refusals, postmaster.pid), not only the module's answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lablib import Lab, ROOT, VENV_BIN, ansible_env, wait_until  # noqa: E402  pylint: disable=wrong-import-position

MODULE = "resilience.dr.replica_promote"
ASYNC = dict(name="promote-async", port_base=21000, synchronous=False)
# Lab.up(synchronous=True) hangs here: the role sets synchronous_standby_names on the primary
# before the replica exists, so its sample-data commit waits forever. The sync lab comes up
# asynchronous and is made synchronous with ALTER SYSTEM once the replica streams.
SYNC = dict(name="promote-sync", port_base=21100, synchronous=False)
# a third, untouched async lab for the data-loss test (cheaper than bringing one up again)
LOSS = dict(name="promote-loss", port_base=21200, synchronous=False)

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "playbooks", "lab.yml")),
                                reason="the lab playbook is not there")


def run_module(args, check=False, timeout=300):
    """Run the module through ``ansible`` ad hoc; return its result dict and the raw output.

    (lablib.run_module asks for an ``ansible.builtin.json`` callback that ansible-core does not
    ship; the ``oneline`` callback prints the result as one JSON line.)
    """
    cmd = [os.path.join(VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-m", MODULE, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="oneline", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                      ANSIBLE_DEPRECATION_WARNINGS="0")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, check=False)
    raw = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("localhost | ")]
    assert lines, "no result from ansible (rc=%s):\n%s" % (proc.returncode, raw)
    head, _sep, body = lines[0].partition(" => ")
    result = json.loads(body)
    if "FAILED" in head:
        result["failed"] = True
    result["_raw"] = raw
    return result


def replica_args(lab, **extra):
    args = dict(provider="postgres", pg_login_host="127.0.0.1", pg_port=lab.info["replica"]["port"],
                pg_login_user=lab.info["superuser"], pg_login_password=lab.info["password"],
                pg_database=lab.info["database"], primary_login_host="127.0.0.1",
                primary_port=lab.info["primary"]["port"], max_lag="1h")
    args.update(extra)
    return args


def keys(steps):
    return [(s["action"], s["target"]) for s in steps]


def ids(lab, node):
    return set(r[0] for r in lab.sql("SELECT id FROM events", node=node))


def insert(lab, n=1, payload="x", node="primary"):
    return [r[0] for r in lab.sql(
        "INSERT INTO events (written_at, payload) SELECT now(), %s FROM generate_series(1, %s) RETURNING id",
        (payload, n), node=node)]


def primary_writable(lab):
    return bool(insert(lab, 1, "still-writable"))


def set_replica_conf(lab, name, value):
    """ALTER SYSTEM on the standby (allowed in recovery) and reload."""
    with lab.connect("replica") as conn:
        if value is None:
            conn.execute("ALTER SYSTEM RESET %s" % name)
        else:
            conn.execute("ALTER SYSTEM SET %s = '%s'" % (name, value))
        conn.execute("SELECT pg_reload_conf()")


def _up_all(specs):
    out = {}
    errors = []

    def one(spec):
        try:
            out[spec["name"]] = Lab.up(spec["name"], port_base=spec["port_base"], synchronous=spec["synchronous"])
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for lab in out.values():
            lab.down()
        raise errors[0]
    return out


def make_synchronous(lab):
    name = lab.info["replica"].get("application_name", "lab_replica")
    with lab.connect("primary") as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = '%s'" % name)
        conn.execute("SELECT pg_reload_conf()")
    wait_until(lambda: lab.sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = %s", (name,))
               == [("sync",)], what="synchronous replication")


@pytest.fixture(scope="module")
def labs():
    started = _up_all([ASYNC, SYNC, LOSS])
    make_synchronous(started[SYNC["name"]])
    yield started
    threads = [threading.Thread(target=_down_quietly, args=(lab,)) for lab in started.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _down_quietly(lab):
    try:
        lab.down()
    except AssertionError:
        pass


@pytest.fixture
def alab(labs):
    return labs[ASYNC["name"]]


@pytest.fixture
def slab(labs):
    return labs[SYNC["name"]]


# -- the async lab, nothing changed -------------------------------------------------------------
def _node(lab, node, monkeypatch, use):
    from ansible_collections.resilience.dr.plugins.module_utils import _pg  # pylint: disable=import-outside-toplevel
    from ansible_collections.resilience.dr.plugins.module_utils._promote_postgres import PgNode  # noqa: E501 pylint: disable=import-outside-toplevel
    monkeypatch.setenv(_pg.DRIVER_ENV, use)
    assert _pg.driver() == use
    settings = dict(host="127.0.0.1", port=lab.info[node]["port"], user=lab.info["superuser"],
                    password=lab.info["password"], dbname=lab.info["database"], connect_timeout=5)
    return PgNode(settings, node).open()


def test_libpq_and_psycopg_drivers_read_the_same_values(alab, monkeypatch):
    """replica_promote's queries through the ctypes libpq driver and through psycopg give the
    same keys, the same Python types and the same stable values, on a real primary and replica."""
    from ansible_collections.resilience.dr.plugins.module_utils import _libpq, _pg  # pylint: disable=import-outside-toplevel
    seen = {}
    for use in ("libpq", "psycopg"):
        replica, primary = _node(alab, "replica", monkeypatch, use), _node(alab, "primary", monkeypatch, use)
        try:
            assert isinstance(replica.conn, _libpq.Connection) is (use == "libpq")
            got = dict(replica=replica.state(), primary=primary.state(), data_dir=replica.data_directory(),
                       in_recovery=(replica.in_recovery(), primary.in_recovery()),
                       position=replica.replay_position(), setting=primary.read_only_setting())
            assert replica.try_lock() is True
            other = _node(alab, "replica", monkeypatch, use)
            try:
                assert other.try_lock() is False
                holder = other.lock_holder()
                assert holder["application_name"] == "resilience.dr replica_promote" and isinstance(holder["pid"], int)
            finally:
                other.close()
            row = primary.one("SELECT %s::int8 AS big, %s AS word, %s::bool AS yes, 2.5::numeric AS num, "
                              "'50%%' AS pct, NULL::text AS nothing", (2 ** 40, "it's", True))
            assert row == {"big": 2 ** 40, "word": "it's", "yes": True, "num": __import__("decimal").Decimal("2.5"),
                           "pct": "50%", "nothing": None}
            assert _pg.execute(primary.conn, "SELECT 1 UNION ALL SELECT 2") == 2
            with pytest.raises(Exception) as info:
                primary.one("SELECT * FROM no_such_table_here")
            assert "no_such_table_here" in str(info.value)
            assert primary.one("SELECT 1 AS still_usable") == {"still_usable": 1}
            got["types"] = dict((k, type(v).__name__) for part in ("replica", "primary") for k, v in got[part].items())
            seen[use] = got
        finally:
            replica.close()
            primary.close()
    a, b = seen["libpq"], seen["psycopg"]
    assert a["types"] == b["types"]
    assert a["data_dir"] == b["data_dir"] == alab.info["replica"]["data_dir"]
    assert a["in_recovery"] == b["in_recovery"] == (True, False)
    assert a["setting"] == b["setting"] == "off"
    assert set(a["position"]) == set(b["position"])
    for part in ("replica", "primary"):
        for key in ("in_recovery", "system_identifier", "postmaster_start", "read_only", "server_version", "timeline"):
            assert a[part][key] == b[part][key], (part, key)
    assert isinstance(a["replica"]["replay_age_seconds"], (float, type(None)))


def test_bad_input_is_refused_and_nothing_changes(alab):
    before = ids(alab, "primary")

    out = run_module(replica_args(alab, pg_port=21003, pg_connect_timeout=3))
    assert out.get("failed") and out["error"] == "CONNECTION_FAILED", out
    assert "127.0.0.1:21003" in out["msg"] and "Nothing was changed" in out["msg"]

    wrong = "Wr0ng-Secret-%d" % os.getpid()
    out = run_module(replica_args(alab, pg_login_password=wrong))
    assert out.get("failed") and out["error"] == "AUTH_FAILED", out
    assert "password" in out["msg"]
    assert wrong not in out["_raw"], "the wrong password leaked into the output"

    out = run_module(replica_args(alab, promote_everything=True))
    assert out.get("failed") and "promote_everything" in out["msg"], out

    out = run_module(replica_args(alab, fence="stop"))
    assert out.get("failed") and "primary_data_dir" in out["msg"], out

    assert alab.in_recovery("replica") is True
    assert alab.in_recovery("primary") is False
    assert primary_writable(alab)
    wait_until(lambda: ids(alab, "replica") >= before, what="replica to catch up")
    assert alab.sql("SHOW default_transaction_read_only")[0][0] == "off"


def test_replica_held_back_is_refused_with_lag_too_high(alab):
    alab.sql("SELECT pg_wal_replay_pause()", node="replica")
    try:
        insert(alab, 3000, "y" * 200)  # ~1 MB of WAL the replica receives but does not replay
        wait_until(lambda: alab.sql("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()", node="replica")[0][0],
                   what="WAL received but not replayed")
        out = run_module(replica_args(alab, max_lag_bytes=65536))
        assert out.get("failed") and out["error"] == "LAG_TOO_HIGH", out
        assert out["changed"] is False
        assert out["lag"]["bytes"] > 65536
        assert "allow_data_loss" in out["msg"]
        # nothing changed: the replica is still a (paused) standby, the primary takes writes
        assert alab.in_recovery("replica") is True
        assert alab.sql("SELECT pg_get_wal_replay_pause_state()", node="replica")[0][0] == "paused"
        assert primary_writable(alab)
        assert alab.sql("SHOW default_transaction_read_only")[0][0] == "off"
    finally:
        alab.sql("SELECT pg_wal_replay_resume()", node="replica")
    wait_until(lambda: ids(alab, "replica") == ids(alab, "primary"), what="replica to catch up")


def test_concurrent_runs_one_promotes_one_locked_and_the_check_plan_is_the_real_one(alab):
    args = replica_args(alab, fence="read_only", verify_write=True)
    dry = run_module(args, check=True)
    assert not dry.get("failed"), dry
    assert dry["changed"] is True and dry["check_mode"] is True
    planned = keys(dry["steps"])
    assert [step[0] for step in planned] == ["fence_read_only", "wait_for_replay", "promote",
                                             "wait_for_promotion", "verify_write"]
    assert alab.in_recovery("replica") is True, "check mode promoted"
    assert alab.sql("SHOW default_transaction_read_only")[0][0] == "off", "check mode fenced"

    # a delayed replica keeps the first run busy in wait_for_replay while the second one starts
    set_replica_conf(alab, "recovery_min_apply_delay", "4s")
    committed = set(insert(alab, 25, "before-failover"))
    results = []

    def go():
        results.append(run_module(args))

    threads = [threading.Thread(target=go) for _run in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join()
    winners = [r for r in results if not r.get("failed")]
    losers = [r for r in results if r.get("failed")]
    assert len(winners) == 1 and len(losers) == 1, results
    won, lost = winners[0], losers[0]
    assert lost["error"] == "LOCKED", lost
    assert lost["changed"] is False
    assert won["changed"] is True and won["promoted"] is True
    assert keys(won["steps"]) == planned, "check mode listed other steps than the real run took"
    assert won["wait_for_replay"]["reached"] is True
    assert won["wait_for_replay"]["waited_seconds"] > 0.5
    assert won["timeline_after"] == won["timeline_before"] + 1
    assert won["data_loss_bytes"] == 0
    assert won["fence"]["status"] == "fenced"

    # real state: the replica is a primary on a new timeline with every committed row
    assert alab.in_recovery("replica") is False
    new_tli = int(alab.sql("SELECT pg_walfile_name(pg_current_wal_lsn())", node="replica")[0][0][:8], 16)
    assert new_tli == won["timeline_after"]
    assert committed <= ids(alab, "replica")
    assert ids(alab, "replica") == ids(alab, "primary")
    row = alab.sql("SELECT id FROM resilience_dr_promote_check WHERE id = %s", (won["verify_write"]["id"],), node="replica")
    assert row, "the verify_write row is not in the promoted server"
    # the old primary accepts no writes
    with pytest.raises(Exception) as info:
        insert(alab, 1, "after-failover")
    assert "read-only" in str(info.value)

    again = run_module(args)
    assert not again.get("failed"), again
    assert again["changed"] is False and again["steps"] == [] and again["already_primary"] is True
    dry_again = run_module(args, check=True)
    assert dry_again["changed"] is False and dry_again["steps"] == []
    assert ids(alab, "replica") == ids(alab, "primary")


# -- the sync lab: a writer during the failover, fence=stop ----------------------------------
def test_sync_failover_with_a_writer_loses_no_acknowledged_row_and_stops_the_old_primary(slab):
    import psycopg  # pylint: disable=import-outside-toplevel

    acked = []
    stop = threading.Event()
    dsn = slab.dsn(str(slab.info["haproxy"]["pg_port"]))

    def writer():
        conn = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(dsn, autocommit=True, connect_timeout=2)
                acked.append(conn.execute("INSERT INTO events (written_at, payload) VALUES (now(), 'writer') "
                                          "RETURNING id").fetchone()[0])
            except psycopg.Error:
                conn = None
                time.sleep(0.05)
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(acked) > 20, what="the writer to write")
        args = replica_args(slab, fence="stop", primary_data_dir=slab.info["primary"]["data_dir"],
                            pg_bin_dir=slab.info["pg_bin"], primary_os_user=slab.info["os_user"])
        out = run_module(args)
    finally:
        stop.set()
        thread.join()
    assert not out.get("failed"), out
    assert out["promoted"] is True
    assert [s["action"] for s in out["steps"]] == ["fence_stop", "wait_for_replay", "promote", "wait_for_promotion"]
    assert out["data_loss_bytes"] == 0, out["data_loss_note"]
    # the last LSN the loss is measured from is the old primary's shutdown checkpoint
    control = subprocess.run([os.path.join(slab.info["pg_bin"], "pg_controldata"), slab.info["primary"]["data_dir"]],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert "Database cluster state:               shut down" in control
    assert "Latest checkpoint location:           %s" % out["old_primary_last_lsn"] in control
    assert acked, "the writer never wrote"
    # every acknowledged row is on the promoted replica
    assert set(acked) <= ids(slab, "replica")
    # the old primary is down and takes nothing
    assert not os.path.exists(os.path.join(slab.info["primary"]["data_dir"], "postmaster.pid"))
    with pytest.raises(Exception):
        insert(slab, 1, "after-failover")
    again = run_module(args)
    assert not again.get("failed") and again["changed"] is False, again
    assert again["fence"]["status"] == "skipped"


# -- async data loss, on its own async lab -----------------------------------------------------
def test_async_data_loss_reported_matches_the_rows_missing(labs):
    lab = labs[LOSS["name"]]
    kept = set(insert(lab, 10, "replicated"))
    wait_until(lambda: kept <= ids(lab, "replica"), what="replication")
    # cut the replica off its primary, then commit rows it will never receive
    set_replica_conf(lab, "primary_conninfo", "")
    wait_until(lambda: not lab.sql("SELECT count(*) FROM pg_stat_replication")[0][0], what="walsender to go")
    lsn_cut = lab.sql("SELECT pg_current_wal_lsn()::text")[0][0]
    lost = set(insert(lab, 40, "never-replicated"))
    lsn_end = lab.sql("SELECT pg_current_wal_lsn()::text")[0][0]

    args = replica_args(lab, max_lag_bytes=1024)
    refused = run_module(args)
    assert refused.get("failed") and refused["error"] == "LAG_TOO_HIGH", refused
    assert lab.in_recovery("replica") is True and primary_writable(lab)
    lost |= set(r[0] for r in lab.sql("SELECT id FROM events WHERE payload = 'still-writable'"))

    out = run_module(dict(args, allow_data_loss=True, reason="drill: async loss"))
    assert not out.get("failed"), out
    assert out["promoted"] is True and out["lag"]["overridden"] is True

    on_old, on_new = ids(lab, "primary"), ids(lab, "replica")
    missing = on_old - on_new
    assert missing == lost, "rows missing on the promoted replica are not exactly the unreplicated ones"
    assert kept <= on_new
    # the reported loss covers the WAL of the missing rows and matches PostgreSQL's own diff
    replayed = out["replayed_lsn_at_promotion"]
    assert lab.sql("SELECT pg_wal_lsn_diff(%s, %s)", (lsn_cut, replayed))[0][0] >= 0
    assert out["data_loss_bytes"] >= int(lab.sql("SELECT pg_wal_lsn_diff(%s, %s)", (lsn_end, lsn_cut))[0][0])
    assert out["data_loss_bytes"] == int(lab.sql("SELECT pg_wal_lsn_diff(%s, %s)",
                                                 (out["old_primary_last_lsn"], replayed))[0][0])
    assert out["data_loss_bytes"] > 0

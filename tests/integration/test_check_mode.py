# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`--check` on every runbook leaves the lab exactly as it was (issue 8, done-when 3).

One private lab; before and after each dry run a snapshot (lablib.snapshot) reads what a runbook
could change: PostgreSQL roles, timelines (live and pg_control), fence and sync settings, the
row count of every table; HAProxy's pg and web backends (weights, admin state, address); nginx's
config files and the record file by hash; the base backups, the WAL archive, the data dirs and
the lab folder by listing. The dry run must succeed (it plans) and the snapshot must not move.
Failback is dry-run after one real failover, the only state it makes sense in. The WAL archive may
only gain segments of the current timeline (the lab's archive_timeout archives the little WAL an
idle server writes now and then): nothing removed, no new timeline, no new backup label."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
import time

import pytest

from lablib import Lab, run_playbook, settle, snapshot, snapshot_diff

pytestmark = pytest.mark.lab

NAME = "check-mode"
PORT_BASE = 32000


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up(NAME, port_base=PORT_BASE)
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture(scope="module")
def instant(lab):
    """A restore target: rows before and after it, the WAL holding them archived."""
    lab.sql("insert into events (written_at, payload) select clock_timestamp(), 'check-before-' || g from generate_series(1, 5) g")
    time.sleep(0.3)
    moment = lab.sql("select clock_timestamp()")[0][0]
    time.sleep(0.3)
    lab.sql("insert into events (written_at, payload) select clock_timestamp(), 'check-after-' || g from generate_series(1, 5) g")
    settle(lab)
    return moment.astimezone(datetime.timezone.utc).isoformat()


def play_vars(lab, **extra):
    out = {"lab_name": NAME, "lab_port_base": PORT_BASE, "lab_root": lab.root}
    out.update(extra)
    return out


def dry_run(lab, playbook, extra, expect):
    before = snapshot(lab)
    proc = run_playbook(playbook, play_vars(lab, **extra), check=True)
    after = snapshot(lab)
    assert proc.returncode == 0, "%s --check failed instead of planning:\n%s" % (playbook, proc.stdout[-5000:])
    assert expect in proc.stdout, "%s --check did not show its plan (%r):\n%s" % (playbook, expect, proc.stdout[-3000:])
    assert archive_unchanged(before["wal_archive"], after["wal_archive"]), "%s --check changed the WAL archive: %s -> %s" % (
        playbook, before["wal_archive"], after["wal_archive"])
    before["wal_archive"] = after["wal_archive"]
    assert after == before, "%s --check changed the lab: %s" % (playbook, snapshot_diff(before, after))
    return proc


def archive_unchanged(before, after):
    """Nothing removed from the WAL archive, no new timeline history or backup label; the only
    new files allowed are WAL segments of the timeline being written (the lab's archive_timeout
    of 60 s archives a segment now and then, whenever the idle server wrote a little WAL)."""
    timeline = max(name[:8] for name in before if len(name) == 24)
    return set(before) <= set(after) and all(re.match(r"^%s[0-9A-F]{16}$" % timeline, name) for name in set(after) - set(before))


CASES = [
    ("playbooks/failover.yml", {}, "DRY RUN (check mode), nothing changed"),
    ("playbooks/rollback.yml", {"rollback_level": "traffic", "rollback_traffic_active": "green"}, "DRY RUN (check mode), nothing changed"),
    ("playbooks/rollback.yml", {"rollback_level": "service"}, "DRY RUN (check mode), nothing changed"),
    ("playbooks/rollback.yml", {"rollback_level": "data"}, "DRY RUN (check mode), nothing will change"),
    ("playbooks/rollback.yml", {"rollback_level": "full", "rollback_traffic_active": "green"}, "DRY RUN (check mode), nothing will change"),
    ("playbooks/restore.yml", {}, "DRY RUN (check mode), nothing will change"),
    ("playbooks/verify_backups.yml", {}, "check mode: same read-only checks"),
    ("playbooks/recovery_drill.yml", {}, "DRY RUN (check mode): no restore, no record, no report"),
]


@pytest.mark.parametrize("playbook, extra, expect", CASES,
                         ids=["failover", "rollback-traffic", "rollback-service", "rollback-data", "rollback-full", "restore",
                              "verify_backups", "recovery_drill"])
def test_check_mode_changes_nothing(lab, instant, playbook, extra, expect):
    variables = dict(extra)
    if playbook == "playbooks/restore.yml" or extra.get("rollback_level") in ("data", "full"):
        variables["db_restore_target_time"] = instant
    if extra.get("rollback_level") == "full":
        variables["rollback_maintenance_file"] = lab.root + "/maintenance-on"  # the flag must not appear (tree listing)
    dry_run(lab, playbook, variables, expect)


def test_failback_check_after_a_real_failover(lab, instant):  # pylint: disable=unused-argument
    real = run_playbook("playbooks/failover.yml", play_vars(lab))
    assert real.returncode == 0, real.stdout[-5000:]
    settle(lab)
    state = snapshot(lab)
    assert state["postgres"]["primary"] == "down" and state["postgres"]["replica"]["in_recovery"] is False
    assert state["postgres"]["replica"]["timeline"] == 2
    proc = dry_run(lab, "playbooks/failback.yml", {}, "DRY RUN (check mode), nothing changed")
    assert "plan: resync primary (down) as a replica of port %d" % lab.info["replica"]["port"] in proc.stdout

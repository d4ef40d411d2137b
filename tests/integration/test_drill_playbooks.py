# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/verify_backups.yml and playbooks/recovery_drill.yml on one private lab instance."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import hashlib
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from lablib import Lab, run_playbook, wait_until

pytestmark = pytest.mark.lab

PORT_BASE = 25100
NAME = "drills"


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up(NAME, port_base=PORT_BASE)
    yield instance
    instance.down()


def play_vars(lab, **extra):
    out = {
        "lab_name": NAME, "lab_port_base": PORT_BASE, "lab_root": lab.root,
        # the lab inventory has no backup_clusters group: its one host is in `databases`
        "verify_backups_hosts": "databases", "recovery_drill_hosts": "databases",
        "recovery_drill_scratch_dir": os.path.join(lab.root, "scratch"),
    }
    out.update(extra)
    return out


def records_path(lab):
    return os.path.join(lab.root, "records", "dr-records.jsonl")


def digest(path):
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def archive_now(lab):
    """Switch WAL and wait until the segment is in the archive: the drill can restore it."""
    segment = lab.sql("select pg_walfile_name(pg_switch_wal())")[0][0]
    wait_until(lambda: os.path.exists(os.path.join(lab.info["wal_archive"], segment)), timeout=30, what="archived " + segment)
    return segment


def test_verify_backups_fresh_lab(lab):
    records = records_path(lab)
    before = digest(records)
    real = run_playbook("playbooks/verify_backups.yml", play_vars(lab))
    assert real.returncode == 0, real.stdout[-4000:]
    assert "backup verification: 1 of 1 cluster(s) OK" in real.stdout
    # the backup it names is the one on disk
    on_disk = sorted(os.listdir(lab.info["base_backups"]))
    assert len(on_disk) == 1 and ("%s | OK | %s" % (NAME, on_disk[0])) in real.stdout
    assert digest(records) == before


def test_verify_backups_names_broken_and_stale_cluster(lab):
    copy = os.path.join(lab.root, "wal_archive_copy")
    shutil.copytree(lab.info["wal_archive"], copy)
    try:
        segments = sorted(f for f in os.listdir(copy) if re.match(r"^[0-9A-F]{24}$", f))
        # a segment after the backup's start one (the backup starts at the 4th segment in the lab)
        victim = segments[-2]
        os.remove(os.path.join(copy, victim))
        broken = run_playbook("playbooks/verify_backups.yml", play_vars(lab, dr_wal_archive=copy))
        assert broken.returncode != 0, broken.stdout[-4000:]
        failure = [line for line in broken.stdout.splitlines() if "Backups NOT OK on 1 of 1 cluster(s)" in line]
        assert failure, broken.stdout[-4000:]
        assert "%s (lab-local): BROKEN" % NAME in failure[0]
        assert victim + " missing" in failure[0]
        # the lab's own archive is whole: the same playbook passes on it
        assert os.path.exists(os.path.join(lab.info["wal_archive"], victim))
    finally:
        shutil.rmtree(copy)

    stale = run_playbook("playbooks/verify_backups.yml", play_vars(lab, dr_backup_max_age="1s"))
    assert stale.returncode != 0
    assert re.search(r"%s \(lab-local\): STALE - max_age: newest backup is [0-9.]+s old" % NAME, stale.stdout), stale.stdout[-4000:]


def test_recovery_drill_twice(lab):
    records = records_path(lab)
    scratch = os.path.join(lab.root, "scratch")
    os.makedirs(scratch, exist_ok=True)
    reports = os.path.join(lab.root, "reports")

    lab.sql("insert into events (payload) select 'drill-' || g from generate_series(1, 50) g")
    archive_now(lab)
    rows = lab.sql("select count(*) from events")[0][0]
    assert rows == 150

    before = digest(records)
    dry = run_playbook("playbooks/recovery_drill.yml", play_vars(lab), check=True)
    assert dry.returncode == 0, dry.stdout[-4000:]
    assert "DRY RUN (check mode)" in dry.stdout
    assert digest(records) == before, "check mode changed the record file"
    assert not os.path.exists(os.path.join(reports, "drills.json")), "check mode wrote a report"

    first = run_playbook("playbooks/recovery_drill.yml", play_vars(lab))
    assert first.returncode == 0, first.stdout[-5000:]
    lab.sql("insert into events (payload) values ('between drills')")
    archive_now(lab)
    second = run_playbook("playbooks/recovery_drill.yml", play_vars(lab))
    assert second.returncode == 0, second.stdout[-5000:]
    # the scratch copies are gone
    assert os.listdir(scratch) == []

    with open(records) as handle:
        events = [json.loads(line) for line in handle]
    drills = [e for e in events if e["kind"] == "drill"]
    assert [e["status"] for e in drills] == ["started", "completed", "started", "completed"]
    final = [e for e in drills if e["status"] == "completed"]
    assert len({e["id"] for e in final}) == 2
    for event, expected_rows in zip(final, (150, 151)):
        assert event["objectives"]["rto"] == "15m" and event["objectives"]["rpo"] == "5m"   # tier critical
        assert 0 < event["rto_seconds"] < 60 and event["rto_met"] is True
        assert 0 <= event["rpo_seconds"] < 300 and event["rpo_met"] is True
        # the restored copy held every archived row
        queries = {q["name"]: q for q in event["details"]["queries"]}
        assert queries["events rows"]["value"] == expected_rows
        assert event["details"]["restore"]["scratch_removed"] is True
        assert event["details"]["tier"] == "critical" and event["details"]["cluster"] == NAME

    with open(os.path.join(reports, "drills.json")) as handle:
        report = json.load(handle)
    assert report["count"] == 2
    for row, event in zip(report["drills"], final):
        assert row["id"] == event["id"]
        assert row["status"] == "completed"
        assert row["rto_seconds"] == event["rto_seconds"] and row["rpo_seconds"] == event["rpo_seconds"]
        assert row["rto_objective_seconds"] == 900.0 and row["rpo_objective_seconds"] == 300.0

    with open(os.path.join(reports, "drills.md")) as handle:
        markdown = handle.read()
    assert all(("| %s | %s | critical | completed |" % (e["id"], NAME)) in markdown for e in final)

    with open(os.path.join(reports, "drills.html")) as handle:
        html = handle.read()
    assert "<script" not in html and "<link" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    charts = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(charts) == 2
    for chart, kind in zip(charts, ("rto", "rpo")):
        svg = ET.fromstring(chart)
        ns = {"s": "http://www.w3.org/2000/svg"}
        bars = svg.findall(".//s:rect[@data-kind='%s']" % kind, ns)
        assert [b.get("data-drill") for b in bars] == [e["id"] for e in final]
        assert [float(b.get("data-seconds")) for b in bars] == [e[kind + "_seconds"] for e in final]
        marks = svg.findall(".//s:line[@class='objective']", ns)
        assert [m.get("data-drill") for m in marks] == [e["id"] for e in final]
        # the objective line sits above the bar (smaller y) since the objective was met
        for rect, mark in zip(bars, marks):
            assert float(mark.get("y1")) < float(rect.get("y"))

    # check mode again, on a record file that now holds drills: untouched
    before = digest(records)
    dry = run_playbook("playbooks/recovery_drill.yml", play_vars(lab), check=True)
    assert dry.returncode == 0, dry.stdout[-4000:]
    vdry = run_playbook("playbooks/verify_backups.yml", play_vars(lab), check=True)
    assert vdry.returncode == 0, vdry.stdout[-4000:]
    assert "backup verification (check mode: same read-only checks): 1 of 1 cluster(s) OK" in vdry.stdout
    assert digest(records) == before
    assert not glob.glob(os.path.join(scratch, "*"))

    # a drill whose proof fails is recorded as failed, reported, and fails the run
    impossible = [{"name": "events rows", "database": "appdb", "sql": "select count(*) from events", "expect": {"min": 1000000}}]
    bad = run_playbook("playbooks/recovery_drill.yml", play_vars(lab, recovery_drill_verify_queries=impossible))
    assert bad.returncode != 0
    assert re.search(r"Recovery drill drill-%s-\S+ of %s FAILED: test_restore: .*events rows" % (NAME, NAME), bad.stdout), bad.stdout[-4000:]
    with open(records) as handle:
        last = [json.loads(line) for line in handle][-1]
    assert last["kind"] == "drill" and last["status"] == "failed"
    assert last["details"]["queries"][0]["value"] == 151 and last["details"]["queries"][0]["met"] is False
    assert os.listdir(scratch) == []
    with open(os.path.join(reports, "drills.json")) as handle:
        report = json.load(handle)
    assert [d["status"] for d in report["drills"]] == ["completed", "completed", "failed"]
    assert report["drills"][2]["id"] == last["id"] and report["drills"][2]["failures"]
    with open(os.path.join(reports, "drills.html")) as handle:
        assert 'data-drill="%s"' % last["id"] in handle.read()

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resilience.dr.timeline callback driven with stand-in task/host/result objects."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import time

from ansible_collections.resilience.dr.plugins.callback.timeline import CallbackModule


class Named(object):
    def __init__(self, name, uuid=None, action="ansible.builtin.command"):
        self.name = name
        self._uuid = uuid or name
        self.action = action

    def get_name(self):
        return self.name


class Playbook(object):
    _file_name = "/somewhere/failover.yml"


class Result(object):
    def __init__(self, task, host, result):
        self._task = task
        self._host = host
        self._result = result


class Display(object):
    def __init__(self):
        self.out = []
        self.warnings = []

    def display(self, text, *args, **kwargs):
        self.out.append(text)

    def warning(self, text, *args, **kwargs):
        self.warnings.append(text)

    def __getattr__(self, name):
        return lambda *a, **k: None


def make(path, **options):
    cb = CallbackModule()
    cb._display = Display()
    opts = {"timeline_file": path, "summary": True, "summary_limit": 0}
    opts.update(options)
    cb._plugin_options = opts
    cb.path = path
    return cb


def run_task(cb, task, hosts, sleep=0.0, result=None, status="ok"):
    cb.v2_playbook_on_task_start(task, False)
    for host in hosts:
        cb.v2_runner_on_start(host, task)
    time.sleep(sleep)
    for host in hosts:
        res = Result(task, host, dict(result or {}))
        if status == "failed":
            cb.v2_runner_on_failed(res)
        elif status == "ignored":
            cb.v2_runner_on_failed(res, ignore_errors=True)
        elif status == "skipped":
            cb.v2_runner_on_skipped(res)
        else:
            cb.v2_runner_on_ok(res)


def test_timeline_file_grows_after_every_task_and_summary_prints(tmp_path):
    path = str(tmp_path / "out" / "timeline.json")
    cb = make(path)
    db1, db2 = Named("db1"), Named("db2")
    cb.v2_playbook_on_start(Playbook())
    with open(path) as handle:
        assert json.load(handle)["tasks"] == []
    cb.v2_playbook_on_play_start(Named("Fail over"))
    run_task(cb, Named("Stop writers"), [db1], sleep=0.2, result={"changed": True})
    with open(path) as handle:
        partial = json.load(handle)
    assert [t["task"] for t in partial["tasks"]] == ["Stop writers"]
    run_task(cb, Named("Promote"), [db1, db2], sleep=0.1)
    run_task(cb, Named("Optional"), [db2], status="skipped")
    run_task(cb, Named("Probe"), [db2], status="ignored")
    cb.v2_playbook_on_stats(None)

    with open(path) as handle:
        data = json.load(handle)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert data["playbook"] == "failover.yml"
    assert [(t["task"], t["host"], t["status"]) for t in data["tasks"]] == [
        ("Stop writers", "db1", "changed"), ("Promote", "db1", "ok"), ("Promote", "db2", "ok"),
        ("Optional", "db2", "skipped"), ("Probe", "db2", "ignored")]
    assert data["tasks"][0]["seconds"] >= 0.2
    assert data["tasks"][1]["seconds"] >= 0.1
    assert data["tasks"][0]["play"] == "Fail over"
    assert data["tasks"][0]["started_at"].endswith("Z")
    assert data["total_seconds"] >= 0.3

    text = cb._display.out[-1]
    assert "TIMELINE" in text
    lines = text.splitlines()
    assert any(line.endswith("Stop writers") and "changed" in line for line in lines)
    promote = [line for line in lines if line.endswith("Promote")]
    assert len(promote) == 1 and promote[0].split()[2] == "2"  # one row, two hosts
    assert "total for 4 task(s)" in lines[-1] and path in lines[-1]


def test_summary_limit_keeps_the_slowest(tmp_path):
    cb = make(str(tmp_path / "t.json"), summary_limit=1)
    cb.v2_playbook_on_start(Playbook())
    cb.v2_playbook_on_play_start(Named("p"))
    host = Named("h")
    run_task(cb, Named("fast"), [host])
    run_task(cb, Named("slow"), [host], sleep=0.15)
    text = cb.summary()
    assert "slow" in text and "  fast" not in text
    assert "(1 faster tasks not shown)" in text


def test_same_task_name_again_is_a_new_row(tmp_path):
    cb = make(None)
    cb.v2_playbook_on_start(Playbook())
    cb.v2_playbook_on_play_start(Named("p"))
    host = Named("h")
    run_task(cb, Named("check", uuid="a"), [host])
    run_task(cb, Named("check", uuid="b"), [host], status="failed")
    rows = cb.rows()
    assert [(r["task"], r["status"]) for r in rows] == [("check", "ok"), ("check", "failed")]
    assert not os.listdir(str(tmp_path))  # no file without timeline_file


def test_unwritable_file_warns_once(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cb = make(str(blocker / "sub" / "timeline.json"))
    cb.v2_playbook_on_start(Playbook())
    run_task(cb, Named("t"), [Named("h")])
    assert len(cb._display.warnings) == 1

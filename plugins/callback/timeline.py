# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: timeline
type: aggregate
short_description: Times every task of a runbook, prints a summary and writes the timeline to a JSON file
version_added: 0.1.0
author:
  - resilience.dr contributors (!UNKNOWN)
description:
  - Records, for every task and host, the task name, the host, when it started, how many
    seconds it took and how it ended (V(ok), V(changed), V(failed), V(ignored), V(skipped),
    V(unreachable)).
  - Prints a short table at the end of the playbook, one row per task (the slowest host's
    seconds), with the total.
  - Writes the timeline as JSON to O(timeline_file) after every task, so a task of the same
    playbook can attach it to a record; M(resilience.dr.rollback_record) does that with its
    C(timeline_file) option. A failover's recovery time is then broken down by step
    without hand work.
  - The file is rewritten at the start of each playbook, atomically, with mode 0600.
requirements:
  - Enabled in C(ansible.cfg) (C(callbacks_enabled = resilience.dr.timeline)) or with
    E(ANSIBLE_CALLBACKS_ENABLED=resilience.dr.timeline).
options:
  timeline_file:
    description:
      - JSON file the timeline is written to. Nothing is written when unset.
    type: path
    env:
      - name: RESILIENCE_TIMELINE_FILE
    ini:
      - section: callback_timeline
        key: timeline_file
  summary:
    description:
      - Print the summary table at the end of the playbook.
    type: bool
    default: true
    env:
      - name: RESILIENCE_TIMELINE_SUMMARY
    ini:
      - section: callback_timeline
        key: summary
  summary_limit:
    description:
      - Print only the N slowest tasks (still in the order they ran); 0 prints all.
    type: int
    default: 0
    env:
      - name: RESILIENCE_TIMELINE_SUMMARY_LIMIT
    ini:
      - section: callback_timeline
        key: summary_limit
"""

import datetime
import json
import os
import tempfile
import time

from ansible.plugins.callback import CallbackBase

_RANK = {"skipped": 0, "ok": 1, "changed": 2, "ignored": 3, "unreachable": 4, "failed": 5}


def _now_iso():
    text = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] + "Z"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "resilience.dr.timeline"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display=display)
        self.playbook = None
        self.play = None
        self.started_at = None
        self.started = None
        self.tasks = []
        self.task_start = {}
        self.host_start = {}
        self.path = None
        self.write_error = None

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super(CallbackModule, self).set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.path = self.get_option("timeline_file")

    # -- the file --------------------------------------------------------------------
    def timeline(self):
        return {
            "playbook": self.playbook,
            "started_at": self.started_at,
            "updated_at": _now_iso(),
            "total_seconds": round(time.monotonic() - self.started, 3) if self.started is not None else None,
            "tasks": self.tasks,
        }

    def _write(self):
        if not self.path:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder, 0o700)
            fd, tmp = tempfile.mkstemp(prefix=".timeline-", dir=folder)
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(self.timeline(), handle, indent=1, sort_keys=True)
                    handle.write("\n")
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except Exception:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        except (IOError, OSError) as exc:
            if self.write_error is None:
                self.write_error = str(exc)
                self._display.warning("resilience.dr.timeline cannot write %s: %s" % (self.path, exc))

    # -- playbook events -------------------------------------------------------------
    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.basename(getattr(playbook, "_file_name", "") or "") or None
        self.started_at = _now_iso()
        self.started = time.monotonic()
        self.tasks = []
        self._write()

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name().strip()

    def _task_started(self, task):
        self.task_start[task._uuid] = (time.monotonic(), _now_iso())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_started(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_started(task)

    def v2_runner_on_start(self, host, task):
        self.host_start[(task._uuid, host.get_name())] = (time.monotonic(), _now_iso())

    def _record(self, result, status):
        task = result._task
        host = result._host.get_name()
        start = self.host_start.pop((task._uuid, host), None) or self.task_start.get(task._uuid)
        if start is None:
            start = (time.monotonic(), _now_iso())
        self.tasks.append({
            "play": self.play,
            "task": task.get_name().strip(),
            "action": task.action,
            "host": host,
            "started_at": start[1],
            "seconds": round(time.monotonic() - start[0], 3),
            "status": status,
        })
        self._write()

    def v2_runner_on_ok(self, result):
        self._record(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        self._write()
        if self.get_option("summary"):
            self._display.display(self.summary())

    # -- the table ---------------------------------------------------------------------
    def rows(self):
        """One row per task run, in order: slowest host's seconds, worst status. Results of one
        task arrive together; the same task name later (a second play, a loop of includes)
        gives a new row."""
        rows = []
        for entry in self.tasks:
            key = (entry["play"], entry["task"])
            row = rows[-1] if rows else None
            if row is None or row["key"] != key or entry["host"] in row["hosts"]:
                row = {"key": key, "task": entry["task"], "seconds": entry["seconds"], "status": entry["status"],
                       "hosts": set()}
                rows.append(row)
            row["hosts"].add(entry["host"])
            row["seconds"] = max(row["seconds"], entry["seconds"])
            if _RANK.get(entry["status"], 0) > _RANK.get(row["status"], 0):
                row["status"] = entry["status"]
        return rows

    def summary(self):
        rows = self.rows()
        limit = self.get_option("summary_limit") or 0
        shown = rows
        if limit and len(rows) > limit:
            keep = set(id(r) for r in sorted(rows, key=lambda r: r["seconds"], reverse=True)[:limit])
            shown = [r for r in rows if id(r) in keep]
        total = round(time.monotonic() - self.started, 3) if self.started is not None else 0.0
        width = min(60, max([len(r["task"]) for r in shown] + [4]))
        lines = ["", "TIMELINE (resilience.dr.timeline) %s" % ("*" * 40),
                 "%8s  %-11s %5s  %s" % ("seconds", "status", "hosts", "task")]
        for row in shown:
            name = row["task"] if len(row["task"]) <= width else row["task"][:width - 3] + "..."
            lines.append("%8.3f  %-11s %5d  %s" % (row["seconds"], row["status"], len(row["hosts"]), name))
        if len(shown) < len(rows):
            lines.append("(%d faster tasks not shown)" % (len(rows) - len(shown)))
        tail = "%8.3f  total for %d task(s)" % (total, len(rows))
        if self.path:
            tail += "; timeline in %s" % self.path
        lines.append(tail)
        return "\n".join(lines)

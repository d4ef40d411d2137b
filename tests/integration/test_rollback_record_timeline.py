# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A runbook played with the resilience.dr.timeline callback ends with rollback_record
attaching the timeline: the record in the file holds each task's seconds."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import textwrap

from lablib import run_playbook

PLAYBOOK = textwrap.dedent("""\
    - name: Fail over (a stand-in runbook)
      hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Record the failover as started
          resilience.dr.rollback_record:
            path: "{{ record_path }}"
            kind: failover
            status: started
            environment: lab
            objectives: {rto: 1m}
          register: record

        - name: Stop the writers
          ansible.builtin.command: sleep 0.6
          changed_when: true

        - name: Promote the replica
          ansible.builtin.command: sleep 0.3
          changed_when: true

        - name: Notify nobody
          ansible.builtin.debug:
            msg: skipped
          when: false

        - name: Record the failover as completed, with the timeline
          resilience.dr.rollback_record:
            path: "{{ record_path }}"
            id: "{{ record.id }}"
            status: completed
            timeline_file: "{{ lookup('ansible.builtin.env', 'RESILIENCE_TIMELINE_FILE') }}"
    """)


def test_timeline_reaches_the_record(tmp_path):
    playbook = tmp_path / "failover.yml"
    playbook.write_text(PLAYBOOK)
    timeline = tmp_path / "timeline.json"
    records = tmp_path / "records.jsonl"
    proc = run_playbook(str(playbook), {"record_path": str(records)}, inventory="localhost,",
                        env={"ANSIBLE_CALLBACKS_ENABLED": "resilience.dr.timeline",
                             "RESILIENCE_TIMELINE_FILE": str(timeline)}, timeout=300)
    assert proc.returncode == 0, proc.stdout

    # the summary printed at the end, one row per task with its seconds
    summary = proc.stdout[proc.stdout.index("TIMELINE (resilience.dr.timeline)"):].splitlines()
    rows = dict((line.split(None, 3)[3], line.split()) for line in summary[2:] if len(line.split(None, 3)) == 4
                and not line.strip().startswith("(") and "total for" not in line)
    assert float(rows["Stop the writers"][0]) >= 0.6
    assert float(rows["Promote the replica"][0]) >= 0.3
    assert rows["Notify nobody"][1] == "skipped"
    assert "total for 5 task(s)" in proc.stdout

    # the record written at the end holds the per-task seconds of everything before it
    with open(str(records)) as handle:
        events = [json.loads(line) for line in handle]
    assert [e["status"] for e in events] == ["started", "completed"]
    tasks = events[-1]["timeline"]["tasks"]
    by_name = dict((t["task"], t) for t in tasks)
    assert [t["task"] for t in tasks] == ["Record the failover as started", "Stop the writers", "Promote the replica",
                                          "Notify nobody"]
    assert by_name["Stop the writers"]["seconds"] >= 0.6 and by_name["Stop the writers"]["status"] == "changed"
    assert by_name["Promote the replica"]["seconds"] >= 0.3
    assert by_name["Notify nobody"]["status"] == "skipped"
    assert all(t["host"] == "localhost" and t["started_at"].endswith("Z") for t in tasks)
    assert events[-1]["timeline"]["playbook"] == "failover.yml"
    assert events[-1]["rto_met"] is True
    assert events[-1]["duration_seconds"] >= 0.9

    # the file itself ends holding all five tasks
    with open(str(timeline)) as handle:
        final = json.load(handle)
    assert len(final["tasks"]) == 5 and final["tasks"][-1]["task"] == "Record the failover as completed, with the timeline"

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module overhead: one check-mode task of each module against an ansible.builtin.ping
task in the same playbook, on a private lab (port block 16800, or ``--port-base``; the lab
refuses ports above 32767, Linux's ephemeral range).

Per-task seconds come from the resilience.dr.timeline callback; each figure is the median
over the runs; the ratio is module task / ping task (target: at most 1.3). Results go to
bench/results/overhead.json and overhead.md.

    .venv/bin/python bench/bench_overhead.py [--runs 5]
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import statistics
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import conftest  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from lablib import Lab, run_playbook  # noqa: E402  pylint: disable=wrong-import-position

PORT_BASE = 16800
NAME = "bench-overhead"
RESULTS = os.path.join(HERE, "results")


def tasks_for(lab):
    info = lab.info
    port_base = info["port_base"]
    pg = {"pg_login_host": "127.0.0.1", "pg_login_password": info["password"], "pg_database": info["database"]}
    return [
        ("ping", "ansible.builtin.ping", {}),
        ("traffic_switch", "resilience.dr.traffic_switch",
         {"provider": "haproxy", "haproxy_socket": info["haproxy"]["socket"], "haproxy_backend": "web", "active": "green"}),
        ("replica_promote", "resilience.dr.replica_promote",
         dict(pg, provider="postgres", pg_port=info["replica"]["port"], primary_login_host="127.0.0.1",
              primary_port=info["primary"]["port"], max_lag="1h")),
        ("pg_pitr_restore", "resilience.dr.pg_pitr_restore",
         {"engine": "native", "backup_dir": info["base_backups"], "wal_archive": info["wal_archive"],
          "data_dir": os.path.join(lab.root, "bench-restore"), "port": port_base + 50, "latest": True}),
        ("backup_verify", "resilience.dr.backup_verify",
         {"engine": "native", "backup_dir": info["base_backups"], "wal_archive": info["wal_archive"],
          "checks": ["max_age"], "max_age": "7d"}),
        ("rollback_record", "resilience.dr.rollback_record",
         {"path": os.path.join(lab.root, "records", "bench.jsonl"), "kind": "drill", "status": "started", "id": "bench-1"}),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port-base", type=int, default=PORT_BASE, help="the private lab's port block (default %(default)s)")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    lab = Lab.up(NAME, port_base=args.port_base)
    seconds = {}
    loads = []
    try:
        tasks = tasks_for(lab)
        play = [{"name": "overhead", "hosts": "localhost", "connection": "local", "gather_facts": False, "check_mode": True,
                 "tasks": [{"name": name, module: params} for name, module, params in tasks]}]
        folder = tempfile.mkdtemp(prefix="bench-overhead-")
        book = os.path.join(folder, "overhead.yml")
        with open(book, "w") as handle:
            yaml.safe_dump(play, handle)
        timeline = os.path.join(folder, "timeline.json")
        for run in range(args.runs + 1):
            load = os.getloadavg()[0]
            proc = run_playbook(book, inventory="localhost,", env={
                "ANSIBLE_CALLBACKS_ENABLED": "resilience.dr.timeline", "RESILIENCE_TIMELINE_FILE": timeline})
            if proc.returncode != 0:
                raise RuntimeError(proc.stdout[-3000:])
            if run == 0:
                continue  # warm-up: caches, first compile
            loads.append(load)
            with open(timeline) as handle:
                for task in json.load(handle)["tasks"]:
                    seconds.setdefault(task["task"], []).append(task["seconds"])
    finally:
        lab.down()
    ping = statistics.median(seconds["ping"])
    rows = []
    for name in [t[0] for t in tasks]:
        median = statistics.median(seconds[name])
        rows.append({"task": name, "median_seconds": round(median, 3), "ratio_to_ping": round(median / ping, 2)})
    with open(os.path.join(RESULTS, "overhead.json"), "w") as handle:
        json.dump({"runs": args.runs, "tasks": rows, "target_ratio": 1.3, "raw": seconds,
                   "load_average_1m": {"median": round(statistics.median(loads), 2), "runs": [round(x, 2) for x in loads]}},
                  handle, indent=2)
    lines = ["| task (check mode) | median seconds | ratio to ping |", "|---|---|---|"]
    lines += ["| %s | %.3f | %.2f |" % (r["task"], r["median_seconds"], r["ratio_to_ping"]) for r in rows]
    lines += ["", "Median of %d runs after one warm-up; target ratio <= 1.3; 1-minute load average %.2f (median of the runs)."
              % (args.runs, statistics.median(loads))]
    with open(os.path.join(RESULTS, "overhead.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

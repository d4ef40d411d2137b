# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module overhead: one check-mode task of each module against an ansible.builtin.ping
task in the same playbook, on a private lab (port block 16800, or ``--port-base``; the lab
refuses ports above 32767, Linux's ephemeral range).

Per-task seconds come from the resilience.dr.timeline callback; each figure is the median
over the runs; the ratio is the median over the runs of module task / ping task in the same
run (target: at most 1.3), the task order rotated by one each run. Results go to
bench/results/overhead.json and overhead.md.

    .venv/bin/python bench/bench_overhead.py [--runs 9] [--breakdown]

``--breakdown`` runs ansible-playbook through this script with two timers added (ansible-core
2.21's private ``module_common._find_module_utils``, the module package build on the controller,
and ``ActionBase._low_level_execute_command`` for the module's run on the host) and reports each
task's seconds split between the two and the rest.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import conftest  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from lablib import VENV_BIN, Lab, ansible_env, run_playbook  # noqa: E402  pylint: disable=wrong-import-position

PORT_BASE = 16800
TIMED = "--timed-ansible-playbook"  # internal: this script as ansible-playbook, for --breakdown
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


def timed_ansible_playbook(log_path, argv):
    """ansible-playbook with a line in ``log_path`` for each module package build and each module
    run on the host: kind, module, seconds."""
    import time  # pylint: disable=import-outside-toplevel
    from ansible.cli.playbook import main as playbook_main  # pylint: disable=import-outside-toplevel
    from ansible.executor import module_common  # pylint: disable=import-outside-toplevel
    from ansible.plugins import action  # pylint: disable=import-outside-toplevel

    def log(kind, module, started):
        with open(log_path, "a") as handle:
            handle.write("%s\t%s\t%.6f\n" % (kind, module.rsplit(".", 1)[-1], time.perf_counter() - started))

    build = module_common._find_module_utils  # pylint: disable=protected-access

    def timed_build(*args, **kwargs):
        started = time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            log("build", kwargs["module_name"], started)

    execute = action.ActionBase._low_level_execute_command  # pylint: disable=protected-access

    def timed_execute(self, cmd, *args, **kwargs):
        started = time.perf_counter()
        try:
            return execute(self, cmd, *args, **kwargs)
        finally:
            if "AnsiballZ_" in cmd and "chmod " not in cmd:
                log("run", self._task.action, started)  # pylint: disable=protected-access

    module_common._find_module_utils = timed_build  # pylint: disable=protected-access
    action.ActionBase._low_level_execute_command = timed_execute  # pylint: disable=protected-access
    sys.argv = ["ansible-playbook"] + argv
    return playbook_main()


def read_breakdown(log_path):
    """{module: {"build": seconds, "run": seconds}} of one playbook run."""
    out = {}
    with open(log_path) as handle:
        for line in handle:
            kind, module, secs = line.split("\t")
            out.setdefault(module, {}).setdefault(kind, 0.0)
            out[module][kind] += float(secs)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--breakdown", action="store_true", help="split each task's seconds into build, run on the host and the rest")
    parser.add_argument("--port-base", type=int, default=PORT_BASE, help="the private lab's port block (default %(default)s)")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    lab = Lab.up(NAME, port_base=args.port_base)
    seconds = {}
    parts_seen = {}
    loads = []
    try:
        tasks = tasks_for(lab)
        folder = tempfile.mkdtemp(prefix="bench-overhead-")
        book = os.path.join(folder, "overhead.yml")
        timeline = os.path.join(folder, "timeline.json")
        log_path = os.path.join(folder, "breakdown.tsv")
        for run in range(args.runs + 1):
            # each run starts the order one task later, so that no task is always first or last
            # (every task builds its module package once per playbook run wherever it stands)
            order = tasks[run % len(tasks):] + tasks[:run % len(tasks)]
            play = [{"name": "overhead", "hosts": "localhost", "connection": "local", "gather_facts": False, "check_mode": True,
                     "tasks": [{"name": name, module: params} for name, module, params in order]}]
            with open(book, "w") as handle:
                yaml.safe_dump(play, handle)
            load = os.getloadavg()[0]
            env = {"ANSIBLE_CALLBACKS_ENABLED": "resilience.dr.timeline", "RESILIENCE_TIMELINE_FILE": timeline}
            if args.breakdown:
                open(log_path, "w").close()
                proc = subprocess.run([os.path.join(VENV_BIN, "python"), os.path.abspath(__file__), TIMED, log_path, "-i", "localhost,", book],
                                      cwd=ROOT, env=ansible_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      universal_newlines=True, timeout=900, check=False)
            else:
                proc = run_playbook(book, inventory="localhost,", env=env)
            if proc.returncode != 0:
                raise RuntimeError(proc.stdout[-3000:])
            if run == 0:
                continue  # warm-up: caches, first compile
            loads.append(load)
            with open(timeline) as handle:
                for task in json.load(handle)["tasks"]:
                    seconds.setdefault(task["task"], []).append(task["seconds"])
            if args.breakdown:
                for module, parts in read_breakdown(log_path).items():
                    for kind, secs in parts.items():
                        parts_seen.setdefault(module, {}).setdefault(kind, []).append(secs)
    finally:
        lab.down()
    rows = []
    for name in [t[0] for t in tasks]:
        # the ratio pairs each run's task with that run's ping (the machine's speed drifts between
        # runs more than the tasks differ); the ratio of the two medians is kept beside it
        ratios = [mod / ping for mod, ping in zip(seconds[name], seconds["ping"])]
        rows.append({"task": name, "median_seconds": round(statistics.median(seconds[name]), 3),
                     "ratio_to_ping": round(statistics.median(ratios), 2),
                     "ratio_of_medians": round(statistics.median(seconds[name]) / statistics.median(seconds["ping"]), 2)})
    breakdown = {}
    if args.breakdown:
        for row in rows:
            parts = parts_seen.get(row["task"], {})
            build = statistics.median(parts.get("build", [0.0]))
            run_on_host = statistics.median(parts.get("run", [0.0]))
            breakdown[row["task"]] = {"build_seconds": round(build, 3), "run_seconds": round(run_on_host, 3),
                                      "rest_seconds": round(row["median_seconds"] - build - run_on_host, 3)}
    with open(os.path.join(RESULTS, "overhead.json"), "w") as handle:
        json.dump({"runs": args.runs, "tasks": rows, "target_ratio": 1.3, "raw": seconds, "breakdown": breakdown,
                   "load_average_1m": {"median": round(statistics.median(loads), 2), "runs": [round(x, 2) for x in loads]}},
                  handle, indent=2)
    lines = ["| task (check mode) | median seconds | ratio to ping | ratio of medians |", "|---|---|---|---|"]
    lines += ["| %s | %.3f | %.2f | %.2f |" % (r["task"], r["median_seconds"], r["ratio_to_ping"], r["ratio_of_medians"]) for r in rows]
    lines += ["", "Median of %d runs after one warm-up, the task order rotated by one each run; ratio to ping: the median of "
              "each run's task / ping (target <= 1.3); 1-minute load average %.2f (median of the runs)."
              % (args.runs, statistics.median(loads))]
    if breakdown:
        ping = breakdown["ping"]
        lines += ["", "| task | package build (controller) | module run (host) | rest | build over ping's | run over ping's |",
                  "|---|---|---|---|---|---|"]
        lines += ["| %s | %.3f | %.3f | %.3f | %+.3f | %+.3f |" % (
            name, b["build_seconds"], b["run_seconds"], b["rest_seconds"], b["build_seconds"] - ping["build_seconds"],
            b["run_seconds"] - ping["run_seconds"]) for name, b in breakdown.items()]
        lines += ["", "Breakdown: medians of each part over the runs (so they need not add up to the task's median)."]
    with open(os.path.join(RESULTS, "overhead.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == TIMED:
        sys.exit(timed_ansible_playbook(sys.argv[2], sys.argv[3:]))
    main()

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failover benchmark: playbooks/failover.yml against a bare script, under write load.

Each run gets a fresh private lab (port block 16700). A writer thread inserts rows through
HAProxy's PostgreSQL frontend as fast as it can (bounded in time) and records every
acknowledged id with its time. Then either

* the floor: a bare script doing the four things a failover must do (fast stop of the
  primary, pg_promote on the replica with a tight poll, HAProxy runtime-API switch, one
  write through HAProxy), or
* the playbook: ``ansible-playbook playbooks/failover.yml``

runs. Reported per variant, median of the runs: RTO (start to first successful write
through HAProxy), the longest gap between two acknowledged writes the client saw,
acknowledged rows lost, failed write attempts. Results go to bench/results/failover.json,
failover.md and failover-timeline.svg (the playbook's tasks, from the resilience.dr.timeline callback).

    .venv/bin/python bench/bench_failover.py [--runs 3] [--synchronous]
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import conftest  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
import psycopg  # noqa: E402  pylint: disable=wrong-import-position
from lablib import Lab, Writer, run_playbook  # noqa: E402  pylint: disable=wrong-import-position

PORT_BASE = 16700
NAME = "bench-failover"
RESULTS = os.path.join(HERE, "results")


def haproxy(lab, command):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(lab.info["haproxy"]["socket"])
    sock.sendall(command.encode() + b"\n")
    data = sock.recv(65536)
    sock.close()
    return data.decode()


def floor(lab):
    """The bare minimum, as a script: stop, promote, switch, one write."""
    pg_ctl = os.path.join(lab.info["pg_bin"], "pg_ctl")
    subprocess.run(["runuser", "-u", lab.info["os_user"], "--", pg_ctl, "stop", "-m", "fast", "-D",
                    lab.info["primary"]["data_dir"]], check=True, stdout=subprocess.DEVNULL, cwd="/")
    with psycopg.connect(lab.dsn("replica"), autocommit=True) as conn:
        conn.execute("select pg_promote(wait => false)")
        while conn.execute("select pg_is_in_recovery()").fetchone()[0]:
            time.sleep(0.002)
    haproxy(lab, "set server pg/replica state ready")
    haproxy(lab, "set server pg/primary state maint")
    while True:
        try:
            with psycopg.connect(lab.dsn(str(lab.info["haproxy"]["pg_port"])), autocommit=True) as conn:
                conn.execute("insert into events (payload) values ('floor-verify')")
            return
        except psycopg.Error:
            time.sleep(0.005)


def playbook(lab):
    proc = run_playbook("playbooks/failover.yml", {"lab_name": NAME, "lab_port_base": PORT_BASE, "lab_root": lab.root},
                        env={"ANSIBLE_CALLBACKS_ENABLED": "resilience.dr.timeline",
                             "RESILIENCE_TIMELINE_FILE": os.path.join(lab.root, "timeline.json")})
    if proc.returncode != 0:
        raise RuntimeError("failover.yml failed:\n" + proc.stdout[-3000:])


def one_run(variant, synchronous):
    lab = Lab.up(NAME, port_base=PORT_BASE, synchronous=synchronous)
    try:
        writer = Writer(lab, payload="bench")
        writer.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        (floor if variant == "floor" else playbook)(lab)
        t_done = time.monotonic()
        time.sleep(0.5)
        writer.stop()
        # the first write acknowledged by the new primary ends the longest gap around the failover
        figures = writer.figures(t0)
        acked_ids = [pair[1] for pair in writer.acked]
        present = set(r[0] for r in lab.sql("select id from events where id = any(%s)", (acked_ids,), node="replica"))
        timeline = None
        if os.path.exists(os.path.join(lab.root, "timeline.json")):
            with open(os.path.join(lab.root, "timeline.json")) as handle:
                timeline = json.load(handle)["tasks"]
        return {
            "variant": variant,
            # no gap at all: the first write after t0 was already on the new path
            "rto_seconds": figures["rto_seconds"] if figures["rto_seconds"] is not None else round(t_done - t0, 3),
            "wall_seconds": round(t_done - t0, 3),
            "longest_write_gap_seconds": figures["write_gap_seconds"],
            "acknowledged": figures["acknowledged"],
            "acknowledged_lost": len(set(acked_ids) - present),
            "failed_attempts": figures["failed_requests"],
            "timeline": timeline,
        }
    finally:
        lab.down()


def svg_timeline(steps, path):
    if not steps:
        return
    t0 = min(s["start"] for s in steps)
    end = max(s["start"] + s["seconds"] for s in steps) - t0
    width, row = 720, 26
    scale = (width - 220) / max(end, 0.001)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">'
             % (width, row * len(steps) + 40)]
    for n, step in enumerate(steps):
        x = 200 + (step["start"] - t0) * scale
        w = max(step["seconds"] * scale, 1.5)
        y = 10 + n * row
        parts.append('<text x="5" y="%d">%s</text>' % (y + 15, step["name"]))
        parts.append('<rect x="%.1f" y="%d" width="%.1f" height="18" fill="#4477aa"/>' % (x, y, w))
        parts.append('<text x="%.1f" y="%d">%.3fs</text>' % (x + w + 4, y + 15, step["seconds"]))
    parts.append('<text x="200" y="%d">0 s .. %.2f s</text></svg>' % (row * len(steps) + 30, end))
    with open(path, "w") as handle:
        handle.write("\n".join(parts))


def parse_iso(text):
    import datetime  # pylint: disable=import-outside-toplevel
    return datetime.datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--synchronous", action="store_true")
    args = parser.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    runs = {"floor": [], "playbook": []}
    for n in range(args.runs):
        for variant in ("floor", "playbook"):
            result = one_run(variant, args.synchronous)
            print("run %d %-8s rto %.3fs gap %.3fs lost %d failed %d" % (
                n + 1, variant, result["rto_seconds"], result["longest_write_gap_seconds"],
                result["acknowledged_lost"], result["failed_attempts"]), flush=True)
            runs[variant].append(result)
    summary = {}
    for variant, results in runs.items():
        summary[variant] = {key: statistics.median(r[key] for r in results) for key in
                            ("rto_seconds", "longest_write_gap_seconds", "acknowledged_lost", "failed_attempts")}
    ratio = summary["playbook"]["longest_write_gap_seconds"] / max(summary["floor"]["longest_write_gap_seconds"], 0.001)
    report = {"synchronous": args.synchronous, "runs": runs, "median": summary,
              "gap_ratio_playbook_to_floor": round(ratio, 2), "target_gap_ratio": 3.0}
    with open(os.path.join(RESULTS, "failover.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    lines = ["| variant | RTO (s) | longest write gap (s) | acknowledged rows lost | failed attempts |",
             "|---|---|---|---|---|"]
    for variant in ("floor", "playbook"):
        m = summary[variant]
        lines.append("| %s | %.3f | %.3f | %d | %d |" % (
            variant, m["rto_seconds"], m["longest_write_gap_seconds"], m["acknowledged_lost"], m["failed_attempts"]))
    lines.append("")
    lines.append("Write gap, playbook / floor: %.2f (target <= 3.0); %s replication, median of %d runs."
                 % (ratio, "synchronous" if args.synchronous else "asynchronous", args.runs))
    with open(os.path.join(RESULTS, "failover.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    steps = [{"name": t["task"][:30], "start": parse_iso(t["started_at"]), "seconds": t["seconds"]}
             for t in runs["playbook"][-1]["timeline"] or [] if t.get("started_at")]
    svg_timeline(steps, os.path.join(RESULTS, "failover-timeline.svg"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failover benchmark: playbooks/failover.yml against a bare script, under write load.

Each run gets a fresh private lab (port block 16700, or ``--port-base``; the lab refuses
ports above 32767, Linux's ephemeral range). A writer thread inserts rows through
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

    .venv/bin/python bench/bench_failover.py [--runs 3] [--synchronous] [--variant playbook]
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
import time
from xml.sax.saxutils import escape

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


def floor(lab):
    """The bare minimum, as a script: stop, promote, switch, one write."""
    pg_ctl = os.path.join(lab.info["pg_bin"], "pg_ctl")
    subprocess.run(["runuser", "-u", lab.info["os_user"], "--", pg_ctl, "stop", "-m", "fast", "-D",
                    lab.info["primary"]["data_dir"]], check=True, stdout=subprocess.DEVNULL, cwd="/")
    with psycopg.connect(lab.dsn("replica"), autocommit=True) as conn:
        conn.execute("select pg_promote(wait => false)")
        while conn.execute("select pg_is_in_recovery()").fetchone()[0]:
            time.sleep(0.002)
    lab.haproxy("set server pg/replica state ready")
    lab.haproxy("set server pg/primary state maint")
    while True:
        try:
            with psycopg.connect(lab.dsn(str(lab.info["haproxy"]["pg_port"])), autocommit=True) as conn:
                conn.execute("insert into events (payload) values ('floor-verify')")
            return
        except psycopg.Error:
            time.sleep(0.005)


def playbook(lab):
    proc = run_playbook("playbooks/failover.yml", {"lab_name": NAME, "lab_port_base": lab.info["port_base"], "lab_root": lab.root},
                        env={"ANSIBLE_CALLBACKS_ENABLED": "resilience.dr.timeline",
                             "RESILIENCE_TIMELINE_FILE": os.path.join(lab.root, "timeline.json")})
    if proc.returncode != 0:
        raise RuntimeError("failover.yml failed:\n" + proc.stdout[-3000:])


def longest_gap(acked, t0):
    """(start, end) in monotonic seconds of the longest gap between two acknowledged writes
    around ``t0`` (the same window as Writer.figures)."""
    times = [pair[0] for pair in acked]
    gaps = [(b - a, a, b) for a, b in zip(times, times[1:]) if b > t0 - 0.5]
    if not gaps:
        return None
    _length, start, end = max(gaps)
    return start, end


def module_steps(lab):
    """The module steps of the completed failover record (promote and switch), as timeline rows."""
    path = os.path.join(lab.root, "records", "dr-records.jsonl")
    if not os.path.exists(path):
        return []
    completed = None
    with open(path) as handle:
        for line in handle:
            record = json.loads(line)
            if record.get("status") == "completed":
                completed = record
    if completed is None:
        return []
    details = completed.get("details") or {}
    rows = []
    for prefix, key in (("promote", "promote_steps"), ("switch", "switch_steps")):
        for step in details.get(key) or []:
            if step.get("started_at") and step.get("seconds") is not None:
                rows.append({"name": "  %s: %s" % (prefix, step["action"]), "started_at": step["started_at"],
                             "seconds": step["seconds"]})
    return rows


def one_run(variant, synchronous, port_base=PORT_BASE):
    lab = Lab.up(NAME, port_base=port_base, synchronous=synchronous)
    try:
        writer = Writer(lab, payload="bench")
        writer.start()
        time.sleep(1.0)
        load = os.getloadavg()[0]
        wall_offset = time.time() - time.monotonic()
        t0 = time.monotonic()
        (floor if variant == "floor" else playbook)(lab)
        t_done = time.monotonic()
        time.sleep(0.5)
        writer.stop()
        # the first write acknowledged by the new primary ends the longest gap around the failover
        figures = writer.figures(t0)
        gap = longest_gap(writer.acked, t0)
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
            "write_gap_epoch": [round(gap[0] + wall_offset, 4), round(gap[1] + wall_offset, 4)] if gap else None,
            "acknowledged": figures["acknowledged"],
            "acknowledged_lost": len(set(acked_ids) - present),
            "failed_attempts": figures["failed_requests"],
            "load_average_1m": round(load, 2),
            "timeline": timeline,
            "module_steps": module_steps(lab) if variant == "playbook" else [],
        }
    finally:
        lab.down()


def svg_timeline(steps, path, gap=None):
    """Each step's start and length; the client's longest write gap as a red band."""
    if not steps:
        return
    t0 = min(s["start"] for s in steps)
    end = max(s["start"] + s["seconds"] for s in steps) - t0
    width, row, left = 860, 22, 330
    height = row * len(steps) + 50
    scale = (width - left - 60) / max(end, 0.001)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">'
             % (width, height)]
    if gap:
        x = left + (gap[0] - t0) * scale
        parts.append('<rect x="%.1f" y="0" width="%.1f" height="%d" fill="#ee6677" fill-opacity="0.25"/>'
                     % (x, max((gap[1] - gap[0]) * scale, 1.5), row * len(steps) + 10))
        parts.append('<text x="%.1f" y="%d" fill="#aa3344">client write gap %.3fs</text>'
                     % (x, row * len(steps) + 24, gap[1] - gap[0]))
    for n, step in enumerate(steps):
        x = left + (step["start"] - t0) * scale
        w = max(step["seconds"] * scale, 1.5)
        y = 6 + n * row
        colour = "#228833" if step["name"].startswith("  ") else "#4477aa"
        parts.append('<text x="5" y="%d" xml:space="preserve">%s</text>' % (y + 13, escape(step["name"])))
        parts.append('<rect x="%.1f" y="%d" width="%.1f" height="16" fill="%s"/>' % (x, y, w, colour))
        parts.append('<text x="%.1f" y="%d">%.3fs</text>' % (x + w + 4, y + 13, step["seconds"]))
    parts.append('<text x="%d" y="%d">0 s .. %.2f s (blue: playbook tasks; green: module steps)</text></svg>'
                 % (left, height - 8, end))
    with open(path, "w") as handle:
        handle.write("\n".join(parts))


def parse_iso(text):
    import datetime  # pylint: disable=import-outside-toplevel
    return datetime.datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def timeline_rows(result):
    """Playbook tasks and, under them, the module steps, in the order they started."""
    rows = []
    for task in result["timeline"] or []:
        if task.get("started_at"):
            name = task["task"].split(" : ", 1)[-1]
            rows.append({"name": name[:44], "start": parse_iso(task["started_at"]), "seconds": task["seconds"]})
    for step in result.get("module_steps") or []:
        rows.append({"name": step["name"][:44], "start": parse_iso(step["started_at"]), "seconds": step["seconds"]})
    return sorted(rows, key=lambda r: (r["start"], not r["name"].startswith("  ")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--synchronous", action="store_true")
    parser.add_argument("--port-base", type=int, default=PORT_BASE, help="the private lab's port block (default %(default)s)")
    parser.add_argument("--variant", choices=["floor", "playbook"], action="append",
                        help="run only this variant (repeatable); results are written only when both ran")
    args = parser.parse_args()
    variants = args.variant or ["floor", "playbook"]
    os.makedirs(RESULTS, exist_ok=True)
    runs = dict((v, []) for v in variants)
    for n in range(args.runs):
        for variant in variants:
            result = one_run(variant, args.synchronous, args.port_base)
            print("run %d %-8s rto %.3fs gap %.3fs lost %d failed %d load %.2f" % (
                n + 1, variant, result["rto_seconds"], result["longest_write_gap_seconds"],
                result["acknowledged_lost"], result["failed_attempts"], result["load_average_1m"]), flush=True)
            runs[variant].append(result)
    summary = {}
    for variant, results in runs.items():
        summary[variant] = {key: statistics.median(r[key] for r in results) for key in
                            ("rto_seconds", "longest_write_gap_seconds", "acknowledged_lost", "failed_attempts",
                             "load_average_1m")}
    if len(runs) < 2:
        handle, path = tempfile.mkstemp(prefix="bench-failover-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump({"runs": runs, "median": summary}, out, indent=2)
        print(json.dumps(summary, indent=2))
        print("one variant only: bench/results not written; the runs are in %s" % path)
        return
    ratio = summary["playbook"]["longest_write_gap_seconds"] / max(summary["floor"]["longest_write_gap_seconds"], 0.001)
    report = {"synchronous": args.synchronous, "runs": runs, "median": summary,
              "gap_ratio_playbook_to_floor": round(ratio, 2), "target_gap_ratio": 3.0}
    with open(os.path.join(RESULTS, "failover.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    lines = ["| variant | RTO (s) | longest write gap (s) | acknowledged rows lost | failed attempts | load average (1 min) |",
             "|---|---|---|---|---|---|"]
    for variant in ("floor", "playbook"):
        m = summary[variant]
        lines.append("| %s | %.3f | %.3f | %d | %d | %.2f |" % (
            variant, m["rto_seconds"], m["longest_write_gap_seconds"], m["acknowledged_lost"], m["failed_attempts"],
            m["load_average_1m"]))
    lines.append("")
    lines.append("Write gap, playbook / floor: %.2f (target <= 3.0); %s replication, median of %d runs."
                 % (ratio, "synchronous" if args.synchronous else "asynchronous", args.runs))
    with open(os.path.join(RESULTS, "failover.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    # the chart shows the playbook run whose write gap is the median one
    ordered = sorted(runs["playbook"], key=lambda r: r["longest_write_gap_seconds"])
    shown = ordered[len(ordered) // 2]
    svg_timeline(timeline_rows(shown), os.path.join(RESULTS, "failover-timeline.svg"), shown.get("write_gap_epoch"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

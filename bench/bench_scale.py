# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scale benchmark: playbooks/verify_backups.yml over 1, 4 and 8 lab clusters, forks 1 and 4.

The clusters: eight real lab clusters (each its own initdb, system identifier, pg_basebackup with
manifest and WAL archive), brought up two at a time in parallel threads on two lab port blocks
(30800 and 30900 by default: lab ports must stay below 32768, Linux's ephemeral range, which
labctl's preflight enforces). Each lab's backup folder and WAL archive are copied (``cp -a``) into
a temporary folder, then the lab is taken down: verify_backups.yml only reads backups, so the
timed runs find eight clusters' backups on disk and no idle lab processes competing for the CPUs.
Every lab is taken down at the end, also on failure, and the temporary folder is removed.

An inventory per N (1, 4, 8), written by this script into the temporary folder the way
inventories/lab does it for one cluster: group ``backup_clusters``, one host per cluster
(connection local), ``dr_base_backups``, ``dr_wal_archive``, ``dr_backup_max_age``,
``dr_cluster_name``. Then, interleaved (run 1 of every variant, run 2...), median of ``--runs`` (3):

``playbook``    ``ansible-playbook -i <inventory N> playbooks/verify_backups.yml`` with
                ``ANSIBLE_FORKS`` 1 or 4 (the role's default checks: max_age, checksums,
                wal_continuity); the run must report "N of N cluster(s) OK".
``ping``        a playbook of one ``ansible.builtin.ping`` task over the same hosts and forks:
                Ansible's own cost per host, which the playbook pays too.
``floor_seq``   a bare script: ``pg_verifybackup`` on the same N backups, one after the other.
``floor_par4``  the same with up to 4 at once (the floor for forks 4).

The 1-minute load average is recorded before every timed run. Results: bench/results/scale.json
and scale.md (git-ignored).

    .venv/bin/python bench/bench_scale.py [--runs 3] [--port-bases 30800,30900] [--sizes 1,4,8] [--forks 1,4]
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import conftest  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from lablib import LAB_BASE, VENV_BIN, Lab, run_playbook  # noqa: E402  pylint: disable=wrong-import-position

RESULTS = os.path.join(HERE, "results")
PG_BIN = "/usr/lib/postgresql/15/bin"


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def load1():
    return round(os.getloadavg()[0], 2)


# -- the clusters ------------------------------------------------------------------------------
def slot_name(n):
    return "bench-scale-%s" % chr(ord("a") + n)


def make_clusters(count, port_bases, work):
    """Bring up ``count`` labs, ``len(port_bases)`` at a time (one thread per port block), copy
    each one's backups and WAL archive under ``work`` and take it down. Returns the clusters
    (name, base_backups, wal_archive, backup_bytes) and the labs' up/down seconds."""
    todo = list(range(count))
    lock = threading.Lock()
    clusters, timings, errors = {}, [], []

    def slot(port_base, letter):
        while True:
            with lock:
                if not todo or errors:
                    return
                index = todo.pop(0)
            name = "cluster%02d" % (index + 1)
            lab = None
            try:
                t0 = time.monotonic()
                lab = Lab.up(letter, port_base=port_base)
                up = time.monotonic() - t0
                dest = os.path.join(work, name)
                os.makedirs(dest)
                os.chmod(dest, 0o755)
                for what in ("base_backups", "wal_archive"):
                    subprocess.run(["cp", "-a", "--", lab.info[what], os.path.join(dest, what)], check=True)
                backup = sorted(d for d in os.listdir(os.path.join(dest, "base_backups")) if d.startswith("base-"))[-1]
                path = os.path.join(dest, "base_backups", backup)
                size = sum(os.path.getsize(os.path.join(f, n)) for f, _d, names in os.walk(path) for n in names)
                t1 = time.monotonic()
                lab.down()
                lab = None
                with lock:
                    clusters[name] = {"name": name, "base_backups": os.path.join(dest, "base_backups"),
                                      "wal_archive": os.path.join(dest, "wal_archive"), "backup": path, "backup_bytes": size}
                    timings.append({"cluster": name, "lab_up_seconds": round(up, 1), "lab_down_seconds": round(time.monotonic() - t1, 1)})
                log("%s: lab up %.1f s on %d+, backup %.1f MB copied, lab down" % (name, up, port_base, size / 1e6))
            except Exception as exc:  # pylint: disable=broad-except
                with lock:
                    errors.append("%s: %s" % (name, str(exc)[-2000:]))
                return
            finally:
                if lab is not None:
                    try:
                        lab.down()
                    except Exception as exc:  # pylint: disable=broad-except
                        with lock:
                            errors.append("%s teardown: %s" % (name, str(exc)[-500:]))

    threads = [threading.Thread(target=slot, args=(base, slot_name(n)), daemon=True) for n, base in enumerate(port_bases)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return [clusters[k] for k in sorted(clusters)], timings


def write_inventory(work, clusters):
    hosts = {}
    for cluster in clusters:
        hosts[cluster["name"]] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": os.path.join(VENV_BIN, "python"),
            "dr_cluster_name": cluster["name"],
            "dr_backup_engine": "native",
            "dr_base_backups": cluster["base_backups"],
            "dr_wal_archive": cluster["wal_archive"],
            "dr_backup_max_age": "6h",
        }
    path = os.path.join(work, "inventory-%d.yml" % len(clusters))
    with open(path, "w") as handle:
        yaml.safe_dump({"all": {"children": {"backup_clusters": {"hosts": hosts}}}}, handle, default_flow_style=False)
    return path


# -- the variants ------------------------------------------------------------------------------
def timed_playbook(book, inventory, forks, expect=None):
    t0 = time.monotonic()
    proc = run_playbook(book, inventory=inventory, env={"ANSIBLE_FORKS": str(forks)}, timeout=1800)
    seconds = time.monotonic() - t0
    if proc.returncode != 0 or (expect and expect not in proc.stdout):
        raise RuntimeError("%s (forks %d, %s) failed (rc %d):\n%s" % (book, forks, inventory, proc.returncode, proc.stdout[-4000:]))
    return seconds


def verify_one(backup):
    proc = subprocess.run([os.path.join(PG_BIN, "pg_verifybackup"), backup], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if proc.returncode != 0 or "successfully verified" not in proc.stdout:
        raise RuntimeError("pg_verifybackup %s: %s" % (backup, proc.stdout[-1000:]))


def floor(clusters, parallel):
    t0 = time.monotonic()
    if parallel <= 1:
        for cluster in clusters:
            verify_one(cluster["backup"])
    else:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(verify_one, [c["backup"] for c in clusters]))
    return time.monotonic() - t0


def median(values):
    return round(statistics.median(values), 3) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1,4,8")
    parser.add_argument("--forks", default="1,4")
    parser.add_argument("--port-bases", default="30800,30900",
                        help="lab port blocks (below 32768), one lab at a time on each; two labs come up in parallel")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the lab's PostgreSQL runs as the postgres user")
    sizes = [int(n) for n in args.sizes.split(",")]
    forks_list = [int(n) for n in args.forks.split(",")]
    port_bases = [int(n) for n in args.port_bases.split(",")]
    work = tempfile.mkdtemp(prefix="bench-scale-", dir="/var/tmp")
    os.chmod(work, 0o755)  # the backups are read as postgres
    try:
        t0 = time.monotonic()
        log("bringing up %d labs, %d at a time (ports %s), keeping their backups in %s" % (
            max(sizes), len(port_bases), ", ".join("%d+" % b for b in port_bases), work))
        clusters, lab_timings = make_clusters(max(sizes), port_bases, work)
        setup_seconds = time.monotonic() - t0
        inventories = {n: write_inventory(work, clusters[:n]) for n in sizes}
        ping_book = os.path.join(work, "ping.yml")
        with open(ping_book, "w") as handle:
            yaml.safe_dump([{"name": "ping", "hosts": "backup_clusters", "gather_facts": False,
                             "tasks": [{"name": "ping", "ansible.builtin.ping": {}}]}], handle)
        # warm-up: caches, the first compile of the module and the role
        timed_playbook("playbooks/verify_backups.yml", inventories[sizes[0]], 1)
        samples, loads = {}, []

        def record(key, seconds):
            samples.setdefault(key, []).append(round(seconds, 3))

        for run in range(args.runs):
            for n in sizes:
                for forks in forks_list:
                    loads.append(load1())
                    seconds = timed_playbook("playbooks/verify_backups.yml", inventories[n], forks,
                                             expect="%d of %d cluster(s) OK" % (n, n))
                    record("playbook n=%d forks=%d" % (n, forks), seconds)
                    log("run %d playbook n=%d forks=%d: %.2f s (load %.2f)" % (run + 1, n, forks, seconds, loads[-1]))
                    loads.append(load1())
                    seconds = timed_playbook(ping_book, inventories[n], forks)
                    record("ping n=%d forks=%d" % (n, forks), seconds)
                for parallel in (1, 4):
                    loads.append(load1())
                    seconds = floor(clusters[:n], parallel)
                    record("floor n=%d parallel=%d" % (n, parallel), seconds)
                log("run %d floor n=%d: seq %.3f s, 4 at once %.3f s" % (
                    run + 1, n, samples["floor n=%d parallel=1" % n][-1], samples["floor n=%d parallel=4" % n][-1]))
        med = {key: median(values) for key, values in samples.items()}
        rows = []
        for forks in forks_list:
            base = med["playbook n=%d forks=%d" % (sizes[0], forks)]
            for n in sizes:
                wall = med["playbook n=%d forks=%d" % (n, forks)]
                ping = med["ping n=%d forks=%d" % (n, forks)]
                floor_seq = med["floor n=%d parallel=1" % n]
                floor_par = med["floor n=%d parallel=4" % n]
                rows.append({
                    "clusters": n, "forks": forks, "wall_seconds": wall, "per_cluster_seconds": round(wall / n, 3),
                    "ratio_to_1_cluster": round(wall / base, 2),
                    "growth_per_added_cluster_seconds": round((wall - base) / (n - sizes[0]), 3) if n != sizes[0] else None,
                    "ping_seconds": ping, "floor_seq_seconds": floor_seq, "floor_par4_seconds": floor_par,
                    "ratio_to_floor_seq": round(wall / floor_seq, 1),
                    "ratio_to_floor_par4": round(wall / floor_par, 1),
                    "playbook_minus_ping_seconds": round(wall - ping, 3),
                })
        out = {
            "benchmark": "verify_backups.yml over N lab clusters with forks F, against pg_verifybackup on the same backups",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
            "runs": args.runs, "sizes": sizes, "forks": forks_list,
            "clusters": [{"name": c["name"], "backup_bytes": c["backup_bytes"]} for c in clusters],
            "lab_setup": {"seconds": round(setup_seconds, 1), "port_bases": port_bases, "labs": lab_timings},
            "load_average_1m": {"min": min(loads), "median": median(loads), "max": max(loads)},
            "rows": rows, "median_seconds": med, "samples": samples,
        }
        write_results(out)
    finally:
        # a lab left up by an interrupted run (Ctrl-C while a slot was busy) comes down too
        for n in range(len(port_bases)):
            root = os.path.join(LAB_BASE, slot_name(n))
            if os.path.exists(os.path.join(root, "lab.json")):
                log("taking down the lab left in %s" % root)
                Lab.load(root).down()
        shutil.rmtree(work, ignore_errors=True)


def write_results(out):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "scale.json"), "w") as handle:
        json.dump(out, handle, indent=2, sort_keys=True)
        handle.write("\n")
    mb = statistics.median(c["backup_bytes"] for c in out["clusters"]) / 1e6
    load = out["load_average_1m"]
    lines = [
        "# verify_backups.yml scale benchmark (%s)" % out["date"],
        "",
        "%d lab clusters (backups of %.0f MB each, checks max_age, checksums, wal_continuity); median of %d runs; "
        "%d CPUs; 1-minute load average %.1f-%.1f (median %.1f)." % (
            len(out["clusters"]), mb, out["runs"], out["host"]["cpus"], load["min"], load["max"], load["median"]),
        "",
        "| clusters | forks | wall (s) | per cluster (s) | / 1 cluster | s per added cluster | ping playbook (s) "
        "| wall - ping (s) | floor: pg_verifybackup one by one (s) | floor: 4 at once (s) | / floor one by one | / floor 4 at once |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["rows"]:
        lines.append("| %d | %d | %.2f | %.2f | %.2f | %s | %.2f | %.2f | %.3f | %.3f | %.1f | %.1f |" % (
            r["clusters"], r["forks"], r["wall_seconds"], r["per_cluster_seconds"], r["ratio_to_1_cluster"],
            "-" if r["growth_per_added_cluster_seconds"] is None else "%.2f" % r["growth_per_added_cluster_seconds"],
            r["ping_seconds"], r["playbook_minus_ping_seconds"], r["floor_seq_seconds"], r["floor_par4_seconds"],
            r["ratio_to_floor_seq"], r["ratio_to_floor_par4"]))
    lines += ["", "Reproduce: `.venv/bin/python bench/bench_scale.py` (as root; about 10 minutes).", ""]
    with open(os.path.join(RESULTS, "scale.md"), "w") as handle:
        handle.write("\n".join(lines))
    log("wrote bench/results/scale.json and scale.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

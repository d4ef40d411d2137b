# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup verification benchmark: backup_verify's checksum check against ``pg_verifybackup`` and a floor.

One private lab (ports 25200+: the lab refuses ports above 32767, Linux's ephemeral range). On its primary: ``pgbench -i -s 70`` (>= 1 GB), then a
fresh ``pg_basebackup`` (plain, ``backup_manifest`` with CRC32C, WAL streamed). Then, in the same
run and interleaved (run 1 of every variant, run 2 of every variant...), median of ``--runs`` (3):

``floor``            read every file of the backup once (4 MiB reads into one reused buffer, one process): the least any
                     verification that looks at every byte can take.
``pg_verifybackup``  ``pg_verifybackup <backup>`` alone, as the module runs it (checks every file
                     against the manifest, then parses the backup's WAL with pg_waldump).
``sliced``           the files split over one ``pg_verifybackup`` per CPU (``_verify_native.run_sliced``
                     with ``VERIFY_SLICES`` at the CPU count: what the module did before it started one
                     process more), from this script, without Ansible.
``module``           ``ansible localhost -m resilience.dr.backup_verify`` with ``checks: [checksums]``:
                     the whole ansible process (start-up, AnsiballZ, backup discovery, the check).
``ansible_ping``     ``ansible localhost -m ansible.builtin.ping`` the same way: Ansible's fixed cost per task
                     run ad hoc (start-up, inventory, connection), which ``module`` pays too.
``module_task``      from the same runs, the module's own wall time (the ``seconds`` it returns:
                     argument checks, backup discovery and the check, without Ansible's start-up).
                     This is the headline figure against ``pg_verifybackup``.
``module_inner``     from the same runs, the seconds the module reports for its checksums check
                     (``checks.checksums.seconds``): pg_verifybackup as the module runs it (split
                     over one process per CPU plus one, see _verify_native.verify_processes; the
                     module also reports how much of the backup was in the page cache).

Two cache states, each with all variants: ``warm`` (the backup's files were read just before)
and ``cold`` (each file's pages are dropped from the page cache with
``posix_fadvise(POSIX_FADV_DONTNEED)`` before each run: only this backup's pages, nothing else on
the machine is evicted). Results: bench/results/verify.json and verify.md (git-ignored).

    python bench/bench_verify.py [--runs 3] [--scale 70] [--keep] [--backup PATH] [--variants floor,sliced,...]

``--backup PATH`` verifies an existing plain backup (such as the one bench_restore.py --keep leaves)
instead of bringing up a lab and taking one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")
if os.path.exists(VENV_PY) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, ".venv")) \
        and not os.environ.get("BENCH_VERIFY_NO_REEXEC"):
    # ansible and the lab helpers live in the project's venv
    os.environ["BENCH_VERIFY_NO_REEXEC"] = "1"
    os.execv(VENV_PY, [VENV_PY] + sys.argv)

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from lablib import COLLECTIONS, Lab, run_module  # noqa: E402  pylint: disable=wrong-import-position

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
from ansible_collections.resilience.dr.plugins.module_utils import _verify_native  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.resilience.dr.plugins.module_utils._verify_scratch import Completed  # noqa: E402  pylint: disable=wrong-import-position

NAME = "bench-verify"
PORT_BASE = 25200  # the lab role refuses ports above 32767 (Linux's ephemeral range)
VARIANTS = ("floor", "pg_verifybackup", "sliced", "module", "ansible_ping")
TARGET_RATIO = 1.2  # module / pg_verifybackup
CHUNK = 4 * 1024 * 1024


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


class Bench(object):
    def __init__(self, lab, args, info):
        self.lab = lab
        self.args = args
        self.info = info
        self.bin = info["pg_bin"]
        self.env = dict(os.environ, PGPASSWORD=info["password"], LC_ALL="C")
        self.backup = None
        self.files = []

    def run(self, argv, as_user=False, check=True, timeout=3600):
        if as_user:
            argv = ["runuser", "-u", self.info["os_user"], "--"] + argv
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=self.env,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError("%s failed (rc %d):\n%s" % (" ".join(argv), proc.returncode, proc.stdout[-3000:]))
        return proc.stdout

    def pg(self, name):
        return os.path.join(self.bin, name)

    def psql(self, sql):
        return self.run([self.pg("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.info["primary"]["port"]),
                         "-U", self.info["superuser"], "-d", self.info["database"], "-c", sql]).strip()

    # -- the data ----------------------------------------------------------------------------
    def build(self):
        primary = self.info["primary"]
        log("pgbench -i -s %d on the primary (as %s)" % (self.args.scale, self.info["os_user"]))
        t0 = time.monotonic()
        self.run([self.pg("pgbench"), "-i", "-q", "-s", str(self.args.scale), "-h", "127.0.0.1", "-p", str(primary["port"]),
                  "-U", self.info["superuser"], self.info["database"]], as_user=True)
        self.psql("checkpoint")
        log("  %.1f s; database %s" % (time.monotonic() - t0, self.psql("select pg_size_pretty(pg_database_size(current_database()))")))
        work = os.path.join(self.lab.root, "backups", "bench")
        self.run(["install", "-d", "-o", self.info["os_user"], "-m", "0750", work])
        name = "base-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = os.path.join(work, name)
        log("pg_basebackup -> %s" % target)
        t0 = time.monotonic()
        self.run([self.pg("pg_basebackup"), "-h", primary["socket_dir"], "-p", str(primary["port"]), "-U", self.info["superuser"],
                  "-D", target + ".partial", "-X", "stream", "-c", "fast", "--manifest-checksums=CRC32C", "-l", name], as_user=True)
        os.rename(target + ".partial", target)
        self.backup = target
        for folder, _dirs, names in os.walk(target):
            self.files.extend(os.path.join(folder, n) for n in names)
        total = sum(os.path.getsize(f) for f in self.files)
        log("  %.1f s, %d files, %.2f GB" % (time.monotonic() - t0, len(self.files), total / 1e9))
        if total < 1e9 and self.args.scale >= 70:
            raise RuntimeError("the backup is %.2f GB, less than the 1 GB the benchmark promises" % (total / 1e9))
        return {"backup": target, "backup_bytes": total, "backup_files": len(self.files),
                "database_bytes": int(self.psql("select pg_database_size(current_database())"))}

    def existing(self, path):
        self.backup = os.path.abspath(path)
        for folder, _dirs, names in os.walk(self.backup):
            self.files.extend(os.path.join(folder, n) for n in names)
        total = sum(os.path.getsize(f) for f in self.files)
        log("existing backup %s: %d files, %.2f GB" % (self.backup, len(self.files), total / 1e9))
        return {"backup": self.backup, "backup_bytes": total, "backup_files": len(self.files), "database_bytes": None}

    # -- cache control -------------------------------------------------------------------------
    def drop_cache(self):
        os.sync()
        for path in self.files:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    def warm_cache(self):
        self.read_all()

    # -- the variants ------------------------------------------------------------------------
    def read_all(self):
        """Read every byte once into one reused buffer (no allocation per read)."""
        total = 0
        buf = bytearray(CHUNK)
        for path in self.files:
            with open(path, "rb", buffering=0) as handle:
                while True:
                    n = handle.readinto(buf)
                    if not n:
                        break
                    total += n
        return total

    def floor(self):
        t0 = time.monotonic()
        self.read_all()
        return time.monotonic() - t0, {}

    def pg_verifybackup(self):
        t0 = time.monotonic()
        out = self.run([self.pg("pg_verifybackup"), self.backup])
        seconds = time.monotonic() - t0
        if "successfully verified" not in out:
            raise RuntimeError("pg_verifybackup said: %s" % out)
        return seconds, {}

    def sliced(self):
        """The way before: ``run_sliced`` as the module calls it, one process per CPU."""

        class Direct(object):
            def __init__(self, env):
                self.env = env

            def run(self, argv, timeout=600):
                proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=self.env,
                                      timeout=timeout, check=False)
                return Completed(proc.returncode, proc.stdout, proc.stderr)

        saved = _verify_native.VERIFY_SLICES
        _verify_native.VERIFY_SLICES = max(1, min(4, os.cpu_count() or 1))
        figures = {}
        try:
            t0 = time.monotonic()
            proc = _verify_native.run_sliced(Direct(self.env), [self.pg("pg_verifybackup")], self.backup,
                                             os.path.join(self.backup, "backup_manifest"), 3600, figures)
            seconds = time.monotonic() - t0
        finally:
            _verify_native.VERIFY_SLICES = saved
        if proc.returncode != 0 or "successfully verified" not in proc.stdout:
            raise RuntimeError("sliced pg_verifybackup said: %s %s" % (proc.stdout, proc.stderr))
        return seconds, {"verify_processes": figures.get("verify_processes")}

    @staticmethod
    def ansible_ping():
        t0 = time.monotonic()
        result = run_module("ansible.builtin.ping", {"data": "pong"})
        seconds = time.monotonic() - t0
        if result.get("failed"):
            raise RuntimeError("ansible ping failed: %s" % result.get("msg"))
        return seconds, {}

    def module(self):
        t0 = time.monotonic()
        result = run_module("resilience.dr.backup_verify", {"engine": "native", "backup_dir": self.backup, "checks": ["checksums"],
                                                            "pg_bin_dir": self.bin})
        seconds = time.monotonic() - t0
        check = result.get("checks", {}).get("checksums", {})
        if result.get("failed") or check.get("status") != "passed":
            raise RuntimeError("backup_verify did not pass: %s" % (result.get("msg") or check.get("detail")))
        figures = check.get("figures", {})
        return seconds, {"module_inner": check["seconds"], "module_task": result.get("seconds"),
                         "verify_processes": figures.get("verify_processes"), "page_cache_resident": figures.get("page_cache_resident"),
                         "files_verified": figures.get("files_verified")}


def median(values):
    return round(statistics.median(values), 3) if values else None


def ratio(med, top, bottom, minus=None):
    """med[top] / med[bottom] (less med[minus] on top); None when a variant was not run."""
    if not med.get(top) or not med.get(bottom) or (minus and not med.get(minus)):
        return None
    return round((med[top] - (med[minus] if minus else 0)) / med[bottom], 2)


def met(value):
    return None if value is None else value <= TARGET_RATIO


def fmt(value, unit=""):
    return "-" if value is None else "%.3f%s" % (value, unit) if unit else "%.2f" % value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    parser.add_argument("--backup", help="verify this existing plain backup; no lab is brought up")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of %s" % ", ".join(VARIANTS))
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if os.geteuid() != 0:
        sys.exit("run as root: the lab's PostgreSQL runs as the postgres user")

    lab = None
    if args.backup:
        info = {"pg_bin": "/usr/lib/postgresql/15/bin", "password": "", "os_user": "postgres"}
    else:
        log("lab %s on ports %d+" % (NAME, PORT_BASE))
        lab = Lab.up(NAME, port_base=PORT_BASE)
        info = lab.info
    try:
        bench = Bench(lab, args, info)
        data = bench.existing(args.backup) if args.backup else bench.build()
        load_before = os.getloadavg()[0]
        samples = {}
        decisions = {}
        for cache in ("warm", "cold"):
            for variant in variants + ["module_inner", "module_task"]:
                samples.setdefault(cache, {})[variant] = []
            for run in range(args.runs):
                for variant in variants:
                    if cache == "cold":
                        bench.drop_cache()
                    else:
                        bench.warm_cache()
                    seconds, extra = getattr(bench, variant)()
                    samples[cache][variant].append(round(seconds, 3))
                    for key in ("module_inner", "module_task"):
                        if key in extra:
                            samples[cache][key].append(extra[key])
                    if variant == "module":
                        decisions.setdefault(cache, []).append([extra.get("verify_processes"), extra.get("page_cache_resident")])
                    log("%s run %d %-16s %.3f s %s" % (cache, run + 1, variant, seconds, extra or ""))
        results = {}
        for cache, by_variant in samples.items():
            med = {variant: median(values) for variant, values in by_variant.items()}
            ratios = {
                "module_task/pg_verifybackup": ratio(med, "module_task", "pg_verifybackup"),
                "module/pg_verifybackup": ratio(med, "module", "pg_verifybackup"),
                "module/floor": ratio(med, "module", "floor"),
                "pg_verifybackup/floor": ratio(med, "pg_verifybackup", "floor"),
                "module_inner/pg_verifybackup": ratio(med, "module_inner", "pg_verifybackup"),
                "sliced/pg_verifybackup": ratio(med, "sliced", "pg_verifybackup"),
                "(module - ansible_ping)/pg_verifybackup": ratio(med, "module", "pg_verifybackup", minus="ansible_ping"),
            }
            results[cache] = {"median_seconds": med, "runs": by_variant, "ratios": ratios,
                              "module_decisions": decisions.get(cache, []),
                              "target_met": met(ratios["module_task/pg_verifybackup"]),
                              "target_met_ansible_process": met(ratios["module/pg_verifybackup"]),
                              "throughput_mb_s": {v: round(data["backup_bytes"] / 1e6 / med[v], 1) for v in variants
                                                  if v != "ansible_ping" and med.get(v)}}
        out = {
            "benchmark": "backup_verify checksums vs pg_verifybackup vs reading every file once",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
            "runs": args.runs, "scale": args.scale,
            "target": "module's own task time <= %.1fx pg_verifybackup" % TARGET_RATIO,
            "data": data, "results": results, "load_before": load_before, "load_after": os.getloadavg()[0],
        }
        write_results(out)
        for cache in ("warm", "cold"):
            r = results[cache]
            log("%s cache: %s" % (cache, ", ".join("%s %s" % (v, fmt(m, " s")) for v, m in sorted(r["median_seconds"].items()))))
            log("  ratios: %s; module's (processes, resident share): %s; target module task <= %.1fx pg_verifybackup: %s" % (
                ", ".join("%s %s" % (k, fmt(v)) for k, v in r["ratios"].items()), r["module_decisions"], TARGET_RATIO,
                {True: "met", False: "MISSED", None: "not measured"}[r["target_met"]]))
    finally:
        if lab is None:
            pass
        elif args.keep:
            log("lab left up under %s (--keep)" % lab.root)
        else:
            log("removing the lab")
            lab.down()
            log("lab removed")


def write_results(out):
    folder = os.path.join(HERE, "results")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "verify.json"), "w") as handle:
        json.dump(out, handle, indent=2, sort_keys=True)
        handle.write("\n")
    lines = [
        "# backup_verify benchmark (%s)" % out["date"],
        "",
        "Backup: %.2f GB in %d files (%s); median of %d runs; %d CPUs. Load average (1 min) %.2f at the start of the "
        "runs, %.2f at the end (other jobs share this 2-core machine: above ~1, figures move)." % (
            out["data"]["backup_bytes"] / 1e9, out["data"]["backup_files"],
            "pgbench scale %d" % out["scale"] if out["data"].get("database_bytes") else "an existing backup", out["runs"],
            out["host"]["cpus"], out["load_before"], out["load_after"]),
        "",
        "Columns: *module task* is the module's own wall time (the `seconds` it returns: discovery and the check, "
        "without Ansible's start-up); *its check* is the checksums check inside it; *ansible process* is the whole "
        "`ansible localhost -m resilience.dr.backup_verify` run; *ansible ping* is Ansible's fixed cost for one ad-hoc task.",
        "",
        "| cache | floor (read once) | pg_verifybackup | sliced (one per CPU, before) | module task | its check | ansible process "
        "| ansible ping | **module task / pg_verifybackup** | check / pg_verifybackup | sliced / pg_verifybackup "
        "| ansible process / pg_verifybackup | (process - ping) / pg_verifybackup | pg_verifybackup / floor | module's processes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for cache in ("warm", "cold"):
        r = out["results"][cache]
        m = r["median_seconds"]
        cells = [fmt(m.get(v), " s") for v in ("floor", "pg_verifybackup", "sliced", "module_task", "module_inner", "module", "ansible_ping")]
        cells.append("**%s**" % fmt(r["ratios"]["module_task/pg_verifybackup"]))
        keys = ("module_inner/pg_verifybackup", "sliced/pg_verifybackup", "module/pg_verifybackup",
                "(module - ansible_ping)/pg_verifybackup", "pg_verifybackup/floor")
        cells += [fmt(r["ratios"][k]) for k in keys]
        cells.append(", ".join(str(d[0]) for d in r["module_decisions"]) or "-")
        lines.append("| %s | %s |" % (cache, " | ".join(cells)))
    words = {True: "met", False: "missed", None: "not measured"}
    verdicts = [words[out["results"][c]["target_met"]] for c in ("warm", "cold")]
    process = [words[out["results"][c]["target_met_ansible_process"]] for c in ("warm", "cold")]
    lines += ["", "Target: %s (%s warm, %s cold). Counting the whole ansible process instead: %s warm, %s cold." % (
        out["target"], verdicts[0], verdicts[1], process[0], process[1]), ""]
    with open(os.path.join(folder, "verify.md"), "w") as handle:
        handle.write("\n".join(lines))
    log("wrote bench/results/verify.json and verify.md")


if __name__ == "__main__":
    main()

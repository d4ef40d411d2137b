# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_verify engine ``pgbackrest``: a pgBackRest stanza (private to this collection).

* Backups and the archive's range come from ``pgbackrest info --output=json``.
* ``checksums``: ``pgbackrest verify`` (which exits 0 even when it finds damage in
  2.45: its report is parsed instead).
* ``wal_continuity`` and the newest WAL's age read a local (posix) repository's
  ``archive/<stanza>/<archive id>/`` folder; other repository types fail these checks
  with a clear message.
* ``test_restore``: ``pgbackrest restore --set=<newest> --pg1-path=<scratch>`` then the
  same scratch start, queries and clean-up as the native engine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shlex

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
    NOT_FOUND,
)
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils import _verify_wal as wal
from ansible_collections.resilience.dr.plugins.module_utils._verify_common import (
    VerifyProvider,
    PASSED,
    FAILED,
    age_seconds,
)
from ansible_collections.resilience.dr.plugins.module_utils._verify_native import test_restore
from ansible_collections.resilience.dr.plugins.module_utils._verify_scratch import Runner, find_pg_bin

_QUOTED = re.compile(r"'([^']+)'")
_WORKER = re.compile(r"P\d\d\s+(?:INFO|WARN|ERROR|DETAIL):\s*(.*)$")


def parse_config(path):
    """{section: {key: value}} of a pgBackRest ini file (include files are not followed)."""
    out = {}
    section = None
    with open(path) as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                out.setdefault(section, {})
            elif "=" in line and section is not None:
                key, value = line.split("=", 1)
                out[section][key.strip()] = value.strip()
    return out


def parse_verify_output(text):
    """Problems reported by ``pgbackrest verify``: (status_error, problems, files)."""
    problems = []
    files = []
    error = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("status:") and "error" in stripped:
            error = True
        match = _WORKER.search(line)
        if not match:
            if re.search(r"(invalid|missing|error):\s*[1-9]", stripped):
                problems.append(stripped)
            continue
        message = match.group(1)
        if message.startswith(("verify command", "stanza:")):
            continue
        if re.search(r"invalid|missing|corrupt|unable|error|mismatch", message, re.IGNORECASE):
            problems.append(message)
            for name in _QUOTED.findall(message):
                if name not in files:
                    files.append(name)
    return error or bool(problems), problems, files


class PgBackRestVerify(VerifyProvider):
    name = "pgbackrest"

    def validate(self, checks):
        config = self.params.get("pgbackrest_config")
        if not config or not os.path.isfile(config):
            raise DRError(INVALID_ARGUMENT, "pgbackrest_config %s is not a file; point it at the stanza's pgbackrest.conf." % config)
        self.runner = Runner(self.module, self.params.get("os_user"))
        self.config = parse_config(config)

    def pgbackrest(self, *args, **kwargs):
        argv = ["pgbackrest", "--config=" + os.path.abspath(self.params["pgbackrest_config"]),
                "--stanza=" + self.params["stanza"]] + list(args)
        return self.runner.run(argv, timeout=kwargs.get("timeout", self.params["timeout"]))

    def _option(self, key, default=None):
        for section in (self.params["stanza"], "global"):
            if key in self.config.get(section, {}):
                return self.config[section][key]
        return default

    def discover(self):
        proc = self.pgbackrest("info", "--output=json")
        try:
            info = json.loads(proc.stdout or "[]")
        except ValueError:
            info = None
        if proc.returncode != 0 or not info:
            raise DRError(NOT_FOUND, "pgbackrest info failed for stanza %s: %s" % (
                self.params["stanza"], (proc.stderr or proc.stdout).strip()[-400:]))
        stanza = info[0]
        backups = [b for b in stanza.get("backup", []) if not b.get("error")]
        self.figures["stanza_status"] = stanza.get("status", {}).get("message")
        if stanza.get("status", {}).get("code") not in (0, None) and not backups:
            repo_status = "; ".join("repo%s: %s" % (r.get("key"), r.get("status", {}).get("message")) for r in stanza.get("repo", []))
            raise DRError(NOT_FOUND, "pgbackrest info reports stanza %s as '%s' (%s); check that %s can read the repository." % (
                self.params["stanza"], self.figures["stanza_status"], repo_status or "no repository status", self.params.get("os_user")))
        if not backups:
            raise DRError(NOT_FOUND, "Stanza %s has no backup (status: %s)." % (self.params["stanza"], self.figures["stanza_status"]))
        backups.sort(key=lambda b: b["timestamp"]["start"])
        newest = backups[-1]
        started = _time.from_epoch(newest["timestamp"]["start"])
        stopped = _time.from_epoch(newest["timestamp"]["stop"])
        db_id = newest.get("database", {}).get("id")
        archive_id = None
        for entry in stanza.get("archive", []):
            if entry.get("database", {}).get("id") == db_id:
                archive_id = entry["id"]
        self.backup = newest
        self.started = started
        self.archive_id = archive_id
        self.figures["backup"] = {
            "label": newest["label"],
            "type": newest.get("type"),
            "started_at": _time.isoformat(started),
            "stopped_at": _time.isoformat(stopped),
            "age_seconds": age_seconds(started),
            "size_bytes": newest.get("info", {}).get("size"),
            "repository_size_bytes": newest.get("info", {}).get("repository", {}).get("size"),
            "start_lsn": newest.get("lsn", {}).get("start"),
            "stop_lsn": newest.get("lsn", {}).get("stop"),
            "start_segment": newest.get("archive", {}).get("start"),
            "stop_segment": newest.get("archive", {}).get("stop"),
            "archive_id": archive_id,
            "pg_version": archive_id.split("-")[0] if archive_id else None,
            "count": len(backups),
        }
        archive = [a for a in stanza.get("archive", []) if a["id"] == archive_id]
        self.figures["wal"] = {
            "archive_id": archive_id,
            "min_segment": archive[0].get("min") if archive else None,
            "newest_segment": archive[0].get("max") if archive else None,
        }
        self._scan_repo()

    def _scan_repo(self):
        self.archive = None
        repo_type = self._option("repo1-type", "posix")
        repo_path = self._option("repo1-path", "/var/lib/pgbackrest")
        if repo_type != "posix" or not self.archive_id:
            self.figures["wal"]["repository"] = "%s (not listed)" % repo_type
            return
        folder = os.path.join(repo_path, "archive", self.params["stanza"], self.archive_id)
        if not os.path.isdir(folder):
            self.figures["wal"]["repository"] = "%s (not readable here)" % folder
            return
        scan = wal.scan_tree(folder)
        segments = scan["segments"]
        self.archive = {"segments": segments, "histories": scan["histories"]}
        newest = scan["newest"]
        self.figures["wal"].update(
            repository=folder,
            segment_count=len(segments),
            newest_segment=newest or self.figures["wal"]["newest_segment"],
            newest_at=_time.isoformat(_time.from_epoch(scan["mtimes"][newest])) if newest else None,
            timelines=sorted(set(int(s[:8], 16) for s in segments)),
        )

    # -- checks --------------------------------------------------------------------
    def check_max_age(self):
        items = [("newest_backup", self.started, {"label": self.backup["label"]})]
        if self.archive is not None:
            at = self.figures["wal"].get("newest_at")
            items.append(("newest_wal", _time.parse_timestamp(at) if at else None, {"segment": self.figures["wal"]["newest_segment"]}))
        status, detail, figures = self.freshness(items)
        if self.archive is None:
            detail += "; newest WAL age not checked (repository not readable here)"
        return status, detail, figures

    def check_checksums(self):
        proc = self.pgbackrest("verify", "--log-level-console=info", "--log-level-stderr=off")
        text = proc.stdout + proc.stderr
        bad, problems, files = parse_verify_output(text)
        figures = {"rc": proc.returncode, "problems": problems[:50], "corrupt_files": files}
        if proc.returncode != 0 and not bad:
            raise DRError(APPLY_FAILED, "pgbackrest verify failed (exit %d): %s" % (proc.returncode, text.strip()[-400:]), details=figures)
        if bad:
            if files:
                return FAILED, "pgbackrest verify found damaged files: %s" % ", ".join(files[:20]), figures
            return FAILED, "pgbackrest verify reported errors: %s" % "; ".join(problems[:5] or ["status: error"]), figures
        summary = [ln.strip() for ln in text.splitlines() if "total valid files" in ln]
        return PASSED, "pgbackrest verify: %s" % (summary[-1] if summary else "no errors"), figures

    def check_wal_continuity(self):
        if self.archive is None:
            return FAILED, "The repository's archive cannot be listed from here (%s); wal_continuity needs a posix repository." % (
                self.figures["wal"].get("repository")), {}
        start_lsn = self.figures["backup"]["start_lsn"]
        tli = int((self.figures["backup"]["start_segment"] or "00000001")[:8], 16)
        result = wal.check_continuity(tli, wal.parse_lsn(start_lsn), self.archive["segments"].keys(), self.archive["histories"])
        self.figures["wal"]["gaps"] = result["gaps"]
        if result["ok"]:
            return PASSED, "%d segment(s) from %s to %s all in the repository" % (result["expected"], result["first"], result["last"]), result
        if result["last"] is None:
            return FAILED, "No WAL archived from the backup's start segment %s on" % result["first"], result
        return FAILED, "WAL gap(s) in the repository between %s and %s: %s missing" % (
            result["first"], result["last"], wal.describe_gaps(result["gaps"])), result

    def check_test_restore(self):
        pg_bin = find_pg_bin(self.params.get("pg_bin_dir"), self.figures["backup"].get("pg_version"))
        target = self.params.get("restore_target") or "latest"
        label = self.backup["label"]
        config = os.path.abspath(self.params["pgbackrest_config"])

        def copy(instance):
            args = ["restore", "--pg1-path=" + instance.data, "--set=" + label, "--archive-mode=off",
                    "--log-level-console=warn"]
            args += ["--type=immediate", "--target-action=promote"] if target == "immediate" else ["--type=default"]
            proc = self.pgbackrest(*args)
            if proc.returncode != 0:
                raise DRError(APPLY_FAILED, "pgbackrest restore failed: %s" % (proc.stderr or proc.stdout).strip()[-400:])

        def restore_command(instance):
            return "pgbackrest --config=%s --pg1-path=%s --stanza=%s archive-get %%f \"%%p\"" % (
                shlex.quote(config), shlex.quote(instance.data), shlex.quote(self.params["stanza"]))

        return test_restore(self, copy, restore_command, pg_bin)

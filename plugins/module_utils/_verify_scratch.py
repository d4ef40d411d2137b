# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throw-away PostgreSQL instance restored from a backup (private to this collection).

Everything lives in one new folder made under the caller's scratch folder: the data
directory, the server log and the Unix socket. The instance listens on 127.0.0.1 and
the given port only, never archives (``archive_mode=off``), never follows a primary, and
is stopped (``immediate``) and removed by ``close()``, which callers run in ``finally``.
PostgreSQL refuses to run as root, so commands run as ``os_user`` when we are root.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import io
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import tempfile
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
    TIMEOUT,
)

_LAST_COMMIT = re.compile(r"last completed transaction was at log time (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d(?::?\d\d)?)")


def conf_quote(value):
    return "'%s'" % str(value).replace("\\", "\\\\").replace("'", "''")


def free_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def port_in_use(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(0.5)
    try:
        return sock.connect_ex(("127.0.0.1", int(port))) == 0
    finally:
        sock.close()


def find_pg_bin(pg_bin_dir=None, version=None):
    """A folder holding pg_ctl: the one given, the Debian folder of ``version``, or PATH."""
    candidates = []
    if pg_bin_dir:
        candidates.append(pg_bin_dir)
    if version:
        candidates.append("/usr/lib/postgresql/%s/bin" % version)
        candidates.append("/usr/pgsql-%s/bin" % version)
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(os.path.dirname(found))
    if os.path.isdir("/usr/lib/postgresql"):
        for ver in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
            candidates.append("/usr/lib/postgresql/%s/bin" % ver)
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "pg_ctl")):
            return folder
    raise DRError(INVALID_ARGUMENT, "No PostgreSQL binaries (pg_ctl) found; set pg_bin_dir to the folder that holds them.")


class Completed(object):
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout or ""
        self.stderr = stderr or ""


class Runner(object):
    """Runs commands through ``module.run_command``, as ``os_user`` (``runuser``) when we
    are root (PostgreSQL refuses root), under coreutils ``timeout``, with no PG* variables
    of ours leaking into them."""

    def __init__(self, module, os_user):
        self.module = module
        self.os_user = os_user
        self.uid = self.gid = None
        self.as_other = False
        if os.geteuid() == 0 and os_user and os_user != "root":
            try:
                entry = pwd.getpwnam(os_user)
            except KeyError:
                raise DRError(INVALID_ARGUMENT, "OS user %s does not exist; set os_user to the user PostgreSQL runs as." % os_user)
            self.uid, self.gid = entry.pw_uid, entry.pw_gid
            self.home = entry.pw_dir or "/"
            self.as_other = True

    def argv(self, argv, timeout):
        prefix = []
        if timeout:
            prefix += ["timeout", "-k", "10", str(int(timeout))]
        if self.as_other:
            prefix += ["runuser", "-u", self.os_user, "--"]
        prefix += ["env"]
        for name in sorted(os.environ):
            if name.startswith("PG"):
                prefix += ["-u", name]
        prefix.append("LC_ALL=C")
        if self.as_other:
            prefix += ["HOME=" + self.home, "USER=" + self.os_user, "LOGNAME=" + self.os_user]
        return prefix + list(argv)

    def run(self, argv, timeout=600, cwd=None):
        full = self.argv(argv, timeout)
        try:
            rc, out, err = self.module.run_command(full, cwd=cwd or "/", expand_user_and_vars=False)
        except (OSError, ValueError) as exc:
            raise DRError(APPLY_FAILED, "Could not run %s: %s." % (argv[0], exc))
        if timeout and rc in (124, 137):
            raise DRError(TIMEOUT, "%s did not finish within %ss." % (os.path.basename(argv[0]), timeout))
        return Completed(rc, out, err)

    def chown_tree(self, path):
        if not self.as_other:
            return
        for root, dirs, files in os.walk(path):
            os.lchown(root, self.uid, self.gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)


class ScratchInstance(object):
    """One scratch folder and, once started, one scratch PostgreSQL server."""

    def __init__(self, parent, runner, pg_bin, port, login_user):
        if not os.path.isdir(parent):
            raise DRError(INVALID_ARGUMENT, "scratch_dir %s does not exist; create it or point scratch_dir elsewhere." % parent)
        self.runner = runner
        self.pg_bin = pg_bin
        self.port = int(port) if port else free_port()
        self.login_user = login_user
        self.root = tempfile.mkdtemp(prefix="backup_verify-", dir=parent)
        os.chmod(self.root, 0o700)
        if runner.as_other:
            os.chown(self.root, runner.uid, runner.gid)
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "postgres.log")
        self.started = False
        self.removed = False

    # -- configuration -------------------------------------------------------------
    def prepare(self, restore_settings, extra_settings=None):
        """Make the copied data directory safe to start: no standby/primary settings, our
        own pg_hba (local trust only), recovery.signal and the restore settings."""
        tablespace_map = os.path.join(self.data, "tablespace_map")
        if (os.path.exists(tablespace_map) and os.path.getsize(tablespace_map) > 0) or self._has_tablespaces():
            raise DRError(INVALID_ARGUMENT, "The backup has tablespaces outside the data directory; a scratch restore of it is not supported yet.")
        for name in ("postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal", "recovery.conf", "tablespace_map"):
            path = os.path.join(self.data, name)
            if os.path.exists(path):
                os.remove(path)
        conf = os.path.join(self.data, "postgresql.conf")
        if not os.path.exists(conf):
            with open(conf, "w") as handle:
                handle.write("# written by resilience.dr.backup_verify for a scratch restore\n")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as handle:
            handle.write("# scratch restore by resilience.dr.backup_verify: Unix socket only\nlocal all all trust\n")
        ident = os.path.join(self.data, "pg_ident.conf")
        if not os.path.exists(ident):
            open(ident, "w").close()
        settings = {
            "primary_conninfo": "",
            "primary_slot_name": "",
            "synchronous_standby_names": "",
            "hot_standby": "on",
            "recovery_target_action": "promote",
            "recovery_init_sync_method": "syncfs",
            "fsync": "off",
        }
        settings.update(restore_settings)
        settings.update(extra_settings or {})
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as handle:
            handle.write("\n# scratch restore by resilience.dr.backup_verify\n")
            for key in sorted(settings):
                handle.write("%s = %s\n" % (key, conf_quote(settings[key])))
        open(os.path.join(self.data, "recovery.signal"), "w").close()
        os.chmod(self.data, 0o700)
        self.runner.chown_tree(self.data)

    def _has_tablespaces(self):
        folder = os.path.join(self.data, "pg_tblspc")
        return os.path.isdir(folder) and bool(os.listdir(folder))

    def server_options(self):
        """Command-line settings: they win over every configuration file of the backup."""
        opts = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": self.root,
            "archive_mode": "off",
            "logging_collector": "off",
            "ssl": "off",
            "hba_file": os.path.join(self.data, "pg_hba.conf"),
            "ident_file": os.path.join(self.data, "pg_ident.conf"),
            "external_pid_file": os.path.join(self.root, "external.pid"),
            "data_directory": self.data,
        }
        return " ".join("-c %s=%s" % (k, shlex.quote(str(v))) for k, v in sorted(opts.items()))

    # -- life cycle ----------------------------------------------------------------
    def start(self, timeout):
        if port_in_use(self.port):
            raise DRError(APPLY_FAILED, "scratch_port %s on 127.0.0.1 is already in use; pick a free port for the scratch restore." % self.port)
        argv = [os.path.join(self.pg_bin, "pg_ctl"), "-D", self.data, "-l", self.log, "-o", self.server_options(),
                "-w", "-t", str(int(timeout)), "start"]
        self.started = True
        proc = self.runner.run(argv, timeout=timeout + 30)
        if proc.returncode != 0:
            raise DRError(APPLY_FAILED, "The scratch server did not start: %s" % self.log_tail(),
                          details={"pg_ctl_output": (proc.stdout + proc.stderr)[-2000:]})

    def wait_recovered(self, timeout):
        """Wait until recovery has ended and the server accepts queries."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                rows = self.query("select pg_is_in_recovery()", "postgres", timeout=10)
                if rows and rows[0][0] in ("f", "false", False):
                    return
                last = "still in recovery"
            except DRError as exc:
                last = exc.msg
            if not self._running():
                raise DRError(APPLY_FAILED, "The scratch server stopped during recovery: %s" % self.log_tail())
            time.sleep(0.1)
        raise DRError(TIMEOUT, "The scratch restore did not finish recovery within %ss (%s)." % (timeout, last))

    def _running(self):
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def query(self, sql, database, timeout=60):
        """Rows (lists of text) of one statement run with psql over the scratch socket."""
        return self.query_with_header(sql, database, timeout)[1]

    def query_with_header(self, sql, database, timeout=60):
        """(column names, rows as lists of text) of one statement run with psql."""
        argv = [os.path.join(self.pg_bin, "psql"), "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1",
                "-h", self.root, "-p", str(self.port), "-U", self.login_user, "-d", database, "-c", sql]
        proc = self.runner.run(argv, timeout=timeout)
        if proc.returncode != 0:
            raise DRError(APPLY_FAILED, (proc.stderr.strip() or "psql exited with %d" % proc.returncode)[-500:])
        rows = list(csv.reader(io.StringIO(proc.stdout)))
        return (rows[0], rows[1:]) if rows else ([], [])

    def log_text(self):
        try:
            with open(self.log, errors="replace") as handle:
                return handle.read()
        except (IOError, OSError):
            return ""

    def log_tail(self, lines=8):
        text = self.log_text().strip().splitlines()
        return " | ".join(text[-lines:]) or "(no server log)"

    def last_commit_from_log(self):
        found = _LAST_COMMIT.findall(self.log_text())
        return found[-1] if found else None

    def stop(self):
        if not self.started or not self._running():
            return
        self.runner.run([os.path.join(self.pg_bin, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "-t", "30", "stop"], timeout=60)
        deadline = time.monotonic() + 15
        while self._running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._running():
            pid = self._pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        os.kill(pid, 0)
                    except OSError:
                        break
                    time.sleep(0.1)

    def _pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as handle:
                return int(handle.readline().strip())
        except (IOError, OSError, ValueError):
            return None

    def close(self):
        """Stop the server and remove the whole scratch folder. Returns True when gone."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            if os.path.exists(self.root):
                shutil.rmtree(self.root, ignore_errors=True)
            self.removed = not os.path.exists(self.root)
        return self.removed

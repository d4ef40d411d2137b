# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drive the lab and the collection's modules from integration tests.

The lab is the one users run (`make lab`, `playbooks/lab.yml`); a test brings up its own
instance with its own root folder and port block when it changes things, so tests do not
interfere with each other or with a user's lab::

    lab = Lab.up("promote", port_base=21000, synchronous=True)
    rows = lab.sql("select count(*) from events")            # on the primary, appdb
    lab.haproxy("show servers state pg")
    result = run_module("resilience.dr.replica_promote", {...}, check=True)
    lab.down()

Ports of an instance, from its ``port_base``: +0 HAProxy PostgreSQL frontend, +1 primary,
+2 replica, +80 HAProxy HTTP frontend, +81 nginx blue, +82 nginx green, +90 nginx edge
(upstream include file), +99 HAProxy runtime API over TCP. All on 127.0.0.1.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
COLLECTIONS = os.path.join(ROOT, "build", "collections")
LAB_BASE = os.environ.get("RESILIENCE_LAB_BASE", "/var/tmp/resilience-dr")


def ansible_env(**extra):
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS
    env["ANSIBLE_ROLES_PATH"] = os.path.join(ROOT, "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "0"
    env["ANSIBLE_LOCALHOST_WARNING"] = "0"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "0"
    env["ANSIBLE_PYTHON_INTERPRETER"] = os.path.join(VENV_BIN, "python")
    env.update(extra)
    return env


def run_playbook(playbook, extra_vars=None, check=False, diff=False, inventory=None, timeout=900, env=None):
    """Run ansible-playbook; return the CompletedProcess (stdout+stderr in .stdout)."""
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory or os.path.join(ROOT, "inventories", "lab")]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    cmd.append(playbook if os.path.isabs(playbook) else os.path.join(ROOT, playbook))
    return subprocess.run(cmd, cwd=ROOT, env=ansible_env(**(env or {})), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout, check=False)


def run_module(module, args, check=False, diff=False, timeout=600, env=None):
    """Run one module on localhost through ansible's ad-hoc command; return its result dict
    (``failed`` is set when the module failed). The result is read from the file that
    ``ansible --tree`` writes for the host, not parsed from the screen."""
    tree = tempfile.mkdtemp(prefix="resilience-dr-tree-")
    cmd = [os.path.join(VENV_BIN, "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-m", module, "-a", json.dumps(args), "--tree", tree]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
            env=ansible_env(**(env or {})), check=False,
        )
        path = os.path.join(tree, "localhost")
        if not os.path.exists(path):
            raise AssertionError("ansible wrote no result (rc=%s):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
        with open(path) as handle:
            result = json.load(handle)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    # a failed module's tree file does not always carry `failed`; ansible's exit code does
    result.setdefault("failed", proc.returncode != 0)
    result["_raw_stdout"] = proc.stdout
    result["_raw_stderr"] = proc.stderr
    return result


class Lab(object):
    """A running lab instance, described by the lab.json its role writes."""

    def __init__(self, info):
        self.info = info
        self.root = info["root"]

    # -- life cycle -----------------------------------------------------------------
    @classmethod
    def vars_for(cls, name, port_base, synchronous=False, **extra):
        lab_vars = {
            "lab_state": "present",
            "lab_name": name,
            "lab_root": os.path.join(LAB_BASE, name),
            "lab_port_base": port_base,
            "lab_synchronous": synchronous,
        }
        lab_vars.update(extra)
        return lab_vars

    @classmethod
    def up(cls, name="default", port_base=15000, synchronous=False, **extra):
        lab_vars = cls.vars_for(name, port_base, synchronous, **extra)
        if os.path.exists(os.path.join(lab_vars["lab_root"], "lab.json")):
            # a lab left behind by an interrupted run: tests start from a fresh one
            run_playbook("playbooks/lab.yml", dict(lab_vars, lab_state="absent"))
        proc = run_playbook("playbooks/lab.yml", lab_vars)
        if proc.returncode != 0:
            raise AssertionError("lab %s did not come up:\n%s" % (name, proc.stdout[-6000:]))
        return cls.load(lab_vars["lab_root"])

    @classmethod
    def load(cls, root):
        with open(os.path.join(root, "lab.json")) as handle:
            return cls(json.load(handle))

    def down(self):
        """Stop any restored cluster a test left running under <root>/restores, then remove the lab."""
        for data_dir in glob.glob(os.path.join(self.root, "restores", "*")):
            stop_pg(self, data_dir)
        proc = run_playbook("playbooks/lab.yml", {
            "lab_state": "absent", "lab_name": self.info["name"], "lab_root": self.root,
            "lab_port_base": self.info["port_base"],
        })
        if proc.returncode != 0:
            raise AssertionError("lab %s did not come down:\n%s" % (self.info["name"], proc.stdout[-6000:]))
        return proc

    # -- PostgreSQL -----------------------------------------------------------------
    def dsn(self, node="primary", db=None, user=None, password=None):
        conf = self.info[node] if node in ("primary", "replica") else {"port": int(node)}
        return "host=127.0.0.1 port=%d dbname=%s user=%s password=%s connect_timeout=5" % (
            conf["port"], db or self.info["database"], user or self.info["superuser"],
            password if password is not None else self.info["password"])

    def connect(self, node="primary", db=None, autocommit=True):
        import psycopg  # pylint: disable=import-outside-toplevel
        return psycopg.connect(self.dsn(node, db), autocommit=autocommit)

    def sql(self, query, params=None, node="primary", db=None):
        """Run one statement and return its rows (a list of tuples; [] when it returns none)."""
        with self.connect(node, db) as conn:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []

    def in_recovery(self, node):
        return self.sql("select pg_is_in_recovery()", node=node)[0][0]

    # -- HAProxy --------------------------------------------------------------------
    def haproxy(self, command):
        """Send one runtime API command over the admin socket; return the answer."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(self.info["haproxy"]["socket"])
        try:
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        finally:
            sock.close()
        return b"".join(chunks).decode()

    def servers_state(self, backend):
        """``show servers state`` of a backend as {server_name: {field: value}}."""
        lines = self.haproxy("show servers state %s" % backend).strip().splitlines()
        header = lines[1].lstrip("# ").split()
        out = {}
        for line in lines[2:]:
            values = line.split()
            row = dict(zip(header, values))
            out[row["srv_name"]] = row
        return out

    # -- HTTP -----------------------------------------------------------------------
    def http_get(self, port=None, path="/", timeout=3):
        """GET through HAProxy's HTTP frontend (or another port); return (status, body)."""
        url = "http://127.0.0.1:%d%s" % (port or self.info["haproxy"]["http_port"], path)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


class Writer(threading.Thread):
    """Write load for failover tests, benchmarks and chaos: inserts through HAProxy (or
    ``port``) until stopped or ``limit_seconds`` have passed, reconnecting after errors,
    and keeps (time, id) of every acknowledged row."""

    def __init__(self, lab, limit_seconds=120, port=None, payload="load"):
        super(Writer, self).__init__(daemon=True)
        self.dsn = lab.dsn(str(port or lab.info["haproxy"]["pg_port"])).replace("connect_timeout=5", "connect_timeout=2")
        self.payload = payload
        self.acked = []
        self.failures = 0
        self.stop_event = threading.Event()
        self.limit = limit_seconds

    def run(self):
        import psycopg  # pylint: disable=import-outside-toplevel
        deadline = time.monotonic() + self.limit
        conn = None
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                row = conn.execute("insert into events (payload) values (%s) returning id", (self.payload,)).fetchone()
                self.acked.append((time.monotonic(), row[0]))
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass
                conn = None
                time.sleep(0.005)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_event.set()
        self.join(10)

    def figures(self, t0):
        """Acknowledged rows, failed attempts, the longest gap between two acknowledged writes
        around ``t0`` and the RTO it implies (end of that gap - t0)."""
        times = [pair[0] for pair in self.acked]
        gaps = [(b - a, b) for a, b in zip(times, times[1:]) if b > t0 - 0.5]
        longest = max(gaps) if gaps else (0.0, t0)
        return {"acknowledged": len(self.acked), "failed_requests": self.failures,
                "write_gap_seconds": round(longest[0], 3),
                "rto_seconds": round(longest[1] - t0, 3) if longest[0] > 0.05 else None}


@contextlib.contextmanager
def moto_server(port, timeout=30):
    """moto's server on 127.0.0.1:``port`` for the length of the block; yields its endpoint
    URL and stops it (by its PID) afterwards, also when the block fails."""
    with socket.socket() as probe:
        probe.settimeout(0.3)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise AssertionError("port %d is already in use: moto_server cannot start there" % port)
    proc = subprocess.Popen([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("moto_server did not start on port %d" % port)
                time.sleep(0.1)
        yield "http://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_until(predicate, timeout=30, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


# -- snapshots of everything a runbook could change (check-mode and ansible-runner tests) ----
HAPROXY_STABLE_FIELDS = ("srv_addr", "srv_port", "srv_op_state", "srv_admin_state", "srv_uweight", "srv_iweight")


def _sha256(path):
    import hashlib  # pylint: disable=import-outside-toplevel
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _listing(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


# A green release through HAProxy's web backend, recorded as a switch with its way back (the
# undo rollback.yml level traffic reads); the rollback tests add their own tasks after it.
GREEN_RELEASE = """---
- name: Green release v2, recorded with its way back
  hosts: load_balancers
  gather_facts: false
  tasks:
    - name: Send the web traffic to green
      resilience.dr.traffic_switch:
        provider: haproxy
        haproxy_socket: "{{ dr_haproxy_socket }}"
        haproxy_backend: "{{ dr_haproxy_http_backend }}"
        active: green
      register: release
    - name: Record the switch
      resilience.dr.rollback_record:
        path: "{{ dr_records_file }}"
        kind: switch
        status: completed
        reason: release v2
        undo: "{{ release.undo }}"
"""


def stop_pg(lab, data_dir):
    """pg_ctl stop -m immediate of a cluster a test started (a restore) when its pid file is there."""
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        subprocess.run(["runuser", "-u", lab.info["os_user"], "--", os.path.join(lab.info["pg_bin"], "pg_ctl"), "-D", data_dir,
                        "-m", "immediate", "-w", "stop"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


def records(lab):
    """The lab's rollback_record file (the runbooks' records), as a list of dicts; [] when absent."""
    path = os.path.join(lab.root, "records", "dr-records.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def web(lab):
    """HAProxy's web backend: {server: True when it takes traffic (not in maintenance or drain)}."""
    state = lab.servers_state("web")
    return {name: int(row["srv_admin_state"]) & 0x23 == 0 for name, row in state.items()}


def captures(lab):
    """capture_state's folders in the lab, oldest first."""
    return sorted(glob.glob(os.path.join(lab.root, "rollback_state", "rollback_state_*")))


def haproxy_state(lab, backend):
    """``show servers state`` of a backend without what moves by itself (time since last change,
    health-check counters): {server: {addr, port, op_state, admin_state, uweight, iweight}}."""
    return {name: {key: row.get(key) for key in HAPROXY_STABLE_FIELDS} for name, row in lab.servers_state(backend).items()}


def settle(lab):
    """Make the next snapshots comparable: VACUUM ANALYZE, then CHECKPOINT every running node (pg_control's timeline
    moves at the first checkpoint after a promotion), switch the WAL of the node that takes
    writes and wait until the archive holds it (archive_timeout would otherwise add a segment
    between two snapshots)."""
    import psycopg  # pylint: disable=import-outside-toplevel
    for node in ("primary", "replica"):
        try:
            if not lab.in_recovery(node):
                lab.sql("vacuum analyze", node=node)  # else autovacuum writes WAL later, and archive_timeout archives it
            lab.sql("checkpoint", node=node)
        except psycopg.OperationalError:
            continue
        if not lab.in_recovery(node):
            segment, since = lab.sql("select pg_walfile_name(pg_current_wal_lsn()), now()", node=node)[0]
            lab.sql("select pg_switch_wal()", node=node)

            def archived_or_failing(seg=segment, since=since, node=node):
                # an archiver that fails (a promoted node pgBackRest refuses) leaves the archive as it is
                return os.path.exists(os.path.join(lab.info["wal_archive"], seg)) or lab.sql(
                    "select coalesce(last_failed_time > %s and last_failed_time > coalesce(last_archived_time, %s), false)"
                    " from pg_stat_archiver", (since, since), node=node)[0][0]

            wait_until(archived_or_failing, timeout=60, what="WAL segment %s archived" % segment)


def snapshot(lab):
    """Everything a runbook could change on the lab, read from the components themselves:
    each PostgreSQL node's role, timelines (live and pg_control), fence and sync settings,
    replication and the row count of every table in appdb; HAProxy's pg and web backends;
    nginx's config files and the record files by hash; the base backups, the WAL archive and
    the data dirs by listing; and the lab folder two levels deep (dumps, restores, captures,
    reports...). Two snapshots of a lab nobody touched in between are equal (after settle())."""
    import psycopg  # pylint: disable=import-outside-toplevel
    info, root = lab.info, lab.root
    out = {"postgres": {}, "rows": {}}
    for node in ("primary", "replica"):
        try:
            with lab.connect(node) as conn:
                row = conn.execute(
                    "select pg_is_in_recovery(), c.timeline_id, c.prev_timeline_id, current_setting('default_transaction_read_only'),"
                    " current_setting('synchronous_standby_names'), r.min_recovery_end_timeline, r.end_of_backup_record_required"
                    " from pg_control_checkpoint() c, pg_control_recovery() r").fetchone()
                state = dict(zip(("in_recovery", "pg_control_timeline", "pg_control_prev_timeline", "read_only",
                                  "synchronous_standby_names", "min_recovery_end_timeline", "end_of_backup_record_required"), row))
                if state["in_recovery"]:
                    state["replay_paused"] = conn.execute("select pg_is_wal_replay_paused()").fetchone()[0]
                    state["upstream_port"] = (conn.execute("select sender_port from pg_stat_wal_receiver").fetchone() or [None])[0]
                else:
                    state["timeline"] = int(conn.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()[0][:8], 16)
                    state["standbys"] = sorted(conn.execute("select application_name, sync_state from pg_stat_replication").fetchall())
                    state["slots"] = sorted(conn.execute("select slot_name, slot_type from pg_replication_slots").fetchall())
                    tables = [r[0] for r in conn.execute(
                        "select format('%I.%I', schemaname, relname) from pg_stat_user_tables order by 1").fetchall()]
                    out["rows"][node] = {t: conn.execute("select count(*) from %s" % t).fetchone()[0] for t in tables}
        except psycopg.OperationalError:
            state = "down"
        out["postgres"][node] = state
    out["data_dirs"] = {node: _listing(info[node]["data_dir"]) for node in ("primary", "replica")}
    out["haproxy"] = {backend: haproxy_state(lab, backend) for backend in ("pg", "web")}
    nginx_dir = os.path.join(root, "nginx")
    out["nginx"] = {os.path.relpath(os.path.join(d, f), root): _sha256(os.path.join(d, f))
                    for d, _sub, files in os.walk(nginx_dir) for f in files if f.endswith(".conf")}
    records_dir = os.path.join(root, "records")
    out["records"] = {f: _sha256(os.path.join(records_dir, f)) for f in (_listing(records_dir) or [])}
    out["base_backups"] = _listing(info["base_backups"])
    out["wal_archive"] = _listing(info["wal_archive"])
    skip = {"pg", "wal_archive", "pgbackrest", "log", "backups"}
    out["tree"] = sorted(
        os.listdir(root)
        + [os.path.join(top, sub) for top in os.listdir(root) if top not in skip and os.path.isdir(os.path.join(root, top))
           for sub in os.listdir(os.path.join(root, top))])
    return out


def snapshot_diff(before, after):
    """The top-level keys (and nodes / backends / files) that differ, for an assertion message."""
    diff = {}
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            a, b = before.get(key), after.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                diff[key] = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
            else:
                diff[key] = (a, b)
    return diff


def comparable(lab, snap):
    """A snapshot with what legitimately differs between two labs built alike taken out: ports
    become offsets from the lab's port base, the lab's root and ports are blanked in nginx's files
    before hashing, records become their (kind, status) list, backups a count, the WAL archive its
    timelines, and digits in file names (times, random ids) a '#'."""
    import re  # pylint: disable=import-outside-toplevel
    base, root = lab.info["port_base"], lab.root

    def offset(port):
        return None if port in (None, "") else int(port) - base

    def blank(text):
        text = text.replace(root, "<root>")
        return re.sub(r"\b%s(\d\d)\b" % str(base)[:-2], r"<base+\1>", text)

    out = json.loads(json.dumps(snap))
    for state in out["postgres"].values():
        if isinstance(state, dict) and "upstream_port" in state:
            state["upstream_port"] = offset(state["upstream_port"])
    for servers in out["haproxy"].values():
        for row in servers.values():
            row["srv_port"] = offset(row["srv_port"])
    out["nginx"] = {}
    for rel in snap["nginx"]:
        with open(os.path.join(root, rel)) as handle:
            out["nginx"][rel] = blank(handle.read())
    out["records"] = {}
    for name in snap["records"]:
        with open(os.path.join(root, "records", name)) as handle:
            out["records"][name] = [[r["kind"], r["status"]] for r in (json.loads(line) for line in handle if line.strip())]
    out["base_backups"] = len(snap["base_backups"] or [])
    out["wal_archive"] = sorted({n[:8] for n in snap["wal_archive"] or []} | {n for n in snap["wal_archive"] or [] if n.endswith(".history")})
    out["tree"] = sorted({re.sub(r"\d+", "#", path) for path in snap["tree"]})
    return out

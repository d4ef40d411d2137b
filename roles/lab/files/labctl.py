# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process and data control of the resilience.dr lab (used by roles/lab).

Every sub-command reads the lab description (the JSON the role renders), does its one
thing idempotently and prints one JSON object with ``changed`` (and details). Errors
print ``{"failed": true, "msg": ...}`` and exit 1. PostgreSQL and pgBackRest run as the
lab's OS user (``postgres``) when this runs as root.

    labctl.py preflight LAB_JSON        check binaries, user and ports; report what runs
    labctl.py primary LAB_JSON          initdb, configure, start, sample database
    labctl.py replica LAB_JSON          slot, pg_basebackup, configure, start
    labctl.py base-backup LAB_JSON      a pg_basebackup with manifest when none exists
    labctl.py pgbackrest LAB_JSON       stanza, check, one full backup when none exists
    labctl.py haproxy LAB_JSON          configure and start (reload on change)
    labctl.py nginx LAB_JSON            blue, green and edge instances
    labctl.py status LAB_JSON           what runs, replication state
    labctl.py stop LAB_JSON [names]     stop components (all by default)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time

COMPONENTS = ["nginx_blue", "nginx_green", "nginx_edge", "haproxy", "replica", "primary"]


class LabError(Exception):
    pass


# -- helpers ---------------------------------------------------------------------------
def load(path):
    if path == "-":
        return json.load(sys.stdin)
    with open(path) as handle:
        return json.load(handle)


def os_user(lab):
    return pwd.getpwnam(lab["os_user"])


def as_user(lab):
    """preexec_fn that drops to the lab's OS user when we are root."""
    if os.geteuid() != 0:
        return None
    user = os_user(lab)

    def drop():
        os.setgid(user.pw_gid)
        os.initgroups(user.pw_name, user.pw_gid)
        os.setuid(user.pw_uid)
    return drop


def run(cmd, lab=None, user=False, check=True, env=None, timeout=600, cwd=None):
    full_env = dict(os.environ)
    if user and lab is not None:
        pw = os_user(lab)
        full_env.update(HOME=pw.pw_dir, USER=pw.pw_name, LOGNAME=pw.pw_name)
    full_env.update(env or {})
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=full_env,
        preexec_fn=as_user(lab) if (user and lab is not None) else None, timeout=timeout,
        cwd=cwd or "/", check=False,
    )
    if check and proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()[-2000:]
        raise LabError("%s failed (exit %d): %s" % (" ".join(cmd), proc.returncode, output))
    return proc


def chown(lab, path):
    if os.geteuid() == 0:
        user = os_user(lab)
        os.chown(path, user.pw_uid, user.pw_gid)


def makedirs(lab, path, owned=False, mode=0o750):
    if not os.path.isdir(path):
        os.makedirs(path, mode)
    if owned:
        chown(lab, path)
    os.chmod(path, mode)


def write_file(path, content, mode=0o644, lab=None, owned=False):
    """Write ``content`` when it differs; return True when the file changed."""
    try:
        with open(path) as handle:
            if handle.read() == content:
                return False
    except (IOError, OSError):
        pass
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    if owned and lab is not None:
        chown(lab, tmp)
    os.rename(tmp, path)
    return True


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except (IOError, OSError):
        return False


def read_pid(path):
    try:
        with open(path) as handle:
            return int(handle.readline().strip())
    except (IOError, OSError, ValueError):
        return None


def port_in_use(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return True
    finally:
        sock.close()
    return False


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


# -- PostgreSQL ------------------------------------------------------------------------
def pg_bin(lab, name):
    return os.path.join(lab["pg_bin"], name)


def pg_running(node):
    pid = read_pid(os.path.join(node["data_dir"], "postmaster.pid"))
    return pid is not None and pid_alive(pid)


def psql(lab, node, sql, db="postgres"):
    """Run SQL over the node's Unix socket as the OS user (trust); return stdout rows."""
    proc = run([pg_bin(lab, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", node["socket_dir"],
                "-p", str(node["port"]), "-d", db, "-c", sql], lab=lab, user=True)
    return [line for line in proc.stdout.splitlines() if line]


def pg_conf(lab, node, role, sync=False):
    lines = [
        "# managed by resilience.dr lab (roles/lab); changes are overwritten",
        "listen_addresses = '127.0.0.1'",
        "port = %d" % node["port"],
        "unix_socket_directories = '%s'" % node["socket_dir"],
        "wal_level = replica",
        "max_wal_senders = 10",
        "max_replication_slots = 10",
        "wal_keep_size = '256MB'",
        "hot_standby = on",
        "hot_standby_feedback = on",
        "archive_mode = on",
        # --pg1-path: this node's own data dir, so that archiving still works once the replica is
        # promoted (pgBackRest refuses a working directory other than pg1-path)
        "archive_command = '%s %%p %%f && pgbackrest --config=%s --stanza=%s --pg1-path=%s archive-push %%p'" % (
            os.path.join(lab["root"], "bin", "archive-wal"), lab["pgbackrest"]["config"], lab["pgbackrest"]["stanza"],
            node["data_dir"]),
        "archive_timeout = '60s'",
        "wal_retrieve_retry_interval = '200ms'",
        "logging_collector = off",
        "log_line_prefix = '%m [%p] '",
        "log_checkpoints = on",
        "shared_buffers = '64MB'",
        "max_connections = 50",
        "synchronous_commit = on",
    ]
    if role == "primary":
        # synchronous only once the replica streams: a commit on a primary that waits for a
        # standby that does not exist yet never returns
        lines.append("synchronous_standby_names = '%s'" % (lab["replica"]["application_name"] if sync else ""))
    else:
        lines.append("primary_slot_name = '%s'" % lab["replica"]["slot"])
        lines.append("primary_conninfo = 'host=127.0.0.1 port=%d user=%s password=%s application_name=%s'" % (
            lab["primary"]["port"], lab["replication_user"], lab["password"], lab["replica"]["application_name"]))
        lines.append("synchronous_standby_names = ''")
    return "\n".join(lines) + "\n"


HBA = """# managed by resilience.dr lab (roles/lab)
local   all             all                                     trust
local   replication     all                                     trust
host    all             all             127.0.0.1/32            scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
"""


def configure_pg(lab, node, role, sync=False):
    """Write the lab's settings into the data dir; return True when they changed."""
    changed = write_file(os.path.join(node["data_dir"], "lab.conf"), pg_conf(lab, node, role, sync), 0o600, lab, True)
    changed |= write_file(os.path.join(node["data_dir"], "pg_hba.conf"), HBA, 0o600, lab, True)
    main_conf = os.path.join(node["data_dir"], "postgresql.conf")
    with open(main_conf) as handle:
        text = handle.read()
    if "include_if_exists = 'lab.conf'" not in text:
        write_file(main_conf, text.rstrip("\n") + "\ninclude_if_exists = 'lab.conf'\n", 0o600, lab, True)
        changed = True
    # pg_basebackup copies postgresql.auto.conf (primary_conninfo from -R): the lab owns those settings
    auto = os.path.join(node["data_dir"], "postgresql.auto.conf")
    if os.path.exists(auto):
        with open(auto) as handle:
            kept = [ln for ln in handle.read().splitlines() if not ln.startswith(("primary_conninfo", "primary_slot_name"))]
        changed |= write_file(auto, "\n".join(kept) + "\n", 0o600, lab, True)
    return changed


def start_pg(lab, node):
    run([pg_bin(lab, "pg_ctl"), "start", "-w", "-t", "60", "-D", node["data_dir"], "-l", node["log"]], lab=lab, user=True)
    if not wait_port(node["port"], 30):
        raise LabError("PostgreSQL at %s did not open port %d; see %s" % (node["data_dir"], node["port"], node["log"]))


def stop_pg(lab, node):
    if not os.path.exists(os.path.join(node["data_dir"], "postmaster.pid")):
        return False
    if not pg_running(node):
        os.unlink(os.path.join(node["data_dir"], "postmaster.pid"))
        return False
    run([pg_bin(lab, "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "60", "-D", node["data_dir"]], lab=lab, user=True)
    deadline = time.monotonic() + 30
    while os.path.exists(os.path.join(node["data_dir"], "postmaster.pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def ensure_running(lab, node, role, changed_conf):
    if not pg_running(node):
        start_pg(lab, node)
        return True
    if changed_conf:
        run([pg_bin(lab, "pg_ctl"), "restart", "-m", "fast", "-w", "-t", "60", "-D", node["data_dir"], "-l", node["log"]],
            lab=lab, user=True)
        wait_port(node["port"], 30)
        return True
    return False


def cmd_primary(lab):
    node = lab["primary"]
    changed = False
    makedirs(lab, node["socket_dir"], owned=True, mode=0o755)
    if not os.path.exists(os.path.join(node["data_dir"], "PG_VERSION")):
        makedirs(lab, node["data_dir"], owned=True, mode=0o700)
        pwfile = os.path.join(lab["root"], "run", ".initdb-pw")
        write_file(pwfile, lab["password"] + "\n", 0o600, lab, True)
        try:
            run([pg_bin(lab, "initdb"), "-D", node["data_dir"], "-U", lab["superuser"], "--pwfile", pwfile,
                 "-A", "scram-sha-256", "--auth-local", "trust", "-E", "UTF8", "--locale", "C", "--data-checksums"],
                lab=lab, user=True)
        finally:
            os.unlink(pwfile)
        changed = True
    sync = bool(lab["synchronous"]) and pg_running(lab["replica"])
    changed |= ensure_running(lab, node, "primary", configure_pg(lab, node, "primary", sync))
    # roles, sample database and table
    sql_role = ("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN "
                "CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s'; END IF; END$$;") % (
                    lab["replication_user"], lab["replication_user"], lab["password"])
    psql(lab, node, sql_role)
    if not psql(lab, node, "SELECT 1 FROM pg_database WHERE datname = '%s'" % lab["database"]):
        psql(lab, node, "CREATE DATABASE %s" % lab["database"])
        changed = True
    if not psql(lab, node, "SELECT 1 FROM pg_tables WHERE tablename = '%s'" % lab["table"], db=lab["database"]):
        psql(lab, node, (
            "CREATE TABLE %s (id bigserial PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
            "payload text NOT NULL DEFAULT 'sample'); "
            "CREATE INDEX ON %s (written_at); "
            "INSERT INTO %s (payload) SELECT 'seed-' || g FROM generate_series(1, %d) g;") % (
                lab["table"], lab["table"], lab["table"], lab["sample_rows"]), db=lab["database"])
        changed = True
    return {"changed": changed, "port": node["port"]}


def cmd_replica(lab):
    node = lab["replica"]
    primary = lab["primary"]
    changed = False
    if not pg_running(primary):
        raise LabError("the primary is not running; run the primary step first")
    slot = node["slot"]
    if not psql(lab, primary, "SELECT 1 FROM pg_replication_slots WHERE slot_name = '%s'" % slot):
        psql(lab, primary, "SELECT pg_create_physical_replication_slot('%s', true)" % slot)
        changed = True
    makedirs(lab, node["socket_dir"], owned=True, mode=0o755)
    if not os.path.exists(os.path.join(node["data_dir"], "PG_VERSION")):
        if os.path.isdir(node["data_dir"]):
            shutil.rmtree(node["data_dir"])
        makedirs(lab, os.path.dirname(node["data_dir"]), owned=True, mode=0o755)
        run([pg_bin(lab, "pg_basebackup"), "-h", primary["socket_dir"], "-p", str(primary["port"]), "-U", lab["superuser"],
             "-D", node["data_dir"], "-X", "stream", "-c", "fast", "--no-sync"], lab=lab, user=True)
        with open(os.path.join(node["data_dir"], "standby.signal"), "w"):
            pass
        chown(lab, os.path.join(node["data_dir"], "standby.signal"))
        changed = True
    changed |= ensure_running(lab, node, "replica", configure_pg(lab, node, "replica"))
    # wait until it streams
    deadline = time.monotonic() + 30
    state = []
    while time.monotonic() < deadline:
        state = psql(lab, primary, "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = '%s'"
                     % node["application_name"])
        if state and state[0].startswith("streaming"):
            break
        time.sleep(0.1)
    else:
        raise LabError("the replica did not start streaming within 30 s; see %s" % node["log"])
    if configure_pg(lab, primary, "primary", bool(lab["synchronous"])):
        # synchronous_standby_names needs a reload only
        run([pg_bin(lab, "pg_ctl"), "reload", "-D", primary["data_dir"]], lab=lab, user=True)
        changed = True
        want = "sync" if lab["synchronous"] else "async"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = psql(lab, primary, "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = '%s'"
                         % node["application_name"])
            if state and state[0].endswith(want):
                break
            time.sleep(0.1)
        else:
            raise LabError("replication did not become %s within 30 s" % want)
    return {"changed": changed, "port": node["port"], "replication": state[0]}


def cmd_base_backup(lab):
    existing = sorted(glob.glob(os.path.join(lab["base_backups"], "base-*", "backup_manifest")))
    if existing:
        return {"changed": False, "backup": os.path.dirname(existing[-1])}
    makedirs(lab, lab["base_backups"], owned=True, mode=0o750)
    name = "base-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = os.path.join(lab["base_backups"], name)
    tmp = target + ".partial"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    primary = lab["primary"]
    run([pg_bin(lab, "pg_basebackup"), "-h", primary["socket_dir"], "-p", str(primary["port"]), "-U", lab["superuser"],
         "-D", tmp, "-X", "stream", "-c", "fast", "--manifest-checksums=CRC32C", "-l", name], lab=lab, user=True)
    os.rename(tmp, target)
    return {"changed": True, "backup": target}


def pgbackrest(lab, *args, **kwargs):
    cfg = lab["pgbackrest"]
    return run(["pgbackrest", "--config=" + cfg["config"], "--stanza=" + cfg["stanza"]] + list(args),
               lab=lab, user=True, **kwargs)


def cmd_pgbackrest(lab):
    cfg = lab["pgbackrest"]
    changed = False
    for path in (cfg["repo"], cfg["log_path"], cfg["lock_path"], cfg["spool_path"]):
        makedirs(lab, path, owned=True, mode=0o750)
    info = json.loads(pgbackrest(lab, "info", "--output=json").stdout or "[]")
    stanza_ok = bool(info) and info[0].get("status", {}).get("code") in (0, 2)
    if not stanza_ok:
        pgbackrest(lab, "stanza-create")
        changed = True
        info = json.loads(pgbackrest(lab, "info", "--output=json").stdout or "[]")
    pgbackrest(lab, "check")
    if not info or not info[0].get("backup"):
        pgbackrest(lab, "backup", "--type=full")
        changed = True
        info = json.loads(pgbackrest(lab, "info", "--output=json").stdout or "[]")
    return {"changed": changed, "backups": [b["label"] for b in info[0].get("backup", [])]}


# -- HAProxy and nginx -----------------------------------------------------------------
def haproxy_cfg(lab):
    hp = lab["haproxy"]
    return """# managed by resilience.dr lab (roles/lab)
global
    stats socket {socket} mode 600 level admin expose-fd listeners
    stats socket ipv4@127.0.0.1:{admin_port} level admin
    stats timeout 30s
    pidfile {pid_file}
    log stdout format raw local0 err

defaults
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s

frontend pg_in
    mode tcp
    bind 127.0.0.1:{pg_port}
    default_backend {pg_backend}

backend {pg_backend}
    mode tcp
    # no connection retries: a client that reaches a dead primary fails at once (TESTING-NOTES)
    retries 0
    # a server leaving maintenance is checked every 100 ms until it is up (a failover waits on it)
    default-server inter 1s fastinter 100ms downinter 100ms fall 2 rise 1 on-marked-down shutdown-sessions
    server primary 127.0.0.1:{primary_port} check
    server replica 127.0.0.1:{replica_port} check disabled

frontend web_in
    mode http
    bind 127.0.0.1:{http_port}
    default_backend {http_backend}

backend {http_backend}
    mode http
    option httpchk GET /health
    default-server inter 1s fastinter 100ms downinter 100ms fall 2 rise 1
    server blue 127.0.0.1:{blue_port} check
    server green 127.0.0.1:{green_port} check disabled
""".format(socket=hp["socket"], admin_port=hp["admin_port"], pid_file=hp["pid_file"], pg_port=hp["pg_port"],
           pg_backend=hp["pg_backend"], primary_port=lab["primary"]["port"], replica_port=lab["replica"]["port"],
           http_port=hp["http_port"], http_backend=hp["http_backend"], blue_port=lab["nginx"]["blue"]["port"],
           green_port=lab["nginx"]["green"]["port"])


def cmd_haproxy(lab):
    hp = lab["haproxy"]
    makedirs(lab, os.path.dirname(hp["config"]), mode=0o755)
    changed_conf = write_file(hp["config"], haproxy_cfg(lab), 0o644)
    run([lab["haproxy_bin"], "-c", "-q", "-f", hp["config"]])
    pid = read_pid(hp["pid_file"])
    if pid and pid_alive(pid):
        if not changed_conf:
            return {"changed": False, "pid": pid}
        run([lab["haproxy_bin"], "-D", "-f", hp["config"], "-p", hp["pid_file"], "-sf", str(pid)])
    else:
        run([lab["haproxy_bin"], "-D", "-f", hp["config"], "-p", hp["pid_file"]])
    for port in (hp["pg_port"], hp["http_port"]):
        if not wait_port(port, 10):
            raise LabError("HAProxy did not open port %d" % port)
    return {"changed": True, "pid": read_pid(hp["pid_file"])}


def nginx_conf(lab, name):
    conf = lab["nginx"][name]
    head = """# managed by resilience.dr lab (roles/lab)
daemon on;
worker_processes 1;
pid {pid_file};
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
""".format(pid_file=conf["pid_file"], dir=conf["dir"])
    if name == "edge":
        body = """    include {upstream_file};
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://{upstream}; proxy_next_upstream off; }}
    }}
}}
""".format(upstream_file=conf["upstream_file"], port=conf["port"], upstream=conf["upstream_name"])
    else:
        body = """    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        add_header X-Version {version} always;
        location = /health {{ return 200 "ok\\n"; }}
        location / {{ return 200 "{name} {version}\\n"; }}
    }}
}}
""".format(port=conf["port"], version=conf["version"], name=name)
    return head + body


def cmd_nginx(lab):
    out = {"changed": False}
    for name in ("blue", "green", "edge"):
        conf = lab["nginx"][name]
        makedirs(lab, os.path.join(conf["dir"], "tmp"), mode=0o755)
        changed_conf = write_file(conf["config"], nginx_conf(lab, name), 0o644)
        if name == "edge" and not os.path.exists(conf["upstream_file"]):
            # created once: afterwards it belongs to traffic_switch (provider nginx)
            write_file(conf["upstream_file"], "upstream %s {\n    server 127.0.0.1:%d;\n}\n" % (
                conf["upstream_name"], lab["nginx"]["blue"]["port"]), 0o644)
            changed_conf = True
        run([lab["nginx_bin"], "-t", "-q", "-c", conf["config"], "-p", conf["dir"]])
        pid = read_pid(conf["pid_file"])
        if pid and pid_alive(pid):
            if changed_conf:
                os.kill(pid, signal.SIGHUP)
                out["changed"] = True
        else:
            run([lab["nginx_bin"], "-c", conf["config"], "-p", conf["dir"]])
            out["changed"] = True
            if not wait_port(conf["port"], 10):
                raise LabError("nginx %s did not open port %d; see %s/error.log" % (name, conf["port"], conf["dir"]))
        out[name] = read_pid(conf["pid_file"])
    return out


# -- preflight, status, stop -----------------------------------------------------------
def component_running(lab, name):
    if name in ("primary", "replica"):
        return pg_running(lab[name])
    if name == "haproxy":
        pid = read_pid(lab["haproxy"]["pid_file"])
    else:
        pid = read_pid(lab["nginx"][name.split("_", 1)[1]]["pid_file"])
    return bool(pid and pid_alive(pid))


def component_ports(lab):
    return {
        "primary": [("lab_port_base+1", lab["primary"]["port"])],
        "replica": [("lab_port_base+2", lab["replica"]["port"])],
        "haproxy": [("lab_port_base+0", lab["haproxy"]["pg_port"]), ("lab_port_base+80", lab["haproxy"]["http_port"]),
                    ("lab_port_base+99", lab["haproxy"]["admin_port"])],
        "nginx_blue": [("lab_port_base+81", lab["nginx"]["blue"]["port"])],
        "nginx_green": [("lab_port_base+82", lab["nginx"]["green"]["port"])],
        "nginx_edge": [("lab_port_base+90", lab["nginx"]["edge"]["port"])],
    }


def cmd_preflight(lab):
    problems = []
    binaries = {
        "initdb": (pg_bin(lab, "initdb"), "postgresql-%s" % lab["pg_version"]),
        "pg_ctl": (pg_bin(lab, "pg_ctl"), "postgresql-%s" % lab["pg_version"]),
        "pg_basebackup": (pg_bin(lab, "pg_basebackup"), "postgresql-%s" % lab["pg_version"]),
        "pgbackrest": (shutil.which("pgbackrest") or "/usr/bin/pgbackrest", "pgbackrest"),
        "haproxy": (lab["haproxy_bin"], "haproxy"),
        "nginx": (lab["nginx_bin"], "nginx-light (or nginx)"),
    }
    for name, (path, package) in sorted(binaries.items()):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            problems.append("%s not found at %s: install the Debian package %s (make deps does it as root)"
                            % (name, path, package))
    try:
        os_user(lab)
    except KeyError:
        problems.append("OS user %s does not exist: it comes with the postgresql package, or set lab_os_user"
                        % lab["os_user"])
    if os.geteuid() != 0 and lab["os_user"] != pwd.getpwuid(os.geteuid()).pw_name:
        problems.append("run the lab as root (it starts PostgreSQL as %s) or set lab_os_user to your own user"
                        % lab["os_user"])
    running = []
    seen = {}
    for name, ports in sorted(component_ports(lab).items()):
        up = os.path.exists(lab["root"]) and component_running(lab, name)
        if up:
            running.append(name)
        for var, port in ports:
            if not 1024 <= port <= 32767:
                problems.append("%s = %d for %s is outside 1024-32767 (above 32767 is Linux's ephemeral range); "
                                "choose another lab_port_base" % (var, port, name))
            if port in seen:
                problems.append("%s = %d for %s is also used by %s" % (var, port, name, seen[port]))
            seen[port] = name
            if not up and port_in_use(port):
                problems.append("port %d (%s, for %s) is already in use by another process: stop it, or choose "
                                "another block with -e lab_port_base=N" % (port, var, name))
    if problems:
        raise LabError("the lab cannot start: " + "; ".join(problems))
    return {"changed": False, "running": running}


def cmd_status(lab):
    out = {"changed": False, "running": [c for c in COMPONENTS if component_running(lab, c)]}
    if pg_running(lab["primary"]):
        out["replication"] = psql(lab, lab["primary"], "SELECT application_name || ' ' || state || ' ' || sync_state "
                                                       "FROM pg_stat_replication")
        out["primary_in_recovery"] = psql(lab, lab["primary"], "SELECT pg_is_in_recovery()")[0] == "t"
    if pg_running(lab["replica"]):
        out["replica_in_recovery"] = psql(lab, lab["replica"], "SELECT pg_is_in_recovery()")[0] == "t"
    out["archived_segments"] = len([f for f in os.listdir(lab["wal_archive"]) if len(f) == 24]) \
        if os.path.isdir(lab["wal_archive"]) else 0
    return out


def stop_component(lab, name):
    if name in ("primary", "replica"):
        return stop_pg(lab, lab[name])
    pid_file = lab["haproxy"]["pid_file"] if name == "haproxy" else lab["nginx"][name.split("_", 1)[1]]["pid_file"]
    pid = read_pid(pid_file)
    if not pid or not pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM if name == "haproxy" else signal.SIGQUIT)
    deadline = time.monotonic() + 15
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def cmd_stop(lab, names=None):
    stopped = []
    for name in names or COMPONENTS:
        if stop_component(lab, name):
            stopped.append(name)
    return {"changed": bool(stopped), "stopped": stopped}


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    command, lab = argv[1], load(argv[2])
    handlers = {
        "preflight": cmd_preflight, "primary": cmd_primary, "replica": cmd_replica,
        "base-backup": cmd_base_backup, "pgbackrest": cmd_pgbackrest, "haproxy": cmd_haproxy,
        "nginx": cmd_nginx, "status": cmd_status,
    }
    try:
        if command == "stop":
            names = [n for n in argv[3].split(",") if n] if len(argv) > 3 else None
            result = cmd_stop(lab, names)
        else:
            result = handlers[command](lab)
    except (LabError, subprocess.TimeoutExpired, OSError) as exc:
        print(json.dumps({"failed": True, "msg": str(exc).replace(lab.get("password", "\0"), "********")}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider patroni, against a real Patroni cluster.

One etcd 3.4 (Debian ``etcd-server``) and two Patroni members (PyPI ``patroni[etcd3]``), each
managing a PostgreSQL 15 on loopback, ports 28000-28999:

* etcd client 28379, peer 28380;
* member ``pg1``: REST API 28008, PostgreSQL 28432; member ``pg2``: REST API 28009, PostgreSQL 28433.

Patroni starts PostgreSQL, so it runs as the ``postgres`` OS user; the project's .venv lives
under /root, which that user cannot read, so Patroni runs from its own venv
(``RESILIENCE_PATRONI_VENV``, default /var/tmp/resilience-dr-patroni/venv), built with a Python
the postgres user can run and the Patroni lines of requirements-test.txt when it is missing.
Data under /var/tmp/resilience-dr/patroni-test. Everything started here is stopped by PID.

Tests run in file order on one cluster: refusals and check mode first (nothing may change),
then the real switchover, then the re-run. Every assertion reads Patroni's /cluster and
PostgreSQL itself (pg_is_in_recovery, rows), not only the module's answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lablib import ROOT, run_module, wait_until  # noqa: E402  pylint: disable=wrong-import-position

MODULE = "resilience.dr.replica_promote"
BASE = os.path.join(os.environ.get("RESILIENCE_LAB_BASE", "/var/tmp/resilience-dr"), "patroni-test")
VENV = os.environ.get("RESILIENCE_PATRONI_VENV", "/var/tmp/resilience-dr-patroni/venv")
PG_BIN = "/usr/lib/postgresql/15/bin"
ETCD = "/usr/bin/etcd"
ETCD_CLIENT, ETCD_PEER = 28379, 28380
MEMBERS = {"pg1": {"api": 28008, "pg": 28432}, "pg2": {"api": 28009, "pg": 28433}}
SCOPE = "rdr-patroni-test"
API_USER, API_PASSWORD = "patroni", "api-secret-%d" % os.getpid()
SUPERUSER_PASSWORD = "su-secret-%d" % os.getpid()
REPL_PASSWORD = "repl-secret-%d" % os.getpid()
OS_USER = "postgres"


def _runuser(argv):
    return ["runuser", "-u", OS_USER, "--"] + argv


def _patroni_requirements():
    """The Patroni lines of requirements-test.txt (one source for the versions)."""
    out = []
    with open(os.path.join(ROOT, "requirements-test.txt")) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line.startswith(("patroni", "psycopg2")):
                out.append(line)
    return out


def ensure_patroni_venv():
    """A venv the postgres user can run Patroni from; built when missing."""
    patroni = os.path.join(VENV, "bin", "patroni")
    if os.path.exists(patroni):
        return patroni
    python = None
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and subprocess.run(
                _runuser([candidate, "-c", "import venv, ensurepip"]), check=False,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            python = candidate
            break
    if python is None:
        pytest.fail("no Python that the postgres user can run (with venv and ensurepip) was found for Patroni")
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([python, "-m", "venv", VENV], check=True)
    proc = subprocess.run([os.path.join(VENV, "bin", "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check"] + _patroni_requirements(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if proc.returncode != 0:
        pytest.fail("installing Patroni into %s failed:\n%s" % (VENV, proc.stdout[-3000:]))
    subprocess.run(["chmod", "-R", "a+rX", VENV], check=True)
    return patroni


def http(method, port, path, body=None, auth=True, timeout=10):
    """Patroni REST API call; return (status, parsed JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if auth:
        token = base64.b64encode(("%s:%s" % (API_USER, API_PASSWORD)).encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


class PatroniCluster(object):
    """etcd + two Patroni members, started and stopped by PID."""

    def __init__(self):
        self.procs = {}
        self.logs = {}

    # -- life cycle -----------------------------------------------------------------------
    def _config(self, name):
        ports = MEMBERS[name]
        home = os.path.join(BASE, name)
        conf = {
            "scope": SCOPE,
            "name": name,
            "restapi": {"listen": "127.0.0.1:%d" % ports["api"], "connect_address": "127.0.0.1:%d" % ports["api"],
                        "authentication": {"username": API_USER, "password": API_PASSWORD}},
            "etcd3": {"hosts": ["127.0.0.1:%d" % ETCD_CLIENT]},
            "bootstrap": {
                "dcs": {"ttl": 20, "loop_wait": 1, "retry_timeout": 5, "maximum_lag_on_failover": 1048576,
                        "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                       "parameters": {"wal_level": "replica", "hot_standby": "on", "max_wal_senders": 10,
                                                      "max_replication_slots": 10, "wal_log_hints": "on",
                                                      "wal_keep_size": "128MB"}}},
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
                "pg_hba": ["local all all trust", "host replication replicator 127.0.0.1/32 scram-sha-256",
                           "host all all 127.0.0.1/32 scram-sha-256"],
            },
            "postgresql": {
                "listen": "127.0.0.1:%d" % ports["pg"], "connect_address": "127.0.0.1:%d" % ports["pg"],
                "data_dir": os.path.join(home, "data"), "bin_dir": PG_BIN, "pgpass": os.path.join(home, "pgpass"),
                "authentication": {"superuser": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                                   "replication": {"username": "replicator", "password": REPL_PASSWORD},
                                   "rewind": {"username": "postgres", "password": SUPERUSER_PASSWORD}},
                "parameters": {"unix_socket_directories": home, "shared_buffers": "32MB", "fsync": "off"},
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }
        path = os.path.join(home, "patroni.yml")
        with open(path, "w") as handle:
            json.dump(conf, handle, indent=1)  # JSON is YAML
        return path

    def _spawn(self, key, argv, log):
        handle = open(log, "ab")  # pylint: disable=consider-using-with
        self.logs[key] = log
        self.procs[key] = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        handle.close()

    def start(self):
        patroni = ensure_patroni_venv()
        if not os.path.exists(ETCD):
            pytest.fail("%s is missing: run scripts/bootstrap.sh (Debian etcd-server)" % ETCD)
        shutil.rmtree(BASE, ignore_errors=True)
        os.makedirs(BASE)
        etcd_dir = os.path.join(BASE, "etcd")
        os.makedirs(etcd_dir)
        self._spawn("etcd", [ETCD, "--name", "rdr", "--data-dir", os.path.join(etcd_dir, "data"),
                             "--listen-client-urls", "http://127.0.0.1:%d" % ETCD_CLIENT,
                             "--advertise-client-urls", "http://127.0.0.1:%d" % ETCD_CLIENT,
                             "--listen-peer-urls", "http://127.0.0.1:%d" % ETCD_PEER,
                             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % ETCD_PEER,
                             "--initial-cluster", "rdr=http://127.0.0.1:%d" % ETCD_PEER,
                             "--enable-v2=true"], os.path.join(etcd_dir, "etcd.log"))
        wait_until(self._etcd_healthy, timeout=20, what="etcd")
        subprocess.run(["chown", OS_USER, BASE], check=True)
        for name in sorted(MEMBERS):
            home = os.path.join(BASE, name)
            os.makedirs(home, mode=0o700)
            config = self._config(name)
            subprocess.run(["chown", "-R", OS_USER, home], check=True)
            self._spawn(name, _runuser([patroni, config]), os.path.join(BASE, name + ".out"))
            if name == "pg1":
                wait_until(lambda: self.leader() == "pg1", timeout=60, interval=0.5, what="pg1 to lead")
        wait_until(lambda: self.member("pg2").get("state") == "streaming", timeout=90, interval=0.5,
                   what="pg2 to stream")

    def _etcd_healthy(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/health" % ETCD_CLIENT, timeout=2) as resp:
                return resp.status == 200
        except (OSError, ValueError):
            return False

    def stop(self):
        for key in sorted(self.procs, key=lambda k: k == "etcd"):  # Patroni first, etcd last
            proc = self.procs[key]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        # Patroni stops its PostgreSQL on SIGTERM; make sure nothing is left on our data dirs
        for name in MEMBERS:
            data = os.path.join(BASE, name, "data")
            if os.path.exists(os.path.join(data, "postmaster.pid")):
                subprocess.run(_runuser([os.path.join(PG_BIN, "pg_ctl"), "-D", data, "stop", "-m", "immediate"]),
                               check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not os.environ.get("RESILIENCE_KEEP_PATRONI"):
            shutil.rmtree(BASE, ignore_errors=True)

    # -- reading --------------------------------------------------------------------------
    def cluster(self, port=None):
        status, body = http("GET", port or MEMBERS["pg1"]["api"], "/cluster", auth=False)
        assert status == 200, body
        return body

    def member(self, name):
        try:
            members = self.cluster().get("members", [])
        except (OSError, AssertionError):
            return {}
        return next((m for m in members if m["name"] == name), {})

    def leader(self):
        try:
            members = self.cluster().get("members", [])
        except (OSError, AssertionError):
            return None
        for m in members:
            if m.get("role") == "leader" and m.get("state") == "running":
                return m["name"]
        return None

    def dsn(self, name):
        return "host=127.0.0.1 port=%d dbname=postgres user=postgres password=%s connect_timeout=5" % (
            MEMBERS[name]["pg"], SUPERUSER_PASSWORD)

    def sql(self, name, query, params=None):
        import psycopg  # pylint: disable=import-outside-toplevel
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []

    def in_recovery(self, name):
        return self.sql(name, "select pg_is_in_recovery()")[0][0]

    def try_sql(self, name, query):
        """First value of ``query``, or None while the server restarts."""
        import psycopg  # pylint: disable=import-outside-toplevel
        try:
            return self.sql(name, query)[0][0]
        except psycopg.OperationalError:
            return None

    def timeline(self, name):
        """Timeline a primary writes on (its current WAL file's name starts with it)."""
        return int(self.sql(name, "select pg_walfile_name(pg_current_wal_lsn())")[0][0][:8], 16)

    def tail(self):
        out = []
        for key, log in sorted(self.logs.items()):
            try:
                with open(log) as handle:
                    out.append("== %s ==\n%s" % (key, handle.read()[-2500:]))
            except OSError:
                pass
        return "\n".join(out)


@pytest.fixture(scope="module")
def cluster():
    c = PatroniCluster()
    try:
        c.start()
        c.sql("pg1", "create table events (id bigserial primary key, written_at timestamptz default now(), payload text)")
        c.sql("pg1", "insert into events (payload) select 'before-switchover-' || g from generate_series(1, 500) g")
        yield c
    except BaseException:
        print(c.tail())
        raise
    finally:
        c.stop()


def args(**extra):
    out = dict(provider="patroni", candidate="pg2", patroni_username=API_USER, patroni_password=API_PASSWORD,
               patroni_url=["http://127.0.0.1:%d" % MEMBERS["pg1"]["api"], "http://127.0.0.1:%d/patroni" % MEMBERS["pg2"]["api"]])
    out.update(extra)
    return out


def roles(c):
    return dict((m["name"], (m["role"], m["state"])) for m in c.cluster()["members"])


def assert_unchanged(c):
    """pg1 still leads: per Patroni and per PostgreSQL."""
    assert c.leader() == "pg1"
    assert c.in_recovery("pg1") is False
    assert c.in_recovery("pg2") is True


def assert_no_secret(result):
    blob = json.dumps(result)
    assert API_PASSWORD not in blob


def keys(steps):
    return [(s["action"], s["target"]) for s in steps]


def test_unknown_candidate_is_not_found(cluster):
    result = run_module(MODULE, args(candidate="pg9"))
    assert result["failed"] and result["error"] == "NOT_FOUND", result
    assert "pg1" in result["msg"] and "pg2" in result["msg"]
    assert result["changed"] is False
    assert_no_secret(result)
    assert_unchanged(cluster)


def set_maintenance(on):
    """Patroni resumes a paused replay on PostgreSQL 14+ (handle_parameter_change) unless the
    cluster is in maintenance mode, so the replica is held behind in that mode."""
    status, body = http("PATCH", MEMBERS["pg1"]["api"], "/config", {"pause": on})
    assert status == 200, body
    wait_until(lambda: bool(http("GET", MEMBERS["pg1"]["api"], "/cluster", auth=False)[1].get("pause")) == on,
               timeout=15, what="maintenance mode %s" % on)


def test_lag_guard_refuses_a_replica_held_behind(cluster):
    set_maintenance(True)
    cluster.sql("pg2", "select pg_wal_replay_pause()")
    try:
        cluster.sql("pg1", "insert into events (payload) select repeat('x', 200) from generate_series(1, 20000)")
        wait_until(lambda: isinstance(cluster.member("pg2").get("replay_lag"), int)
                   and cluster.member("pg2")["replay_lag"] > 1048576, timeout=30, interval=0.5,
                   what="Patroni to report pg2's replay lag")
        result = run_module(MODULE, args(max_lag_bytes=1048576))
        assert result["failed"] and result["error"] == "LAG_TOO_HIGH", result
        assert result["lag"]["bytes"] > 1048576 and result["lag"]["within_limits"] is False
        assert result["changed"] is False and result.get("completed_steps") == []
        assert_no_secret(result)
        assert_unchanged(cluster)
        assert cluster.sql("pg2", "select pg_get_wal_replay_pause_state()")[0][0] == "paused"
    finally:
        cluster.sql("pg2", "select pg_wal_replay_resume()")
        set_maintenance(False)
    total = cluster.sql("pg1", "select count(*) from events")[0][0]
    wait_until(lambda: cluster.sql("pg2", "select count(*) from events")[0][0] == total, timeout=30,
               what="pg2 to replay everything")
    wait_until(lambda: cluster.member("pg2").get("lag") == 0, timeout=30, interval=0.5, what="lag 0 in /cluster")


def test_check_mode_changes_nothing(cluster):
    before = roles(cluster)
    result = run_module(MODULE, args(), check=True)
    assert not result["failed"], result
    assert result["changed"] is True and result["mode"] == "switchover"
    assert keys(result["plan"]) == [("switchover", "pg2"), ("wait_for_leader", "pg2")]
    assert result["plan"][0]["detail"]["body"] == {"leader": "pg1", "candidate": "pg2"}
    assert result["after"]["leader"] == "pg2" and result["new_leader"] is None and result["promoted"] is False
    time.sleep(2)  # a switchover would have begun by now
    assert roles(cluster) == before
    assert_unchanged(cluster)
    assert_no_secret(result)
    cluster.check_plan = keys(result["plan"])


def test_switchover_makes_the_candidate_leader(cluster):
    rows = cluster.sql("pg1", "select count(*) from events")[0][0]
    timeline = cluster.timeline("pg1")
    result = run_module(MODULE, args())
    assert not result["failed"], result
    assert result["changed"] is True and result["promoted"] is True and result["mode"] == "switchover"
    assert keys(result["steps"]) == getattr(cluster, "check_plan", keys(result["steps"]))
    assert result["old_leader"] == "pg1" and result["new_leader"] == "pg2"
    assert result["timeline_after"] > result["timeline_before"]
    assert_no_secret(result)
    print("switchover: module %.2fs, steps %s" % (result["seconds"], [(s["action"], s["seconds"]) for s in result["steps"]]))
    # Patroni says so...
    current = roles(cluster)
    assert current["pg2"] == ("leader", "running")
    # ...and so does PostgreSQL: pg2 writable on a new timeline with every row, pg1 back as its replica
    assert cluster.in_recovery("pg2") is False
    assert cluster.timeline("pg2") > timeline
    assert cluster.sql("pg2", "select count(*) from events")[0][0] == rows
    cluster.sql("pg2", "insert into events (payload) values ('after-switchover')")
    wait_until(lambda: cluster.try_sql("pg1", "select pg_is_in_recovery()") is True, timeout=60, interval=0.5, what="pg1 to follow pg2")
    wait_until(lambda: cluster.try_sql("pg1", "select count(*) from events where payload = 'after-switchover'") == 1,
               timeout=30, what="pg1 to replay pg2's write")


def test_second_run_changes_nothing(cluster):
    timeline = cluster.timeline("pg2")
    result = run_module(MODULE, args())
    assert not result["failed"], result
    assert result["changed"] is False and result["already_primary"] is True and result["steps"] == []
    assert cluster.leader() == "pg2" and cluster.in_recovery("pg2") is False
    assert cluster.timeline("pg2") == timeline and cluster.member("pg2")["timeline"] == timeline


def test_wrong_api_password_is_refused_without_showing_it(cluster):
    wrong = "not-the-api-password-%d" % os.getpid()
    result = run_module(MODULE, args(candidate="pg1", patroni_password=wrong))
    assert result["failed"] and result["error"] == "AUTH_FAILED", result
    assert wrong not in json.dumps(result) and wrong not in result["_raw_stdout"]
    time.sleep(1)
    assert cluster.leader() == "pg2" and cluster.in_recovery("pg2") is False and cluster.in_recovery("pg1") is True

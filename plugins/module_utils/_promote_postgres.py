# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider ``postgres``: a self-managed streaming replica (private).

Preflight (``read``): connect to the replica, take an advisory lock on that session (held
until the module exits, so a second run fails ``LOCKED``), then read the replica's state
(in recovery? WAL receiver status, received/replayed LSN, replay age, timeline) and, when
given and reachable, the old primary's (current LSN, read-only?, same cluster?). The lag
guard refuses with ``LAG_TOO_HIGH`` unless ``allow_data_loss`` is set with a ``reason``.

Plan: ``resume_replay`` (when replay is paused) -> ``fence_read_only`` / ``fence_stop``
(old primary, when reachable and not fenced yet) -> ``wait_for_replay`` -> ``promote`` ->
``verify_write``. Fencing comes before waiting so that everything the old primary
committed before it was fenced is replayed before the promotion.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import time

from ansible_collections.resilience.dr.plugins.module_utils import _pg
from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    APPLY_FAILED,
    AUTH_FAILED,
    DRError,
    INVALID_ARGUMENT,
    LAG_TOO_HIGH,
    LOCKED,
    PRECONDITION_FAILED,
    TIMEOUT,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step

#: pg_try_advisory_lock(LOCK_CLASSID, LOCK_OBJID): 'RDRP' and 1. Fixed, so that every run
#: of replica_promote against one replica competes for the same lock.
LOCK_CLASSID = 0x52445250
LOCK_OBJID = 1
APPLICATION_NAME = "resilience.dr replica_promote"

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")

SQL_FENCE = [
    "ALTER SYSTEM SET default_transaction_read_only = on",
    "SELECT pg_reload_conf()",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
]
SQL_UNFENCE = ["ALTER SYSTEM RESET default_transaction_read_only", "SELECT pg_reload_conf()"]
SQL_PROMOTE = "SELECT pg_promote(wait => false)"


class PgNode(object):
    """One PostgreSQL server and the queries replica_promote runs on it."""

    def __init__(self, settings, role):
        self.settings = settings
        self.role = role
        self.target = _pg.describe(settings)
        self.conn = None

    def open(self):
        self.conn = _pg.connect(self.settings, application_name=APPLICATION_NAME)
        return self

    def close(self):
        _pg.close(self.conn)
        self.conn = None

    def one(self, query, params=None):
        return _pg.fetch_one(self.conn, query, params)

    # -- reads ----------------------------------------------------------------------
    def try_lock(self):
        return bool(self.one("SELECT pg_try_advisory_lock(%s, %s) AS ok", (LOCK_CLASSID, LOCK_OBJID))["ok"])

    def lock_holder(self):
        return self.one(
            "SELECT l.pid, a.application_name, a.client_addr::text AS client_addr, a.backend_start::text AS since "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.objsubid = 2 AND l.granted "
            "AND l.pid <> pg_backend_pid() LIMIT 1", (LOCK_CLASSID, LOCK_OBJID))

    def state(self):
        base = self.one(
            "SELECT pg_is_in_recovery() AS in_recovery, "
            "(SELECT system_identifier FROM pg_control_system())::text AS system_identifier, "
            "pg_postmaster_start_time()::text AS postmaster_start, "
            "current_setting('default_transaction_read_only') = 'on' AS read_only, "
            "current_setting('server_version') AS server_version")
        out = dict(base)
        if out["in_recovery"]:
            out.update(self.one(
                "SELECT pg_last_wal_receive_lsn()::text AS receive_lsn, pg_last_wal_replay_lsn()::text AS replay_lsn, "
                "pg_last_xact_replay_timestamp()::text AS last_replay_at, "
                "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age_seconds, "
                "pg_get_wal_replay_pause_state() AS replay_pause_state, "
                "(SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline, "
                "(SELECT status FROM pg_stat_wal_receiver) AS wal_receiver_status, "
                "(SELECT received_tli FROM pg_stat_wal_receiver) AS received_timeline, "
                "(SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver) AS wal_sender"))
            out["timeline"] = out.pop("received_timeline") or out.pop("checkpoint_timeline", None)
            out.pop("checkpoint_timeline", None)
            out["current_lsn"] = None
        else:
            out.update(self.one(
                "SELECT pg_current_wal_lsn()::text AS current_lsn, pg_walfile_name(pg_current_wal_lsn()) AS walfile, "
                "pg_last_wal_replay_lsn()::text AS replay_lsn"))
            out["timeline"] = _pg.timeline_of_walfile(out.pop("walfile"))
            out.update(receive_lsn=None, wal_receiver_status=None, replay_pause_state=None,
                       last_replay_at=None, replay_age_seconds=None, wal_sender=None)
        return out

    def data_directory(self):
        try:
            row = self.one("SELECT current_setting('data_directory') AS d")
        except Exception:  # pylint: disable=broad-except
            return None  # not a superuser nor pg_read_all_settings: cannot tell
        return row["d"] if row else None

    def current_lsn(self):
        return self.one("SELECT pg_current_wal_lsn()::text AS lsn")["lsn"]

    def in_recovery(self):
        return bool(self.one("SELECT pg_is_in_recovery() AS r")["r"])

    def replay_position(self):
        return self.one(
            "SELECT pg_last_wal_receive_lsn()::text AS receive_lsn, pg_last_wal_replay_lsn()::text AS replay_lsn, "
            "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age_seconds, "
            "(SELECT status FROM pg_stat_wal_receiver) AS wal_receiver_status")

    # -- changes --------------------------------------------------------------------
    def resume_replay(self):
        self.one("SELECT pg_wal_replay_resume()")

    def pause_replay(self):
        self.one("SELECT pg_wal_replay_pause()")

    def fence_read_only(self):
        _pg.execute(self.conn, SQL_FENCE[0])
        self.one(SQL_FENCE[1])
        terminated = _pg.fetch_all(self.conn, SQL_FENCE[2])
        return {"terminated_sessions": len(terminated)}

    def unfence_read_only(self):
        _pg.execute(self.conn, SQL_UNFENCE[0])
        self.one(SQL_UNFENCE[1])

    def promote(self):
        self.one(SQL_PROMOTE)

    def write_check(self, table, note):
        _pg.execute(self.conn, "CREATE TABLE IF NOT EXISTS %s (id bigserial PRIMARY KEY, "
                               "promoted_at timestamptz NOT NULL DEFAULT now(), note text)" % table)
        row = self.one("INSERT INTO %s (note) VALUES (%%s) RETURNING id, promoted_at::text AS at" % table, (note,))
        back = self.one("SELECT id FROM %s WHERE id = %%s" % table, (row["id"],))
        return {"table": table, "id": row["id"], "written_at": row["at"], "read_back": back is not None}

    def read_only_setting(self):
        return self.one("SHOW default_transaction_read_only")["default_transaction_read_only"]


def _lag(replica, primary_lsn):
    """Lag figures of a replica state against its received WAL and the primary's LSN."""
    replay = _pg.lsn_to_int(replica.get("replay_lsn"))
    receive = _pg.lsn_to_int(replica.get("receive_lsn"))
    if receive is None or (replay is not None and receive < replay):
        receive = replay
    bytes_replay = max(0, receive - replay) if replay is not None else None
    bytes_primary = None
    if primary_lsn is not None and replay is not None:
        bytes_primary = max(0, _pg.lsn_to_int(primary_lsn) - replay)
    known = [b for b in (bytes_replay, bytes_primary) if b is not None]
    seconds = 0.0
    if bytes_replay and replica.get("replay_age_seconds") is not None:
        seconds = round(max(0.0, float(replica["replay_age_seconds"])), 3)
    return {
        "bytes": max(known) if known else None,
        "bytes_unreplayed": bytes_replay,
        "bytes_behind_primary": bytes_primary,
        "seconds": seconds,
    }


def find_pg_ctl(module, bin_dir):
    if bin_dir:
        path = os.path.join(bin_dir, "pg_ctl")
        return path if os.access(path, os.X_OK) else None
    found = module.get_bin_path("pg_ctl")
    if found:
        return found
    candidates = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") + glob.glob("/usr/pgsql-*/bin/pg_ctl")

    def version(path):
        digits = re.findall(r"(\d+)", path)
        return int(digits[0]) if digits else 0

    candidates.sort(key=version)
    return candidates[-1] if candidates else None


class PostgresPromote(Provider):
    """Promote a self-managed PostgreSQL streaming replica."""

    name = "postgres"

    def __init__(self, module):
        super(PostgresPromote, self).__init__(module)
        p = self.params
        self.replica_settings = _pg.settings_from_params(p)
        self.primary_settings = None
        if p.get("primary_login_host"):
            self.primary_settings = dict(
                self.replica_settings,
                host=p["primary_login_host"],
                port=p.get("primary_port") or p.get("pg_port"),
                user=p.get("primary_login_user") or p.get("pg_login_user"),
                password=p.get("primary_login_password") or p.get("pg_login_password"),
                dbname=p.get("primary_database") or p.get("pg_database"),
                connect_timeout=p.get("primary_connect_timeout"),
            )
        self.replica = None
        self.primary = None
        self.primary_error = None
        self.primary_last_lsn = None
        self.primary_last_lsn_source = None
        self.lag_at_promotion = None
        self.wait_result = None
        self._promote_requested = None
        self.max_lag = self.replay_timeout = self.promote_timeout = self.fence_timeout = None
        self.pg_ctl = None

    # -- seams for tests --------------------------------------------------------------
    def make_node(self, settings, role):
        return PgNode(settings, role)

    def run_pg_ctl(self, argv):
        """Run pg_ctl; return (rc, stdout, stderr)."""
        return self.module.run_command(argv)

    # -- read ---------------------------------------------------------------------------
    def _validate(self):
        p = self.params
        self.max_lag = _time.parse_duration(p.get("max_lag"), "max_lag")
        self.replay_timeout = _time.parse_duration(p.get("replay_timeout"), "replay_timeout")
        self.promote_timeout = _time.parse_duration(p.get("promote_timeout"), "promote_timeout")
        self.fence_timeout = _time.parse_duration(p.get("fence_timeout"), "fence_timeout")
        if p.get("verify_write") and not _TABLE.match(p["verify_table"] or ""):
            raise DRError(INVALID_ARGUMENT, "verify_table %r is not a plain table name such as "
                          "resilience_dr_promote_check or schema.table." % p["verify_table"])
        if p["fence"] == "stop":
            data_dir = p.get("primary_data_dir")
            if not data_dir:
                raise DRError(INVALID_ARGUMENT, "fence=stop needs primary_data_dir (the old primary's data "
                              "directory on the host the module runs on).")
            if not os.path.isfile(os.path.join(data_dir, "PG_VERSION")):
                raise DRError(INVALID_ARGUMENT, "primary_data_dir %s is not a PostgreSQL data directory on this host; "
                              "fence=stop only works where the module runs on the old primary's host." % data_dir)
            self.pg_ctl = find_pg_ctl(self.module, p.get("pg_bin_dir"))
            if not self.pg_ctl:
                raise DRError(INVALID_ARGUMENT, "pg_ctl was not found; set pg_bin_dir (for example "
                              "/usr/lib/postgresql/15/bin).")
        if p.get("primary_login_host") is None and p["fence"] != "none" and p.get("require_fence"):
            raise DRError(INVALID_ARGUMENT, "require_fence is set but primary_login_host is not: give the old "
                          "primary's address, or drop require_fence.")

    def read(self):
        self._validate()
        self.replica = self.make_node(self.replica_settings, "replica").open()
        if not self.replica.try_lock():
            holder = self.replica.lock_holder()
            raise DRError(LOCKED, "Another replica_promote run holds the promotion lock on %s; wait for it to "
                          "finish, then run again." % self.replica.target,
                          details={"lock_holder": holder, "lock_key": [LOCK_CLASSID, LOCK_OBJID]})
        # read (again) after the lock: a concurrent run may have just promoted it
        replica = self.replica.state()
        primary = self._read_primary(replica)
        state = {"replica": replica, "primary": primary}
        if replica["in_recovery"]:
            self._lag_guard(replica, primary)
        self.result.update(self._summary_before(replica, primary))
        return state

    def _read_primary(self, replica):
        if self.primary_settings is None:
            return {"given": False, "reachable": False}
        node = self.make_node(self.primary_settings, "primary")
        try:
            node.open()
        except DRError as error:
            if error.code == AUTH_FAILED:
                raise DRError(AUTH_FAILED, "The old primary at %s is up but refused the login: fix "
                              "primary_login_user/primary_login_password, or leave primary_login_host out "
                              "to promote without fencing." % node.target, details=error.details)
            self.primary_error = error.msg
            if self.params.get("require_fence") and self.params["fence"] != "none" and replica["in_recovery"]:
                raise DRError(PRECONDITION_FAILED, "require_fence is set and the old primary at %s cannot be "
                              "reached to fence it (%s)." % (node.target, error.msg))
            return {"given": True, "reachable": False, "target": node.target, "error": error.msg}
        self.primary = node
        state = node.state()
        if state["system_identifier"] != replica["system_identifier"]:
            raise DRError(INVALID_ARGUMENT, "The server at %s (system identifier %s) is not of the same cluster as "
                          "the replica (%s); check primary_login_host/primary_port."
                          % (node.target, state["system_identifier"], replica["system_identifier"]))
        if state["postmaster_start"] == replica["postmaster_start"]:
            raise DRError(INVALID_ARGUMENT, "primary_login_host/primary_port point at the replica itself (%s)."
                          % node.target)
        if self.params["fence"] == "stop":
            data_dir = node.data_directory()
            wanted = os.path.realpath(self.params["primary_data_dir"])
            if data_dir is not None and os.path.realpath(data_dir) != wanted:
                raise DRError(INVALID_ARGUMENT, "primary_data_dir %s is not the data directory of the old primary at "
                              "%s (%s); refusing to stop another server." % (wanted, node.target, data_dir))
        replica_dir = self.replica.data_directory() if self.params["fence"] == "stop" else None
        if replica_dir is not None and os.path.realpath(replica_dir) == os.path.realpath(self.params["primary_data_dir"]):
            raise DRError(INVALID_ARGUMENT, "primary_data_dir is the replica's own data directory; refusing.")
        state.update(given=True, reachable=True, target=node.target)
        state["writable"] = not state["in_recovery"] and not state["read_only"]
        return state

    def _lag_guard(self, replica, primary):
        primary_lsn = primary.get("current_lsn") if primary.get("reachable") and not primary.get("in_recovery") else None
        lag = _lag(replica, primary_lsn)
        max_bytes = self.params["max_lag_bytes"]
        too_far = []
        if lag["bytes"] is not None and lag["bytes"] > max_bytes:
            too_far.append("%d bytes of WAL behind (max_lag_bytes %d)" % (lag["bytes"], max_bytes))
        if lag["seconds"] > self.max_lag:
            too_far.append("replay %.1fs behind (max_lag %s)" % (lag["seconds"], self.params["max_lag"]))
        if (self.params.get("require_streaming") and replica.get("wal_receiver_status") != "streaming"):
            too_far.append("its WAL receiver is %s, not streaming" % (replica.get("wal_receiver_status") or "not running"))
        lag["max_lag_bytes"] = max_bytes
        lag["max_lag_seconds"] = self.max_lag
        lag["within_limits"] = not too_far
        lag["overridden"] = bool(too_far) and bool(self.params["allow_data_loss"])
        self.result["lag"] = lag
        if too_far and not self.params["allow_data_loss"]:
            raise DRError(LAG_TOO_HIGH, "The replica %s is %s; wait for it to catch up, or set allow_data_loss "
                          "with a reason to promote anyway." % (self.replica.target, " and ".join(too_far)),
                          details={"lag": lag})

    def _summary_before(self, replica, primary):
        if replica["in_recovery"]:
            lsn = replica.get("replay_lsn")
        else:
            lsn = replica.get("current_lsn")
        out = {
            "provider": "postgres",
            "replica_target": self.replica.target,
            "lsn_before": lsn,
            "timeline_before": replica.get("timeline"),
            "lsn_after": None if replica["in_recovery"] else lsn,
            "timeline_after": None if replica["in_recovery"] else replica.get("timeline"),
            "promoted": False,
            "already_primary": not replica["in_recovery"],
            "data_loss_bytes": None,
            "data_loss_note": "nothing was promoted by this run",
            "fence": self._fence_summary(primary, None),
            "allow_data_loss": bool(self.params["allow_data_loss"]),
            "reason": self.params.get("reason"),
        }
        out.setdefault("lag", self.result.get("lag"))
        return out

    def _fence_summary(self, primary, status):
        mode = self.params["fence"]
        out = {"mode": mode, "target": primary.get("target")}
        if status is not None:
            out["status"] = status
        elif mode == "none":
            out["status"] = "not_requested"
        elif not primary.get("given"):
            out["status"] = "skipped"
            out["reason"] = "primary_login_host was not given"
        elif not primary.get("reachable"):
            out["status"] = "skipped"
            out["reason"] = "the old primary could not be reached: %s" % primary.get("error")
        elif primary.get("in_recovery"):
            out["status"] = "not_needed"
            out["reason"] = "the old primary is in recovery (it is a standby now)"
        elif mode == "read_only" and primary.get("read_only"):
            out["status"] = "already_fenced"
        else:
            out["status"] = "planned"
        return out

    # -- plan -----------------------------------------------------------------------------
    def plan(self, current):
        replica, primary = current["replica"], current["primary"]
        steps = []
        target = self.replica.target
        if replica["in_recovery"] and self.params["wait_for_replay"] and replica.get("replay_pause_state") not in (None, "not paused"):
            steps.append(Step("resume_replay", target, run=self.replica.resume_replay, sql="SELECT pg_wal_replay_resume()"))
        fence = self._fence_summary(primary, None)
        if fence["status"] == "planned":
            if self.params["fence"] == "read_only":
                steps.append(Step("fence_read_only", primary["target"], run=self._fence_read_only, sql=list(SQL_FENCE)))
            else:
                steps.append(Step("fence_stop", primary["target"], run=self._fence_stop, argv=self._pg_ctl_argv()))
        if replica["in_recovery"]:
            if self.params["wait_for_replay"]:
                steps.append(Step("wait_for_replay", target, run=self._wait_for_replay,
                                  timeout_seconds=self.replay_timeout))
            steps.append(Step("promote", target, run=self._promote, sql=SQL_PROMOTE))
            steps.append(Step("wait_for_promotion", target, run=self._wait_for_promotion,
                              sql="SELECT pg_is_in_recovery()", timeout_seconds=self.promote_timeout))
            if self.params["verify_write"]:
                steps.append(Step("verify_write", target, run=self._verify_write, table=self.params["verify_table"]))
        return steps

    def predict(self, current, steps):
        after = {"replica": dict(current["replica"]), "primary": dict(current["primary"])}
        actions = [s.action for s in steps]
        if "promote" in actions:
            after["replica"].update(in_recovery=False, timeline=(current["replica"].get("timeline") or 0) + 1,
                                    wal_receiver_status=None, replay_pause_state=None)
        if "fence_read_only" in actions:
            after["primary"].update(read_only=True, writable=False)
        if "fence_stop" in actions:
            after["primary"] = {"given": True, "reachable": False, "target": current["primary"].get("target")}
        return after

    # -- steps ------------------------------------------------------------------------------
    def _pg_ctl_argv(self):
        # -W: pg_ctl only signals; _fence_stop waits for the postmaster itself, polling every 5 ms
        # (pg_ctl -w polls every 100 ms, and clients cannot write while it waits)
        argv = [self.pg_ctl or "pg_ctl", "stop", "-D", self.params.get("primary_data_dir") or "", "-m", "fast", "-W"]
        user = self.params.get("primary_os_user")
        if user and hasattr(os, "geteuid") and os.geteuid() == 0 and user != "root":
            argv = ["runuser", "-u", user, "--"] + argv
        return argv

    def _fence_read_only(self):
        result = self.primary.fence_read_only()
        self.primary_last_lsn = self.primary.current_lsn()
        self.primary_last_lsn_source = "read on the old primary after fencing it read-only"
        result["last_lsn"] = self.primary_last_lsn
        return result

    def _postmaster_alive(self):
        """True/False for the old primary's postmaster (from its postmaster.pid), None without one."""
        pid_file = os.path.join(self.params.get("primary_data_dir") or "", "postmaster.pid")
        try:
            with open(pid_file) as handle:
                pid = int(handle.readline().strip())
        except (IOError, OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _fence_stop(self):
        try:
            self.primary_last_lsn = self.primary.current_lsn()
            self.primary_last_lsn_source = "read on the old primary right before stopping it"
        except Exception:  # pylint: disable=broad-except
            # it died between the preflight and now: what it wrote last is read from pg_controldata below
            self.primary_last_lsn = None
            self.primary_last_lsn_source = "unknown: the old primary died before it could be read"
        self.primary.close()
        if self._postmaster_alive() is False:
            # killed or crashed after the preflight: it is already fenced; pg_ctl stop would wait on a dead PID
            return {"already_down": True, "stale_pid_file": True, "last_lsn": self.primary_last_lsn}
        rc, out, err = self.run_pg_ctl(self._pg_ctl_argv())
        if rc != 0:
            raise DRError(APPLY_FAILED, "pg_ctl stop of the old primary failed (rc=%s): %s" % (rc, (err or out).strip()))
        waited = self._wait_postmaster_gone()
        result = {"pg_ctl": (out or "").strip().splitlines()[-1:], "stop_seconds": waited}
        checkpoint = self._shutdown_checkpoint()
        if checkpoint is not None:
            # everything committed on the old primary lies before its shutdown checkpoint
            self.primary_last_lsn = checkpoint
            self.primary_last_lsn_source = ("the old primary's shutdown checkpoint location (pg_controldata after "
                                            "pg_ctl stop): nothing was committed after it")
            result["shutdown_checkpoint_lsn"] = checkpoint
        result["last_lsn"] = self.primary_last_lsn
        return result

    def _wait_postmaster_gone(self):
        """Wait until the old primary's postmaster has exited (as pg_ctl -w does: its
        postmaster.pid is gone, or names a dead process); return the seconds waited. A pid file
        that exists but cannot be read counts as running."""
        pid_file = os.path.join(self.params.get("primary_data_dir") or "", "postmaster.pid")
        start = time.monotonic()
        while os.path.exists(pid_file) and self._postmaster_alive() is not False:
            if time.monotonic() - start > self.fence_timeout:
                raise DRError(APPLY_FAILED, "pg_ctl stop of the old primary failed: its postmaster was still running "
                              "after fence_timeout %s; check its log." % self.params["fence_timeout"])
            time.sleep(0.005)
        return round(time.monotonic() - start, 3)

    def _shutdown_checkpoint(self):
        """Latest checkpoint location of the stopped old primary, or None."""
        controldata = os.path.join(os.path.dirname(self.pg_ctl or ""), "pg_controldata")
        if not os.access(controldata, os.X_OK):
            return None
        rc, out, _err = self.run_pg_ctl([controldata, self.params["primary_data_dir"]])
        if rc != 0:
            return None
        state = re.search(r"^Database cluster state:\s+(.+)$", out or "", re.M)
        location = re.search(r"^Latest checkpoint location:\s+(\S+)$", out or "", re.M)
        if not state or state.group(1).strip() != "shut down" or not location:
            return None
        return location.group(1)

    def _wait_for_replay(self):
        start = time.monotonic()
        first = self.replica.replay_position()
        goal = _pg.lsn_to_int(first["receive_lsn"]) or 0
        goal_source = "received WAL"
        if self.primary_last_lsn is not None and first["wal_receiver_status"] == "streaming":
            if _pg.lsn_to_int(self.primary_last_lsn) > goal:
                goal = _pg.lsn_to_int(self.primary_last_lsn)
                goal_source = "the old primary's last LSN"
        while True:
            pos = self.replica.replay_position()
            replay = _pg.lsn_to_int(pos["replay_lsn"]) or 0
            receive = _pg.lsn_to_int(pos["receive_lsn"]) or 0
            # the goal also moves with WAL still arriving from a fenced primary
            if receive > goal and goal_source == "received WAL":
                goal = receive
            if replay >= goal:
                self.wait_result = {"reached": True, "goal_lsn": _pg.int_to_lsn(goal), "goal": goal_source,
                                    "replay_lsn": pos["replay_lsn"], "waited_seconds": round(time.monotonic() - start, 3)}
                return self.wait_result
            if time.monotonic() - start > self.replay_timeout:
                self.wait_result = {"reached": False, "goal_lsn": _pg.int_to_lsn(goal), "goal": goal_source,
                                    "replay_lsn": pos["replay_lsn"], "waited_seconds": round(time.monotonic() - start, 3)}
                if self.params["allow_data_loss"]:
                    return self.wait_result
                raise DRError(TIMEOUT, "The replica did not replay up to %s (%s) within replay_timeout %s; it is at %s."
                              % (_pg.int_to_lsn(goal), goal_source, self.params["replay_timeout"], pos["replay_lsn"]),
                              details={"wait_for_replay": self.wait_result})
            time.sleep(0.005)

    def _promote(self):
        pos = self.replica.replay_position()
        primary_lsn = None
        if self.primary is not None and self.primary.conn is not None and self.primary_last_lsn is None:
            try:
                self.primary_last_lsn = self.primary.current_lsn()
                self.primary_last_lsn_source = ("read on the old primary right before promoting; it was not fenced "
                                                "and may have taken writes after that")
            except Exception as exc:  # pylint: disable=broad-except
                self.primary_last_lsn_source = "the old primary went away before its last LSN could be read: %s" % exc
        primary_lsn = self.primary_last_lsn
        lag = _lag(dict(pos), primary_lsn)
        self.lag_at_promotion = {"bytes": lag["bytes"], "seconds": lag["seconds"],
                                 "replay_lsn": pos["replay_lsn"], "receive_lsn": pos["receive_lsn"]}
        self.replica.promote()
        self._promote_requested = time.monotonic()
        return {"lag_at_promotion": self.lag_at_promotion}

    def _wait_for_promotion(self):
        start = self._promote_requested or time.monotonic()
        while self.replica.in_recovery():
            if time.monotonic() - start > self.promote_timeout:
                raise DRError(TIMEOUT, "The replica was asked to promote but was still in recovery after "
                              "promote_timeout %s; check its log." % self.params["promote_timeout"])
            # pg_promote(wait => true) would poll every 100 ms inside the server: poll here instead
            time.sleep(0.005)
        return {"promote_seconds": round(time.monotonic() - start, 3)}

    def _verify_write(self):
        note = "replica_promote %s" % _time.now_iso()
        if self.params.get("reason"):
            note += ": %s" % self.params["reason"]
        result = self.replica.write_check(self.params["verify_table"], note[:500])
        if not result["read_back"]:
            raise DRError(VERIFY_FAILED, "The test row written to %s on the promoted replica could not be read back."
                          % self.params["verify_table"])
        self.result["verify_write"] = result
        return result

    # -- verify ------------------------------------------------------------------------
    def verify(self, current, steps):
        actions = dict((s.action, s) for s in steps)
        replica = self.replica.state()
        primary = dict(current["primary"])
        if "promote" in actions:
            if replica["in_recovery"]:
                raise DRError(VERIFY_FAILED, "The replica %s is still in recovery after the promotion." % self.replica.target)
            before_tl = current["replica"].get("timeline")
            if before_tl is not None and (replica["timeline"] or 0) <= before_tl:
                raise DRError(VERIFY_FAILED, "The promoted server is on timeline %s, not above %s as a promotion should "
                              "give." % (replica["timeline"], before_tl))
        if "fence_read_only" in actions:
            check = self.make_node(self.primary_settings, "primary").open()
            try:
                setting = check.read_only_setting()
                primary.update(check.state())
            finally:
                check.close()
            if setting != "on":
                raise DRError(VERIFY_FAILED, "The old primary at %s still has default_transaction_read_only=%s after "
                              "fencing." % (self.primary.target, setting))
            primary["writable"] = False
        if "fence_stop" in actions:
            if self._postmaster_alive():
                raise DRError(VERIFY_FAILED, "The old primary's postmaster is still running after pg_ctl stop.")
            primary = {"given": True, "reachable": False, "target": current["primary"].get("target"), "stopped": True}
        if "promote" in actions:
            self._summarise_promotion(current, replica)
        if "fence_read_only" in actions or "fence_stop" in actions:
            status = "fenced"
            result = (actions.get("fence_read_only") or actions.get("fence_stop")).result
            self.result["fence"] = dict(self._fence_summary(current["primary"], status), result=result)
        return {"replica": replica, "primary": primary}

    def _summarise_promotion(self, current, replica):
        final_replay = replica.get("replay_lsn") or current["replica"].get("replay_lsn")
        self.result.update(
            promoted=True,
            lsn_after=replica.get("current_lsn"),
            timeline_after=replica.get("timeline"),
            replayed_lsn_at_promotion=final_replay,
            lag_at_promotion=self.lag_at_promotion,
            wait_for_replay=self.wait_result,
        )
        if self.primary_last_lsn is not None:
            diff = _pg.lsn_diff(self.primary_last_lsn, final_replay)
            self.result["data_loss_bytes"] = max(0, diff)
            self.result["old_primary_last_lsn"] = self.primary_last_lsn
            self.result["data_loss_note"] = ("old primary's last LSN %s minus the replica's last replayed LSN %s; %s"
                                             % (self.primary_last_lsn, final_replay, self.primary_last_lsn_source))
        else:
            self.result["data_loss_bytes"] = None
            self.result["old_primary_last_lsn"] = None
            reason = "the old primary was not given" if self.primary_settings is None else (
                self.primary_last_lsn_source or "the old primary could not be read (%s)" % self.primary_error)
            self.result["data_loss_note"] = "unknown: %s, so its last LSN could not be compared." % reason

    # -- failure ------------------------------------------------------------------------
    def on_failure(self, current, done_steps, error):
        actions = [s.action for s in done_steps]
        if "promote" in actions:
            return None  # the replica is a primary now: the old one must stay fenced
        ok = True
        tried = False
        if "fence_read_only" in actions:
            tried = True
            try:
                node = self.make_node(self.primary_settings, "primary").open()
                try:
                    node.unfence_read_only()
                finally:
                    node.close()
            except Exception:  # pylint: disable=broad-except
                ok = False
        if "fence_stop" in actions:
            tried = True
            ok = False  # a stopped primary is not restarted behind the operator's back
            error.details["fence_note"] = "the old primary was stopped and was left stopped"
        if "resume_replay" in actions:
            tried = True
            try:
                self.replica.pause_replay()
            except Exception:  # pylint: disable=broad-except
                ok = False
        return ok if tried else None

    def close(self):
        for node in (self.primary, self.replica):
            if node is not None:
                node.close()

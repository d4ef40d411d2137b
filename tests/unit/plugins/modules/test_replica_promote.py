# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider postgres: the provider's decisions against fake servers.

The SQL itself is exercised against real PostgreSQL in
tests/integration/test_replica_promote_lab.py; here a FakeNode stands in for PgNode so that
the lag guard, the plan, check mode, the lock, fencing, reverts and the data-loss figure
can be driven through every branch quickly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket

import pytest


from ansible_collections.resilience.dr.plugins.module_utils import _pg
from ansible_collections.resilience.dr.plugins.module_utils import _promote_postgres
from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError
from ansible_collections.resilience.dr.plugins.modules import replica_promote
from modrun import run_main  # pylint: disable=import-error

SECRET = "s3cr3t-Pa55word"


pytestmark = pytest.mark.usefixtures("captured")


class Cluster(object):
    """State shared by the fake servers: ``replica`` and ``primary``."""

    def __init__(self):
        self.replica = dict(in_recovery=True, system_identifier="42", postmaster_start="r", read_only=False,
                            server_version="15", receive_lsn="0/3000000", replay_lsn="0/3000000",
                            last_replay_at=None, replay_age_seconds=5.0, replay_pause_state="not paused",
                            wal_receiver_status="streaming", wal_sender="p:1", timeline=1, current_lsn=None)
        self.primary = dict(in_recovery=False, system_identifier="42", postmaster_start="p", read_only=False,
                            server_version="15", receive_lsn=None, replay_lsn=None, last_replay_at=None,
                            replay_age_seconds=None, replay_pause_state=None, wal_receiver_status=None,
                            wal_sender=None, timeline=1, current_lsn="0/3000000")
        self.primary_up = True
        self.lock_free = True
        self.calls = []
        self.replay_catches_up = True
        self.primary_lsn_after_fence = None

    def node_state(self, role):
        return self.replica if role == "replica" else self.primary


CLUSTER = {}


class FakeNode(object):
    def __init__(self, settings, role):
        self.settings = settings
        self.role = role
        self.target = _pg.describe(settings)
        self.conn = None
        self.c = CLUSTER["c"]

    def open(self):
        if self.role == "primary" and not self.c.primary_up:
            raise DRError("CONNECTION_FAILED", "Cannot connect to PostgreSQL at %s: refused." % self.target)
        if self.settings.get("password") == "wrong":
            raise DRError("AUTH_FAILED", "login refused for password %s" % self.settings["password"])
        self.conn = object()
        return self

    def close(self):
        self.conn = None

    def try_lock(self):
        return self.c.lock_free

    def lock_holder(self):
        return {"pid": 4242, "application_name": _promote_postgres.APPLICATION_NAME}

    def state(self):
        return dict(self.c.node_state(self.role))

    def data_directory(self):
        return "/data/" + self.role

    def current_lsn(self):
        return self.c.node_state(self.role)["current_lsn"]

    def in_recovery(self):
        return self.c.node_state(self.role)["in_recovery"]

    def replay_position(self):
        r = self.c.replica
        if self.c.replay_catches_up:
            r["replay_lsn"] = max(r["replay_lsn"], r["receive_lsn"], key=_pg.lsn_to_int)
        return dict((k, r[k]) for k in ("receive_lsn", "replay_lsn", "replay_age_seconds", "wal_receiver_status"))

    def resume_replay(self):
        self.c.calls.append(("resume_replay", self.role))
        self.c.replica["replay_pause_state"] = "not paused"

    def pause_replay(self):
        self.c.calls.append(("pause_replay", self.role))
        self.c.replica["replay_pause_state"] = "paused"

    def fence_read_only(self):
        self.c.calls.append(("fence_read_only", self.role))
        self.c.primary["read_only"] = True
        if self.c.primary_lsn_after_fence:
            self.c.primary["current_lsn"] = self.c.primary_lsn_after_fence
        return {"terminated_sessions": 2}

    def unfence_read_only(self):
        self.c.calls.append(("unfence_read_only", self.role))
        self.c.primary["read_only"] = False

    def promote(self):
        self.c.calls.append(("promote", self.role))
        r = self.c.replica
        r.update(in_recovery=False, timeline=r["timeline"] + 1, current_lsn=r["replay_lsn"],
                 wal_receiver_status=None, receive_lsn=None)

    def write_check(self, table, note):
        self.c.calls.append(("write_check", table))
        return {"table": table, "id": 1, "written_at": "now", "read_back": True}

    def read_only_setting(self):
        return "on" if self.c.primary["read_only"] else "off"


@pytest.fixture
def cluster(monkeypatch):
    CLUSTER["c"] = Cluster()
    monkeypatch.setattr(_promote_postgres, "PgNode", FakeNode)
    yield CLUSTER["c"]
    CLUSTER.clear()


BASE = dict(provider="postgres", pg_login_host="replica.test", pg_port=5433, pg_login_password=SECRET,
            primary_login_host="primary.test", primary_port=5432)


def run(args, check=False):
    return run_main(replica_promote.main, args, check)


def keys(steps):
    return [(s["action"], s["target"]) for s in steps]


def test_lsn_arithmetic():
    assert _pg.lsn_to_int("0/0") == 0
    assert _pg.lsn_to_int("1/0") == 1 << 32
    assert _pg.lsn_to_int("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert _pg.int_to_lsn(_pg.lsn_to_int("16/B374D848")) == "16/B374D848"
    assert _pg.lsn_diff("0/3000100", "0/3000000") == 256
    assert _pg.lsn_diff("0/3000000", "0/3000100") == -256
    assert _pg.lsn_diff(None, "0/1") is None
    assert _pg.timeline_of_walfile("000000020000000000000003") == 2
    with pytest.raises(DRError):
        _pg.lsn_to_int("not-an-lsn")


def test_check_mode_lists_the_steps_the_real_run_takes(cluster):
    args = dict(BASE, verify_write=True)
    dry = run(args, check=True)
    assert dry.kind == "exit", dry.payload
    assert cluster.calls == [], "check mode changed something"
    assert cluster.replica["in_recovery"] is True
    assert dry.payload["changed"] is True
    expected = [("fence_read_only", "primary.test:5432/postgres"), ("wait_for_replay", "replica.test:5433/postgres"),
                ("promote", "replica.test:5433/postgres"), ("wait_for_promotion", "replica.test:5433/postgres"),
                ("verify_write", "replica.test:5433/postgres")]
    assert keys(dry.payload["steps"]) == expected
    assert all(s["status"] == "planned" for s in dry.payload["steps"])
    assert dry.payload["after"]["replica"]["in_recovery"] is False

    real = run(args)
    assert real.kind == "exit", real.payload
    assert keys(real.payload["steps"]) == expected
    assert [c[0] for c in cluster.calls] == ["fence_read_only", "promote", "write_check"]
    assert real.payload["promoted"] is True
    assert real.payload["timeline_before"] == 1 and real.payload["timeline_after"] == 2
    assert real.payload["fence"]["status"] == "fenced"
    assert real.payload["data_loss_bytes"] == 0
    assert SECRET not in json.dumps(real.payload)

    again = run(args)
    assert again.payload["changed"] is False
    assert again.payload["steps"] == []
    assert again.payload["already_primary"] is True
    assert again.payload["fence"]["status"] == "already_fenced"


def test_lag_in_bytes_is_refused_and_nothing_changes(cluster):
    cluster.replica["receive_lsn"] = "0/5000000"  # 32 MiB received, not replayed
    cluster.replica["replay_age_seconds"] = 2.0
    out = run(dict(BASE, max_lag="1h"))
    assert out.kind == "fail"
    assert out.payload["error"] == "LAG_TOO_HIGH"
    assert "33554432 bytes" in out.payload["msg"]
    assert "Nothing was changed" in out.payload["msg"]
    assert out.payload["changed"] is False
    assert cluster.calls == []


def test_lag_in_seconds_and_behind_primary(cluster):
    cluster.replica["receive_lsn"] = "0/3000100"
    cluster.replica["replay_age_seconds"] = 120.0
    out = run(dict(BASE, max_lag="60s"))
    assert out.payload["error"] == "LAG_TOO_HIGH"
    assert "120.0s" in out.payload["msg"]
    # received == replayed, but the (reachable) primary is far ahead: a cut-off replica
    cluster.replica["receive_lsn"] = "0/3000000"
    cluster.primary["current_lsn"] = "0/5000000"
    out = run(dict(BASE))
    assert out.payload["error"] == "LAG_TOO_HIGH"
    assert out.payload["lag"]["bytes_behind_primary"] == 0x2000000
    assert out.payload["lag"]["seconds"] == 0
    assert cluster.calls == []


def test_allow_data_loss_needs_a_reason(cluster):
    out = run(dict(BASE, allow_data_loss=True))
    assert out.kind == "fail"
    assert "reason" in out.payload["msg"]
    assert cluster.calls == []


def test_allow_data_loss_promotes_and_reports_the_loss(cluster):
    cluster.replica["wal_receiver_status"] = None  # cut off from the primary
    cluster.primary["current_lsn"] = "0/3000400"
    out = run(dict(BASE, allow_data_loss=True, reason="INC-1 drill", fence="none", max_lag_bytes=100))
    assert out.kind == "exit", out.payload
    assert out.payload["lag"]["overridden"] is True
    assert out.payload["data_loss_bytes"] == 0x400
    assert out.payload["old_primary_last_lsn"] == "0/3000400"
    assert "not fenced" in out.payload["data_loss_note"]
    assert out.payload["reason"] == "INC-1 drill"
    assert [c[0] for c in cluster.calls] == ["promote"]


def test_data_loss_is_unknown_without_the_primary(cluster):
    args = dict(BASE)
    del args["primary_login_host"]
    out = run(args)
    assert out.kind == "exit", out.payload
    assert out.payload["promoted"] is True
    assert out.payload["data_loss_bytes"] is None
    assert "unknown" in out.payload["data_loss_note"]
    assert out.payload["fence"]["status"] == "skipped"


def test_unreachable_primary_is_not_fenced_unless_required(cluster):
    cluster.primary_up = False
    out = run(dict(BASE))
    assert out.kind == "exit"
    assert out.payload["fence"]["status"] == "skipped"
    assert keys(out.payload["steps"])[0][0] == "wait_for_replay"
    cluster.replica.update(in_recovery=True, timeline=1)
    cluster.calls[:] = []
    out = run(dict(BASE, require_fence=True))
    assert out.payload["error"] == "PRECONDITION_FAILED"
    assert cluster.calls == []


def test_wrong_password_on_the_primary_is_refused_without_the_password(cluster):
    out = run(dict(BASE, primary_login_password="wrong"))
    assert out.payload["error"] == "AUTH_FAILED"
    assert "primary_login_password" in out.payload["msg"]
    assert "wrong" not in json.dumps(out.payload).replace("wrong)", "")
    assert cluster.calls == []


def test_locked(cluster):
    cluster.lock_free = False
    out = run(dict(BASE))
    assert out.payload["error"] == "LOCKED"
    assert out.payload["lock_holder"]["pid"] == 4242
    assert cluster.calls == []


def test_already_primary_with_a_writable_old_primary_plans_only_the_fence(cluster):
    cluster.replica.update(in_recovery=False, timeline=2, current_lsn="0/3000200")
    dry = run(dict(BASE), check=True)
    assert keys(dry.payload["steps"]) == [("fence_read_only", "primary.test:5432/postgres")]
    real = run(dict(BASE))
    assert keys(real.payload["steps"]) == keys(dry.payload["steps"])
    assert cluster.primary["read_only"] is True
    assert real.payload["promoted"] is False
    assert run(dict(BASE)).payload["changed"] is False


def test_fence_none_leaves_the_primary(cluster):
    out = run(dict(BASE, fence="none"))
    assert "fence_read_only" not in [s["action"] for s in out.payload["steps"]]
    assert cluster.primary["read_only"] is False
    assert out.payload["fence"]["status"] == "not_requested"


def test_paused_replay_is_resumed_before_waiting(cluster):
    cluster.replica["replay_pause_state"] = "paused"
    out = run(dict(BASE))
    assert [s["action"] for s in out.payload["steps"]][:2] == ["resume_replay", "fence_read_only"]
    assert cluster.calls[0] == ("resume_replay", "replica")


def test_replay_timeout_reverts_the_fence(cluster):
    cluster.replay_catches_up = False
    cluster.replica["receive_lsn"] = "0/3000100"
    out = run(dict(BASE, replay_timeout="0.2s", max_lag="1h"))
    assert out.kind == "fail"
    assert out.payload["error"] == "TIMEOUT"
    assert out.payload["reverted"] is True
    assert out.payload["failed_step"]["action"] == "wait_for_replay"
    assert [c[0] for c in cluster.calls] == ["fence_read_only", "unfence_read_only"]
    assert cluster.primary["read_only"] is False
    assert cluster.replica["in_recovery"] is True


def test_wait_goal_includes_the_fenced_primary_lsn(cluster):
    cluster.primary_lsn_after_fence = "0/3000080"
    cluster.replica["receive_lsn"] = "0/3000080"  # what the walsender sent after the fence
    out = run(dict(BASE))
    assert out.kind == "exit", out.payload
    assert out.payload["wait_for_replay"]["goal_lsn"] == "0/3000080"
    assert out.payload["data_loss_bytes"] == 0


def test_fence_stop_needs_a_local_data_dir(cluster, tmp_path):
    out = run(dict(BASE, fence="stop"))
    assert out.kind == "fail" and "primary_data_dir" in out.payload["msg"]
    out = run(dict(BASE, fence="stop", primary_data_dir=str(tmp_path)))
    assert out.payload["error"] == "INVALID_ARGUMENT"
    assert "not a PostgreSQL data directory" in out.payload["msg"]
    (tmp_path / "PG_VERSION").write_text("15\n")
    out = run(dict(BASE, fence="stop", primary_data_dir=str(tmp_path), pg_bin_dir=str(tmp_path)))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "pg_ctl" in out.payload["msg"]
    (tmp_path / "pg_ctl").write_text("#!/bin/sh\n")
    (tmp_path / "pg_ctl").chmod(0o755)
    # the primary says its data directory is /data/primary: refuse to stop something else
    out = run(dict(BASE, fence="stop", primary_data_dir=str(tmp_path), pg_bin_dir=str(tmp_path)))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "refusing to stop another server" in out.payload["msg"]
    assert cluster.calls == []


def test_same_server_given_as_primary_is_refused(cluster):
    cluster.primary["postmaster_start"] = cluster.replica["postmaster_start"]
    out = run(dict(BASE))
    assert out.payload["error"] == "INVALID_ARGUMENT"
    cluster.primary["postmaster_start"] = "p"
    cluster.primary["system_identifier"] = "43"
    out = run(dict(BASE))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "same cluster" in out.payload["msg"]


def test_bad_duration_is_a_clear_error(cluster):
    out = run(dict(BASE, max_lag="soon"))
    assert out.payload["error"] == "INVALID_ARGUMENT"
    assert cluster.calls == []


def test_real_connect_errors_are_classified_and_scrubbed():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    settings = dict(host="127.0.0.1", port=port, user="postgres", password=SECRET, dbname="postgres",
                    connect_timeout=2)
    with pytest.raises(DRError) as info:
        _pg.connect(settings)
    assert info.value.code == "CONNECTION_FAILED"
    assert SECRET not in str(info.value) and SECRET not in json.dumps(info.value.details)
    assert _pg.classify(Exception('FATAL:  password authentication failed for user "postgres"')) == "AUTH_FAILED"


def test_options_of_another_provider_are_refused(cluster):
    out = run(dict(BASE, db_instance_identifier="orders-dr"))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "db_instance_identifier" in out.payload["msg"]
    out = run(dict(provider="gcp_cloudsql", gcp_project="p", cloudsql_instance="i", fence="stop", primary_data_dir="/x"))
    assert out.payload["error"] == "INVALID_ARGUMENT"
    assert "fence" in out.payload["msg"] and "primary_data_dir" in out.payload["msg"]
    assert cluster.calls == []


def test_cloud_providers_refuse_incomplete_or_unsafe_settings():
    out = run(dict(provider="gcp_cloudsql", gcp_project="p", gcp_access_token="token-xyz-123"))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "cloudsql_instance" in out.payload["msg"]
    out = run(dict(provider="gcp_cloudsql", gcp_project="p", gcp_access_token="token-xyz-123", cloudsql_instance="i",
                   cloudsql_mode="ha_failover"))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "cloudsql_target_zone" in out.payload["msg"]
    out = run(dict(provider="azure_pg_flexible", azure_subscription_id="s", azure_resource_group="rg"))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "azure_server_name" in out.payload["msg"]
    # a bearer token is never sent over plain http to anything but loopback
    out = run(dict(provider="azure_pg_flexible", azure_subscription_id="s", azure_resource_group="rg",
                   azure_server_name="db", azure_access_token="token-xyz-123", azure_resource_manager_endpoint="http://arm.example.com"))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "loopback" in out.payload["msg"]
    out = run(dict(provider="azure_pg_flexible", azure_subscription_id="s", azure_resource_group="rg",
                   azure_server_name="db", azure_access_token="token-xyz-123", azure_promote_option="forced"))
    assert out.payload["error"] == "INVALID_ARGUMENT" and "allow_data_loss" in out.payload["msg"]

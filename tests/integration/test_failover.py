# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/failover.yml on a lab instance: check mode first, then the real failover."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import psycopg
import pytest

from lablib import Lab, run_playbook

pytestmark = pytest.mark.lab

PORT_BASE = 16500
NAME = "failover"


def lab_vars():
    return {"lab_name": NAME, "lab_port_base": PORT_BASE, "lab_root": os.path.join("/var/tmp/resilience-dr", NAME)}


def timelines(lab):
    out = {}
    for node in ("primary", "replica"):
        try:
            out[node] = lab.sql("select timeline_id, pg_is_in_recovery() from pg_control_checkpoint()", node=node)[0]
        except psycopg.OperationalError:
            out[node] = "down"
    return out


@pytest.fixture(scope="module")
def lab():
    instance = Lab.up(NAME, port_base=PORT_BASE)
    yield instance
    instance.down()


def after_switch_vars(lab, httpserver):
    """Clients' settings file, a CDN purge, an HTTP health gate and a webhook notification."""
    return {
        "db_failover_client_settings_file": os.path.join(lab.root, "clients", "db.env"),
        "db_failover_cdn_purge": [{"name": "edge-cache", "url": httpserver.url_for("/purge"), "body": {"purge_everything": True},
                                   "headers": {"Authorization": "Bearer cdn-secret-token"}}],
        "health_gate_http_checks": [{"url": "http://127.0.0.1:%d/" % (PORT_BASE + 80), "contains": "blue"}],
        "health_gate_retries": 2,
        "health_gate_delay": 1,
        "notify_webhook_url": httpserver.url_for("/hook"),
    }


def test_failover(lab, httpserver):
    httpserver.expect_request("/purge", method="POST").respond_with_data("ok")
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    clients = os.path.join(lab.root, "clients", "db.env")
    os.makedirs(os.path.dirname(clients), exist_ok=True)
    old_settings = "PGHOST=127.0.0.1\nPGPORT=%d\n" % lab.info["primary"]["port"]
    with open(clients, "w") as handle:
        handle.write(old_settings)
    extra = dict(lab_vars(), **after_switch_vars(lab, httpserver))
    lab.sql("insert into events (payload) select 'before-failover-' || g from generate_series(1, 50) g")
    committed = lab.sql("select count(*) from events")[0][0]
    records = os.path.join(lab.root, "records", "dr-records.jsonl")
    state_before = (timelines(lab), lab.servers_state("pg")["primary"]["srv_admin_state"])

    dry = run_playbook("playbooks/failover.yml", extra, check=True)
    assert dry.returncode == 0, dry.stdout[-4000:]
    assert "DRY RUN (check mode), nothing changed" in dry.stdout
    assert (timelines(lab), lab.servers_state("pg")["primary"]["srv_admin_state"]) == state_before
    assert not os.path.exists(records), "check mode wrote a record"
    # the after-switch steps only planned: clients' file as it was, no purge, no notification sent
    with open(clients) as handle:
        assert handle.read() == old_settings
    assert [entry[0].path for entry in httpserver.log] == []
    assert "would purge: edge-cache" in dry.stdout

    real = run_playbook("playbooks/failover.yml", extra)
    assert real.returncode == 0, real.stdout[-4000:]
    # the promoted replica has every row committed before, and the proof write
    assert lab.in_recovery("replica") is False
    assert lab.sql("select count(*) from events", node="replica")[0][0] == committed + 1
    # the old primary was stopped (fence: stop in the lab inventory): it accepts nothing
    with pytest.raises(psycopg.OperationalError):
        lab.sql("insert into events (payload) values ('split brain')", node="primary")
    # HAProxy sends PostgreSQL traffic to the new primary
    pg = lab.servers_state("pg")
    assert int(pg["replica"]["srv_admin_state"]) & 0x23 == 0
    assert int(pg["primary"]["srv_admin_state"]) & 0x23
    through = lab.sql("insert into events (payload) values ('after') returning inet_server_port()",
                      node=str(lab.info["haproxy"]["pg_port"]))
    assert through == [(lab.info["replica"]["port"],)]
    # the record: started then completed, with the RTO measured
    with open(records) as handle:
        lines = [json.loads(line) for line in handle]
    assert [r["status"] for r in lines] == ["started", "completed"]
    assert lines[1]["rto_seconds"] > 0
    # the health gate ran before the record said completed, and passed
    assert lines[1]["details"]["health_gate"]["passed"] is True
    assert lines[1]["details"]["health_gate"]["http"] == ["http://127.0.0.1:%d/" % (PORT_BASE + 80)]
    assert "health gate: passed" in real.stdout
    assert lines[1]["details"]["data_loss_bytes"] == 0
    assert "RTO (start to first write through HAProxy)" in real.stdout
    # clients' settings now name the promoted server; the old file is kept as a backup beside it
    with open(clients) as handle:
        assert "PGPORT=%d\n" % lab.info["replica"]["port"] in handle.read()
    backups = [f for f in os.listdir(os.path.dirname(clients)) if f.startswith("db.env.") and f != "db.env"]
    assert len(backups) == 1
    with open(os.path.join(os.path.dirname(clients), backups[0])) as handle:
        assert handle.read() == old_settings
    assert lines[1]["details"]["client_settings_file"] == clients
    assert lines[1]["details"]["cdn_purged"] == ["edge-cache"]
    # the CDN purge and the webhook were called once each, after the switch
    calls = [(entry[0].path, entry[0].get_json()) for entry in httpserver.log]
    assert [c[0] for c in calls] == ["/purge", "/hook"]
    assert calls[0][1] == {"purge_everything": True}
    assert "Failover failover-" in calls[1][1]["message"] and calls[1][1]["status"] == "completed"
    assert "cdn-secret-token" not in real.stdout

    again = run_playbook("playbooks/failover.yml", extra)
    assert again.returncode == 0, again.stdout[-4000:]
    assert "promoted 127.0.0.1:%d/appdb: False" % lab.info["replica"]["port"] in again.stdout
    # the clients' file already holds these settings: left alone, no second backup
    assert len([f for f in os.listdir(os.path.dirname(clients)) if f.startswith("db.env.")]) == 1
    lab.sql("checkpoint", node="replica")  # pg_control's timeline moves at the first checkpoint after promotion
    assert lab.sql("select timeline_id from pg_control_checkpoint()", node="replica")[0][0] == 2


# Port block 13000-13499: a second lab, failed over with a health gate that cannot pass.
GATE_PORT_BASE = 13000
GATE_NAME = "failover-gate"


def test_failed_health_gate_is_recorded_as_degraded_not_completed(httpserver):
    """The failover itself happens (promoted, switched, write proven); the gate then fails:
    the record says failed with outcome degraded and the gate's result, never completed."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    gate_lab = Lab.up(GATE_NAME, port_base=GATE_PORT_BASE)
    try:
        url = "http://127.0.0.1:%d/" % (GATE_PORT_BASE + 80)
        extra = {"lab_name": GATE_NAME, "lab_port_base": GATE_PORT_BASE, "lab_root": gate_lab.root,
                 "health_gate_http_checks": [{"url": url, "contains": "a page this lab never serves"}],
                 "health_gate_retries": 1, "health_gate_delay": 0,
                 "notify_webhook_url": httpserver.url_for("/hook")}
        out = run_playbook("playbooks/failover.yml", extra)
        assert out.returncode != 0
        assert "Failover DEGRADED at" in out.stdout and "health gate FAILED" in out.stdout
        assert "The database failover itself is done" in out.stdout
        # the failover did happen: the replica is the primary, HAProxy sends PostgreSQL to it
        assert gate_lab.in_recovery("replica") is False
        assert gate_lab.sql("select count(*) from events where payload = 'failover-verify'", node="replica")[0][0] == 1
        assert int(gate_lab.servers_state("pg")["replica"]["srv_admin_state"]) & 0x23 == 0
        # the record on disk: started, then failed (outcome degraded) with the gate's result; never completed
        with open(os.path.join(gate_lab.root, "records", "dr-records.jsonl")) as handle:
            lines = [json.loads(line) for line in handle]
        assert [(r["kind"], r["status"]) for r in lines] == [("failover", "started"), ("failover", "failed")]
        details = lines[1]["details"]
        assert details["outcome"] == "degraded"
        assert details["promoted"] is True and details["write_proven"] is True and details["switched"] is True
        assert details["health_gate"]["ran"] is True and details["health_gate"]["passed"] is False
        assert details["health_gate"]["http_failed"] == [url] and details["health_gate"]["http_status"] == [200]
        assert details["failed_task"] == "HTTP checks"
        assert "health gate FAILED" in details["stop_message"]
        assert details["rto_seconds"] > 0
        assert lines[1]["undo"]["active"] == "primary"
        # the failure was notified, with the outcome
        calls = [entry[0].get_json() for entry in httpserver.log if entry[0].path == "/hook"]
        assert len(calls) == 1 and calls[0]["status"] == "degraded" and "health gate FAILED" in calls[0]["message"]
    finally:
        gate_lab.down()

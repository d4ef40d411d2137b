# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/failover.yml through ansible-runner (what AWX runs), with a private data dir, gives
the same result as through ansible-playbook: two identical labs, one run each way, same state."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import threading

import psycopg
import pytest

from lablib import ROOT, VENV_BIN, Lab, ansible_env, run_playbook

pytestmark = pytest.mark.lab

RUNNER = os.path.join(VENV_BIN, "ansible-runner")
PLAYBOOK_LAB = {"name": "runner-pb", "port_base": 29700}
RUNNER_LAB = {"name": "runner-ar", "port_base": 29800}


def lab_vars(spec):
    return {"lab_name": spec["name"], "lab_port_base": spec["port_base"],
            "lab_root": os.path.join("/var/tmp/resilience-dr", spec["name"])}


@pytest.fixture(scope="module")
def labs():
    if not os.path.exists(RUNNER):
        pytest.skip("ansible-runner is not installed in .venv (pip install ansible-runner; it is in requirements-test.txt)")
    started, errors = {}, []

    def up(spec):
        try:
            started[spec["name"]] = Lab.up(spec["name"], port_base=spec["port_base"])
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    threads = [threading.Thread(target=up, args=(spec,)) for spec in (PLAYBOOK_LAB, RUNNER_LAB)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        yield started
    finally:
        for lab in started.values():
            lab.down()


def outcome(lab, committed):
    """What a failover leaves behind, with nothing that differs between two labs by construction."""
    try:
        lab.sql("select 1", node="primary")
        old_primary = "up"
    except psycopg.OperationalError:
        old_primary = "down"
    pg = lab.servers_state("pg")
    with open(os.path.join(lab.root, "records", "dr-records.jsonl")) as handle:
        lines = [json.loads(line) for line in handle]
    lab.sql("checkpoint", node="replica")  # pg_control's timeline moves at the first checkpoint after promotion
    return {
        "replica_in_recovery": lab.in_recovery("replica"),
        "rows_added": lab.sql("select count(*) from events", node="replica")[0][0] - committed,
        "verify_rows": lab.sql("select count(*) from events where payload = 'failover-verify'", node="replica")[0][0],
        "timeline": lab.sql("select timeline_id from pg_control_checkpoint()", node="replica")[0][0],
        "old_primary": old_primary,
        "haproxy_active": sorted(name for name, row in pg.items() if int(row["srv_admin_state"]) & 0x23 == 0),
        "through_haproxy_port_is_replica": lab.sql("select inet_server_port()", node=str(lab.info["haproxy"]["pg_port"]))[0][0]
        == lab.info["replica"]["port"],
        "record": [(r["kind"], r["status"]) for r in lines],
        "data_loss_bytes": lines[-1]["details"]["data_loss_bytes"],
    }


def test_failover_through_ansible_runner_matches_ansible_playbook(labs, tmp_path):
    by_playbook = labs[PLAYBOOK_LAB["name"]]
    by_runner = labs[RUNNER_LAB["name"]]
    committed = {}
    for lab in (by_playbook, by_runner):
        lab.sql("insert into events (payload) select 'before-' || g from generate_series(1, 25) g")
        committed[lab.info["name"]] = lab.sql("select count(*) from events")[0][0]

    out = run_playbook("playbooks/failover.yml", lab_vars(PLAYBOOK_LAB))
    assert out.returncode == 0, out.stdout[-3000:]

    # ansible-runner's private data dir: env/extravars, env/envvars, artifacts/<ident>/
    pdd = tmp_path / "runner"
    (pdd / "env").mkdir(parents=True)
    (pdd / "env" / "extravars").write_text(json.dumps(lab_vars(RUNNER_LAB)))
    env = ansible_env()
    (pdd / "env" / "envvars").write_text(json.dumps({k: env[k] for k in (
        "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_ROLES_PATH", "ANSIBLE_PYTHON_INTERPRETER", "ANSIBLE_NOCOLOR")}))
    proc = subprocess.run(
        [RUNNER, "run", str(pdd), "--ident", "failover-1", "--project-dir", os.path.join(ROOT, "playbooks"),
         "-p", "failover.yml", "--inventory", os.path.join(ROOT, "inventories", "lab")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    artifacts = pdd / "artifacts" / "failover-1"
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (artifacts / "rc").read_text().strip() == "0"
    assert (artifacts / "status").read_text().strip() == "successful"
    events = [json.loads((artifacts / "job_events" / name).read_text()) for name in os.listdir(str(artifacts / "job_events"))]
    ok_tasks = {e["event_data"].get("task") for e in events if e["event"] == "runner_on_ok"}
    assert "Promote the replica (lag guard, fence of the old primary, lock)" in ok_tasks
    assert "Point HAProxy's PostgreSQL backend at the promoted server" in ok_tasks

    expected = outcome(by_playbook, committed[PLAYBOOK_LAB["name"]])
    assert expected["replica_in_recovery"] is False and expected["rows_added"] == 1 and expected["old_primary"] == "down"
    assert expected["haproxy_active"] == ["replica"] and expected["record"] == [("failover", "started"), ("failover", "completed")]
    assert outcome(by_runner, committed[RUNNER_LAB["name"]]) == expected


# -- AWX configuration as code (no AWX here: the data, and the playbooks' confirmation guard) ----
def _controller():
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.path.join(ROOT, "awx", "controller.yml")) as handle:
        return yaml.safe_load(handle)


def test_awx_job_templates_and_schedule():
    conf = _controller()
    templates = {t["name"]: t for t in conf["awx_job_templates"]}
    for template in templates.values():
        assert os.path.exists(os.path.join(ROOT, template["playbook"])), template["playbook"]
        if template["destructive"]:
            confirm = [q for q in template["survey"] if q["variable"] == "confirm_cluster"]
            assert confirm and confirm[0]["required"] is True and confirm[0]["type"] == "text", template["name"]
        for question in template["survey"]:
            assert question["type"] in ("text", "multiplechoice", "integer", "password")
            if question["type"] == "multiplechoice":
                assert question.get("default", question["choices"][0]) in question["choices"]
    assert templates["DR - rollback"]["survey"][1]["choices"] == ["traffic", "service", "data", "full"]
    drill = [s for s in conf["awx_schedules"] if s["unified_job_template"] == "DR - recovery drill"]
    assert len(drill) == 1 and drill[0]["unified_job_template"] in templates
    assert drill[0]["rrule"].startswith("DTSTART:") and " RRULE:FREQ=" in drill[0]["rrule"]


@pytest.mark.parametrize("playbook, extra", [
    ("playbooks/failback.yml", {}),
    ("playbooks/rollback.yml", {"rollback_level": "traffic"}),
])
def test_destructive_playbooks_refuse_a_wrong_cluster_name(playbook, extra, tmp_path):
    root = str(tmp_path / "no-lab")
    out = run_playbook(playbook, dict(extra, lab_name="runner-confirm", lab_root=root, lab_port_base=29900,
                                      confirm_cluster="some-other-cluster"))
    assert out.returncode != 0
    assert "confirm_cluster 'some-other-cluster' is not this inventory's cluster: nothing was changed." in out.stdout
    assert not os.path.exists(root)  # nothing captured, recorded or touched


def test_execution_environment_builds_a_context(tmp_path):
    """ansible-builder v3 `create` (no container engine needed) from execution-environment.yml."""
    builder = os.environ.get("RESILIENCE_ANSIBLE_BUILDER", os.path.join(VENV_BIN, "ansible-builder"))
    if not os.path.exists(builder):
        pytest.skip("ansible-builder is not installed (pip install ansible-builder>=3.2; set RESILIENCE_ANSIBLE_BUILDER to use another one)")
    env = ansible_env()
    out_dir = tmp_path / "dist"
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out_dir), ROOT],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE)
    # the EE file names build/resilience-dr-<version>.tar.gz relative to itself: build it in a copy of the tree
    import shutil  # pylint: disable=import-outside-toplevel
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("execution-environment.yml", "requirements.txt", "bindep.txt"):
        shutil.copy(os.path.join(ROOT, name), str(tree / name))
    (tree / "build").mkdir()
    tarball = [name for name in os.listdir(str(out_dir)) if name.endswith(".tar.gz")][0]
    shutil.copy(str(out_dir / tarball), str(tree / "build" / tarball))
    context = tmp_path / "context"
    proc = subprocess.run([builder, "create", "-f", str(tree / "execution-environment.yml"), "-c", str(context)],
                          cwd=str(tree), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout
    build = context / "_build"
    assert (build / "collection" / tarball).exists()
    assert "psycopg" in (build / "requirements.txt").read_text()
    assert "postgresql-client" in (build / "bindep.txt").read_text()
    steps = (context / "Dockerfile").read_text()
    assert "ansible-galaxy collection install" in steps and "/build/resilience-dr.tar.gz" in steps
    assert "kubernetes.core" in (build / "requirements.yml").read_text()

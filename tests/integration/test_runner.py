# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every runbook through ansible-runner (what AWX runs), with a private data dir, gives the same
result as through ansible-playbook (issue 8, done-when 4): two identical labs, the same sequence
of runbooks on each (verify_backups, recovery_drill, rollback level traffic, restore, failover,
failback), one lab driven by ansible-playbook and the other by ansible-runner, side by side. After
each runbook both labs' real state (lablib.snapshot, minus what differs between two labs by
construction: ports, paths, times) and the play recaps (ok/changed/failed per host) must match."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re
import subprocess
import threading
import time

import pytest

from lablib import ROOT, VENV_BIN, Lab, ansible_env, comparable, run_playbook, settle, snapshot, snapshot_diff

pytestmark = pytest.mark.lab

RUNNER = os.path.join(VENV_BIN, "ansible-runner")
PLAYBOOK_LAB = {"name": "runner-pb", "port_base": 29700}
RUNNER_LAB = {"name": "runner-ar", "port_base": 29800}
RECAP_KEYS = ("ok", "changed", "failed", "unreachable", "rescued")


def lab_vars(spec):
    return {"lab_name": spec["name"], "lab_port_base": spec["port_base"],
            "lab_root": os.path.join("/var/tmp/resilience-dr", spec["name"])}


def in_parallel(*calls):
    """Run the calls in threads; return their results in order (re-raise the first error)."""
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            results[index] = call()
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture(scope="module")
def labs():
    if not os.path.exists(RUNNER):
        pytest.skip("ansible-runner is not installed in .venv (pip install ansible-runner; it is in requirements-test.txt)")
    started = {}

    def up(spec):
        started[spec["name"]] = Lab.up(spec["name"], port_base=spec["port_base"])

    try:
        in_parallel(lambda: up(PLAYBOOK_LAB), lambda: up(RUNNER_LAB))
        yield started
    finally:
        for lab in started.values():
            restores = os.path.join(lab.root, "restores")
            for name in os.listdir(restores) if os.path.isdir(restores) else []:
                stop_pg(lab, os.path.join(restores, name))
            lab.down()


def stop_pg(lab, data_dir):
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        subprocess.run(["runuser", "-u", lab.info["os_user"], "--", os.path.join(lab.info["pg_bin"], "pg_ctl"), "-D", data_dir,
                        "-m", "immediate", "-w", "stop"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)


def recap_of_stdout(text):
    """PLAY RECAP lines of ansible-playbook's output: {host: {ok: n, changed: n, ...}}."""
    out = {}
    for host, counts in re.findall(r"^(\S+)\s+: ((?:\w+=\d+\s*)+)$", text.split("PLAY RECAP")[-1], re.M):
        out[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts) if k in RECAP_KEYS}
    return out


def by_playbook(playbook, extra):
    proc = run_playbook(playbook, dict(lab_vars(PLAYBOOK_LAB), **extra))
    assert proc.returncode == 0, "%s through ansible-playbook failed:\n%s" % (playbook, proc.stdout[-4000:])
    return recap_of_stdout(proc.stdout), proc.stdout


def by_runner(playbook, extra, pdd, ident):
    """ansible-runner's private data dir: env/extravars, env/envvars, artifacts/<ident>/; the recap
    is read from the playbook_on_stats event, not from the screen."""
    (pdd / "env").mkdir(parents=True)
    (pdd / "env" / "extravars").write_text(json.dumps(dict(lab_vars(RUNNER_LAB), **extra)))
    env = ansible_env()
    (pdd / "env" / "envvars").write_text(json.dumps({k: env[k] for k in (
        "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_ROLES_PATH", "ANSIBLE_PYTHON_INTERPRETER", "ANSIBLE_NOCOLOR")}))
    proc = subprocess.run(
        [RUNNER, "run", str(pdd), "--ident", ident, "--project-dir", os.path.join(ROOT, "playbooks"),
         "-p", os.path.basename(playbook), "--inventory", os.path.join(ROOT, "inventories", "lab")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    artifacts = pdd / "artifacts" / ident
    assert proc.returncode == 0, "%s through ansible-runner failed:\n%s" % (playbook, proc.stdout[-4000:])
    assert (artifacts / "rc").read_text().strip() == "0"
    assert (artifacts / "status").read_text().strip() == "successful"
    events = [json.loads((artifacts / "job_events" / name).read_text()) for name in os.listdir(str(artifacts / "job_events"))]
    stats = [e["event_data"] for e in events if e["event"] == "playbook_on_stats"]
    assert len(stats) == 1, "no playbook_on_stats event"
    recap = {}
    for key in RECAP_KEYS:
        for host, count in (stats[0].get(key) or {}).items():
            recap.setdefault(host, dict.fromkeys(RECAP_KEYS, 0))[key] = count
    for host in stats[0].get("processed") or {}:
        recap.setdefault(host, dict.fromkeys(RECAP_KEYS, 0))
    return recap, events


def restore_target(lab):
    """Rows before and after a chosen instant; the WAL holding them archived."""
    lab.sql("insert into events (written_at, payload) select clock_timestamp(), 'runner-before-' || g from generate_series(1, 7) g")
    time.sleep(0.3)
    moment = lab.sql("select clock_timestamp()")[0][0]
    time.sleep(0.3)
    lab.sql("insert into events (written_at, payload) select clock_timestamp(), 'runner-after-' || g from generate_series(1, 3) g")
    settle(lab)
    return moment.astimezone(datetime.timezone.utc).isoformat()


# (step, playbook, extra vars); restore's target time is each lab's own instant
STEPS = [
    ("verify_backups", "playbooks/verify_backups.yml", {}),
    ("recovery_drill", "playbooks/recovery_drill.yml", {}),
    ("rollback-traffic", "playbooks/rollback.yml", {"rollback_level": "traffic", "rollback_traffic_active": "green",
                                                    "rollback_reason": "runner test"}),
    ("restore", "playbooks/restore.yml", {}),
    ("failover", "playbooks/failover.yml", {}),
    ("failback", "playbooks/failback.yml", {}),
]


def test_every_runbook_through_ansible_runner_matches_ansible_playbook(labs, tmp_path):
    pb_lab, ar_lab = labs[PLAYBOOK_LAB["name"]], labs[RUNNER_LAB["name"]]
    targets = dict(zip(("pb", "ar"), in_parallel(lambda: restore_target(pb_lab), lambda: restore_target(ar_lab))))
    for step, playbook, extra in STEPS:
        pb_extra, ar_extra = dict(extra), dict(extra)
        if step == "restore":
            pb_extra["db_restore_target_time"], ar_extra["db_restore_target_time"] = targets["pb"], targets["ar"]
        (pb_recap, _stdout), (ar_recap, events) = in_parallel(
            lambda: by_playbook(playbook, pb_extra),
            lambda: by_runner(playbook, ar_extra, tmp_path / step, step))
        assert pb_recap and ar_recap == pb_recap, "%s: recap through ansible-runner %s, through ansible-playbook %s" % (
            step, ar_recap, pb_recap)
        if step == "failover":
            ok_tasks = {e["event_data"].get("task") for e in events if e["event"] == "runner_on_ok"}
            assert "Promote the replica (lag guard, fence of the old primary, lock)" in ok_tasks
            assert "Point HAProxy's PostgreSQL backend at the promoted server" in ok_tasks
        in_parallel(lambda: settle(pb_lab), lambda: settle(ar_lab))
        expected, got = comparable(pb_lab, snapshot(pb_lab)), comparable(ar_lab, snapshot(ar_lab))
        assert got == expected, "%s: state after ansible-runner differs from ansible-playbook's: %s" % (step, snapshot_diff(expected, got))
        check_step(step, pb_lab, expected)
    # the restored clusters hold the same rows
    restored = [lab.sql("select payload from events order by id", node=str(lab.info["port_base"] + 50)) for lab in (pb_lab, ar_lab)]
    assert restored[0] == restored[1] and ("runner-before-7",) in restored[0] and ("runner-after-1",) not in restored[0]


def check_step(step, lab, state):
    """What each runbook did, on the ansible-playbook lab (the runner lab equals it): the
    comparison above must not pass on two labs where nothing happened."""
    records = state["records"].get("dr-records.jsonl", [])
    if step == "recovery_drill":
        assert [r for r in records if r[0] == "drill"], records
    elif step == "rollback-traffic":
        active = {name: int(row["srv_admin_state"]) & 0x23 == 0 for name, row in state["haproxy"]["web"].items()}
        assert active == {"blue": False, "green": True}
        assert records[-2:] == [["rollback", "started"], ["rollback", "completed"]]
    elif step == "restore":
        assert records[-2:] == [["restore", "started"], ["restore", "completed"]]
        assert int(state["haproxy"]["pg"]["primary"]["srv_admin_state"]) & 1, "writers were not stopped"
    elif step == "failover":
        assert state["postgres"]["primary"] == "down" and state["postgres"]["replica"]["in_recovery"] is False
        assert records[-2:] == [["failover", "started"], ["failover", "completed"]]
    elif step == "failback":
        assert state["postgres"]["primary"]["in_recovery"] is False and state["postgres"]["replica"]["in_recovery"] is True
        assert state["postgres"]["primary"]["timeline"] == 3
        assert int(state["haproxy"]["pg"]["primary"]["srv_admin_state"]) & 0x23 == 0
        assert lab.sql("select inet_server_port()", node=str(lab.info["haproxy"]["pg_port"]))[0][0] == lab.info["primary"]["port"]


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
    ("playbooks/restore.yml", {"db_restore_target_time": "2026-01-01T00:00:00Z"}),
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

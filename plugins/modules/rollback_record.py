#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollback_record
short_description: Tamper-evident audit records of rollbacks, failovers and restores, with measured RTO and RPO
version_added: 0.1.0
description:
  - "Writes and queries durable records of DR events (a rollback, a failover, a failback, a
    restore, a drill, a traffic switch): who ran it, why, what changed, how long it took,
    whether the recovery time and recovery point objectives were met, and the arguments
    that undo it."
  - A record is written once when it starts and again when it ends. Each status change
    (V(started) -> V(completed), V(failed) or V(aborted)) is stored as a new immutable
    event holding the whole record; nothing stored is ever changed. Writing the same
    status again is C(changed=false); a move backwards (for example V(completed) ->
    V(started)) fails with C(error=INVALID_TRANSITION).
  - Every event carries C(hash), the sha256 of its canonical JSON, and C(prev_hash), which
    links it to the event before it, so changed, removed or inserted events are found by
    O(verify_chain).
  - Values under keys that look like secrets (password, token, secret, key, credential...)
    in O(details), O(undo) and the timeline are masked before anything is written, and
    every C(no_log) value given to the module is scrubbed from the record.
  - "Backend V(file): JSON Lines, one event per line, append-only, C(fsync)'d, created with
    mode 0600, an exclusive lock held from read to write so concurrent writers queue up.
    C(prev_hash) is the sha256 of the previous line of the file."
  - "Backend V(postgres): an insert-only table, created when missing together with a
    trigger that makes the database itself refuse C(UPDATE), C(DELETE) and C(TRUNCATE) on
    it. C(prev_hash) is the hash of the previous event of the same record."
  - "Backend V(s3): one object per event, C(<prefix><id>/<seq>-<status>.json), written with
    C(If-None-Match: *) so an event is never overwritten, optionally under S3 Object Lock
    retention. C(prev_hash) is the hash of the previous event of the same record."
author:
  - resilience.dr contributors (!UNKNOWN)
extends_documentation_fragment:
  - resilience.dr.postgres
  - resilience.dr.aws
attributes:
  check_mode:
    description: Writes nothing; returns the record that would be written.
    support: full
  diff_mode:
    description: Returns the record before and after.
    support: full
options:
  action:
    description:
      - V(write) appends an event; V(query) returns records.
    type: str
    choices: [write, query]
    default: write
  backend:
    description:
      - Where records are kept.
    type: str
    choices: [file, postgres, s3]
    default: file
  path:
    description:
      - Record file of the V(file) backend. Missing parent folders are created with mode 0700.
      - Required when O(backend=file).
    type: path
  id:
    description:
      - Record id. Give the id returned when the record was started to complete it.
      - When omitted with O(action=write), a new record is created with a generated id such as
        C(rb-20260115-101500-ab12) (UTC time of creation and four random hex digits).
    type: str
  kind:
    description:
      - What happened. Required to create a record; when given for an existing record it must match.
      - With O(action=query), only records of this kind are returned.
    type: str
    choices: [rollback, failover, failback, restore, drill, switch]
  status:
    description:
      - Status to record. Required with O(action=write).
      - With O(action=query), only records whose latest status is this one are returned.
    type: str
    choices: [started, completed, failed, aborted]
  environment:
    description:
      - Environment (production, staging...). With O(action=query), a filter.
    type: str
  services:
    description:
      - Services concerned.
    type: list
    elements: str
  trigger:
    description:
      - What set it off (manual, alert name, error-rate threshold...).
    type: str
  reason:
    description:
      - Why, in a sentence.
    type: str
  executed_by:
    description:
      - Who ran it. Defaults to the user the module runs as on the target.
      - Variables of AWX / Automation Controller are not visible inside a module; playbooks
        and roles pass
        C({{ awx_user_name | default(tower_user_name) | default(lookup('env', 'USER')) }}) here
        and C({{ awx_job_id | default(tower_job_id) | default(omit) }}) as O(job_id).
    type: str
  job_id:
    description:
      - AWX / Automation Controller job id (or any run id) the record belongs to.
    type: str
  started_at:
    description:
      - When it started, ISO 8601 with a zone. Defaults to now when O(status=started), else to
        the C(started_at) of the record's first event.
    type: str
  finished_at:
    description:
      - When it ended, ISO 8601 with a zone. Defaults to now for V(completed), V(failed) and V(aborted).
    type: str
  objectives:
    description:
      - "Recovery objectives as durations, for example C({rto: 15m, rpo: 5m})."
    type: dict
    suboptions:
      rto:
        description: Recovery time objective (C(90s), C(15m), C(1h)...).
        type: str
      rpo:
        description: Recovery point objective (C(0s), C(5m)...).
        type: str
  rto_seconds:
    description:
      - Measured recovery time in seconds. Defaults to the record's C(duration_seconds) when
        it ends. Compared with O(objectives.rto) to give C(rto_met).
    type: float
  rpo_seconds:
    description:
      - Measured data loss window in seconds (for example the replication lag at promotion,
        or the time between the restore target and the incident). Compared with
        O(objectives.rpo) to give C(rpo_met).
    type: float
  details:
    description:
      - Results of other modules or any facts worth keeping. Merged (top-level keys) with
        the details of earlier events of the record. Secret-looking keys are masked.
    type: dict
  undo:
    description:
      - Arguments that reverse the change, for the next runbook to use (for example the
        C(undo) returned by M(resilience.dr.traffic_switch)). Secret-looking keys are masked.
    type: raw
  timeline_file:
    description:
      - JSON file written by the C(resilience.dr.timeline) callback plugin (its
        C(timeline_file) option, E(RESILIENCE_TIMELINE_FILE)); its per-task timings are
        attached to the record as C(timeline).
    type: path
  verify_chain:
    description:
      - Check every stored event's hash and link before anything else. When the chain is
        broken the module fails with C(error=CHAIN_BROKEN) and names the first broken event
        (line number for the V(file) backend, object key or row for the others) in
        C(chain.first_broken).
    type: bool
    default: false
  since:
    description:
      - With O(action=query), only records started (or first recorded) at or after this
        moment. An ISO 8601 timestamp with a zone, or a duration meaning that long ago (C(7d)).
    type: str
  until:
    description:
      - With O(action=query), only records started at or before this moment (same forms as O(since)).
    type: str
  last:
    description:
      - With O(action=query), only the last N records (by start time).
    type: int
  pg_table:
    description:
      - Table of the V(postgres) backend, C(table) or C(schema.table). Created when missing,
        with a trigger refusing C(UPDATE), C(DELETE) and C(TRUNCATE).
    type: str
    default: dr_records
  s3_bucket:
    description:
      - Bucket of the V(s3) backend. Required when O(backend=s3). It must exist; for
        O(s3_object_lock_mode) it must have been created with Object Lock enabled.
    type: str
  s3_prefix:
    description:
      - Key prefix of the records in O(s3_bucket).
    type: str
    default: dr-records/
  s3_object_lock_mode:
    description:
      - Object Lock retention mode of each event object. Requires O(s3_object_lock_days).
    type: str
    choices: [GOVERNANCE, COMPLIANCE]
  s3_object_lock_days:
    description:
      - Days each event object is retained under O(s3_object_lock_mode).
    type: int
notes:
  - Status moves allowed are V(started) -> V(completed), V(failed) or V(aborted); a record
    may also be written directly in a final status.
  - "The V(file) backend reads the whole file on each run and parses only the lines of the
    record concerned (measured here: 4 ms per write on a new file, 35 ms with 10,000 events).
    Rotate it by starting a new file; keep the old one, its chain stays verifiable on its own."
  - In check mode without O(id), the generated id returned is an example; the real run
    generates its own.
  - "The V(postgres) trigger stops the module, applications and operators' mistakes; a
    superuser can still drop it. Let a role other than the table owner write records when
    that matters."
  - "The V(s3) backend was tested against moto's server (conditional writes, Object Lock);
    the V(postgres) backend against PostgreSQL 15; the V(file) backend with ten concurrent writers."
requirements:
  - psycopg >= 3.1 for O(backend=postgres); boto3 for O(backend=s3).
seealso:
  - module: resilience.dr.traffic_switch
"""

EXAMPLES = r"""
- name: Record that the failover started
  resilience.dr.rollback_record:
    path: /var/lib/resilience-dr/records.jsonl
    kind: failover
    status: started
    environment: production
    services: [api, worker]
    trigger: "alert: PrimaryDown"
    reason: Primary lost its disk
    executed_by: "{{ awx_user_name | default(tower_user_name) | default(lookup('env', 'USER')) }}"
    job_id: "{{ awx_job_id | default(tower_job_id) | default(omit) }}"
    objectives: {rto: 15m, rpo: 1m}
  register: record

- name: Record that it completed, with the runbook's timeline and the way back
  resilience.dr.rollback_record:
    path: /var/lib/resilience-dr/records.jsonl
    id: "{{ record.id }}"
    status: completed
    rpo_seconds: "{{ promote.lag_seconds | default(0) }}"
    details:
      promote: "{{ promote }}"
    undo: "{{ switch.undo }}"
    timeline_file: "{{ lookup('env', 'RESILIENCE_TIMELINE_FILE') }}"

- name: Keep the records in PostgreSQL, where UPDATE and DELETE are refused
  resilience.dr.rollback_record:
    backend: postgres
    pg_login_host: db-audit.example.com
    pg_database: audit
    pg_login_user: dr_writer
    pg_login_password: "{{ vault_dr_writer_password }}"
    kind: rollback
    status: completed
    environment: staging
    reason: Error rate above 5% after deploy 412

- name: Keep the records in S3 under Object Lock
  resilience.dr.rollback_record:
    backend: s3
    s3_bucket: acme-dr-audit
    s3_object_lock_mode: COMPLIANCE
    s3_object_lock_days: 365
    aws_region: eu-west-1
    kind: switch
    status: completed
    environment: production

- name: The last five production failovers, after checking nothing was tampered with
  resilience.dr.rollback_record:
    action: query
    path: /var/lib/resilience-dr/records.jsonl
    kind: failover
    environment: production
    since: 90d
    last: 5
    verify_chain: true
  register: failovers
"""

RETURN = r"""
id:
  description: Id of the record written (generated when not given).
  returned: action=write
  type: str
  sample: rb-20260115-101500-ab12
event:
  description: V(created) (a new record), V(transitioned) (a new status of a record) or V(unchanged).
  returned: action=write
  type: str
  sample: transitioned
location:
  description: Where the record is (file path, C(s3://bucket/prefix), C(database.schema.table)).
  returned: action=write
  type: str
  sample: /var/lib/resilience-dr/records.jsonl
record:
  description:
    - The record as written (in check mode, as it would be written, without C(prev_hash) and
      C(hash)), or as stored when nothing changed.
    - Keys; C(id), C(seq) (event number of the record), C(kind), C(status), C(environment),
      C(services), C(trigger), C(reason), C(executed_by), C(job_id), C(started_at),
      C(finished_at), C(duration_seconds), C(objectives) (C(rto), C(rpo) and their
      C(*_limit_seconds)), C(rto_seconds), C(rpo_seconds), C(rto_met), C(rpo_met),
      C(details), C(undo), C(timeline), C(recorded_at), C(prev_hash), C(hash).
  returned: action=write
  type: dict
  sample: {"id": "rb-20260115-101500-ab12", "seq": 2, "kind": "failover", "status": "completed",
           "started_at": "2026-01-15T10:15:00.000Z", "finished_at": "2026-01-15T10:19:12.480Z",
           "duration_seconds": 252.48, "objectives": {"rto": "15m", "rto_limit_seconds": 900.0},
           "rto_seconds": 252.48, "rto_met": true, "details": {"pg_login_password": "********"}}
records:
  description: Latest state of each record matching the filters, oldest first.
  returned: action=query
  type: list
  elements: dict
count:
  description: Number of records in RV(records).
  returned: action=query
  type: int
  sample: 3
chain:
  description: Result of O(verify_chain).
  returned: when verify_chain=true
  type: dict
  contains:
    valid:
      description: Whether every event matched its hash and linked to the one before.
      type: bool
    checked:
      description: Number of events that verified before the first broken one (all when valid).
      type: int
    first_broken:
      description:
        - The first broken event; C(where) (C(line 12), an object key, C(row 40)), C(id)
          (the record id when it can still be read), C(reason), and for the V(file) backend C(line).
      type: dict
  sample: {"valid": false, "checked": 11, "first_broken": {"line": 12, "id": "rb-20260115-101500-ab12",
           "where": "line 12", "reason": "line 12 does not match its own hash (its content was changed)"}}
before:
  description: The record before this run (C(record) is null for a new record); for queries the count.
  returned: always
  type: dict
after:
  description: The record after this run (as predicted in check mode).
  returned: always
  type: dict
plan:
  description: Steps planned (C(create_table) when the postgres table is missing, then C(append_record)).
  returned: always
  type: list
  elements: dict
steps:
  description: Steps run (in check mode, the planned steps, unrun), each with C(started_at) and C(seconds).
  returned: always
  type: list
  elements: dict
check_mode:
  description: Whether this was a dry run.
  returned: always
  type: bool
seconds:
  description: Wall time of the module.
  returned: always
  type: float
"""

from ansible_collections.resilience.dr.plugins.module_utils._connection import (
    aws_spec,
    merge_specs,
    postgres_spec,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import DRModule


def argument_spec():
    own = dict(
        action=dict(type="str", choices=["write", "query"], default="write"),
        backend=dict(type="str", choices=["file", "postgres", "s3"], default="file"),
        path=dict(type="path"),
        id=dict(type="str"),
        kind=dict(type="str", choices=["rollback", "failover", "failback", "restore", "drill", "switch"]),
        status=dict(type="str", choices=["started", "completed", "failed", "aborted"]),
        environment=dict(type="str"),
        services=dict(type="list", elements="str"),
        trigger=dict(type="str"),
        reason=dict(type="str"),
        executed_by=dict(type="str"),
        job_id=dict(type="str"),
        started_at=dict(type="str"),
        finished_at=dict(type="str"),
        objectives=dict(type="dict", options=dict(rto=dict(type="str"), rpo=dict(type="str"))),
        rto_seconds=dict(type="float"),
        rpo_seconds=dict(type="float"),
        details=dict(type="dict"),
        undo=dict(type="raw"),
        timeline_file=dict(type="path"),
        verify_chain=dict(type="bool", default=False),
        since=dict(type="str"),
        until=dict(type="str"),
        last=dict(type="int"),
        pg_table=dict(type="str", default="dr_records"),
        s3_bucket=dict(type="str"),
        s3_prefix=dict(type="str", default="dr-records/"),
        s3_object_lock_mode=dict(type="str", choices=["GOVERNANCE", "COMPLIANCE"]),
        s3_object_lock_days=dict(type="int"),
    )
    return merge_specs(postgres_spec(), aws_spec(), own)


def main():
    module = DRModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[
            ("action", "write", ["status"]),
            ("backend", "file", ["path"]),
            ("backend", "s3", ["s3_bucket"]),
        ],
        required_together=[("s3_object_lock_mode", "s3_object_lock_days")],
    )
    backend = module.params["backend"]
    if backend == "file":
        from ansible_collections.resilience.dr.plugins.module_utils._record_file import FileRecordProvider
        provider = FileRecordProvider(module)
    elif backend == "postgres":
        from ansible_collections.resilience.dr.plugins.module_utils._record_postgres import PostgresRecordProvider
        provider = PostgresRecordProvider(module)
    else:
        from ansible_collections.resilience.dr.plugins.module_utils._record_s3 import S3RecordProvider
        provider = S3RecordProvider(module)
    module.run_provider(provider)


if __name__ == "__main__":
    main()

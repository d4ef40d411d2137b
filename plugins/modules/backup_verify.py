#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: backup_verify
short_description: Prove that PostgreSQL backups are fresh, intact and restorable
version_added: 0.1.0
description:
  - Runs a set of read-only checks against the newest backup of a PostgreSQL cluster and
    reports each one with a status (V(passed), V(failed) or V(skipped)), a one-line detail,
    the seconds it took and its figures (backup label, size, age, newest WAL segment, gaps...).
  - C(max_age) compares the age of the newest backup (from its start time) and of the newest
    archived WAL segment with O(max_age), the recovery point objective.
  - C(checksums) verifies every file of the backup against its manifest
    (C(pg_verifybackup) for O(engine=native); C(pgbackrest verify) for O(engine=pgbackrest)).
    The files that do not match are named.
  - C(wal_continuity) checks that every WAL segment from the backup's start segment up to
    the newest archived segment is in the archive, following timeline switches recorded in the
    archive's C(.history) files; missing segments are named. C(.partial) and C(.backup) files
    are not counted as segments.
  - C(test_restore) copies the newest backup into a new folder under O(scratch_dir), recovers
    it with WAL from the archive up to O(restore_target), starts it as O(os_user) on
    O(scratch_port) (127.0.0.1 and a Unix socket inside the scratch folder only, C(archive_mode=off),
    no primary connection), runs O(verify_queries), stops it and always removes the scratch
    folder, also when something failed. It reports the achieved RTO (wall time until the copy
    accepts queries) and the last restorable commit time.
  - The module never changes what it verifies; it always returns C(changed=false).
  - When a check fails the task fails with error code C(CHECK_FAILED) and a message naming
    every failing check; the full report (O(checks), C(failed_checks), C(backup), C(wal),
    C(restore)) is returned either way. With O(fail_on_error=false) the task succeeds and
    C(failed_checks) lists the failures.
author:
  - resilience.dr contributors (@resilience-dr)
requirements:
  - For O(engine=native) and O(engine=pgbackrest), on the host the module runs on, which must be the
    host holding the backups - PostgreSQL's client and server binaries of the backup's major version
    (C(pg_verifybackup), C(pg_ctl), C(psql)), C(pgbackrest) for O(engine=pgbackrest), and C(runuser)
    (util-linux) and C(timeout) (coreutils). No Python library is needed for these engines.
  - The cloud libraries below are only needed by their engine (boto3 for V(s3) and V(aws_rds));
    V(gcp_cloudsql) needs google-auth only with O(gcp_credentials_file), V(azure_pg_flexible) needs
    azure-identity only without O(azure_access_token).
extends_documentation_fragment:
  - resilience.dr.aws
  - resilience.dr.gcp
  - resilience.dr.azure
attributes:
  check_mode:
    support: full
    description:
      - Check mode runs exactly the same checks as a normal run, because none of them changes
        anything outside the scratch folder. That includes C(test_restore), which writes only
        into a new folder under O(scratch_dir) and removes it; leave C(test_restore) out of
        O(checks) to keep a C(--check) run light.
  diff_mode:
    support: none
    description:
      - Nothing is changed, so there is no diff.
options:
  engine:
    description:
      - Where the backups are.
      - V(native) is C(pg_basebackup) output (plain or tar format, with C(backup_manifest))
        in O(backup_dir) and a WAL archive folder O(wal_archive).
      - V(pgbackrest) is a pgBackRest stanza (O(stanza), O(pgbackrest_config)).
      - V(barman) is a Barman server (O(barman_server) in O(barman_config)); its newest
        C(DONE) backup is verified with C(barman verify-backup), its WAL store
        (C(wals_directory)) is checked for gaps, and C(barman recover) fills the scratch
        of C(test_restore), which replays WAL with C(barman get-wal).
      - V(s3) is logical dumps (or any backup files) as objects under O(s3_prefix) in
        O(s3_bucket); only C(max_age) applies, with the newest object's size.
      - V(aws_rds) is an RDS instance's automated backups, latest restorable time and
        snapshots (O(rds_instance_id)); only C(max_age) applies.
      - V(gcp_cloudsql) is a Cloud SQL instance's backup runs (the newest C(SUCCESSFUL) one)
        and, with point-in-time recovery on, its latest recovery time (O(cloudsql_instance));
        only C(max_age) applies.
      - V(azure_pg_flexible) is an Azure Database for PostgreSQL flexible server's backups
        (the newest completed one) and retention (O(resource_group), O(flexible_server));
        only C(max_age) applies.
    type: str
    required: true
    choices: [native, pgbackrest, barman, s3, aws_rds, gcp_cloudsql, azure_pg_flexible]
  checks:
    description:
      - The checks to run. Default is every check the engine supports.
      - V(native), V(pgbackrest) and V(barman) support all four; the cloud engines support V(max_age).
    type: list
    elements: str
    choices: [max_age, checksums, wal_continuity, test_restore]
  max_age:
    description:
      - The recovery point objective as a duration (V(90s), V(15m), V(6h), V(7d)). The newest
        backup and the newest archived WAL segment (or the latest restorable time) must be
        younger.
    type: str
    default: 24h
  backup_dir:
    description:
      - O(engine=native) only. A C(pg_basebackup) folder (plain or tar format), or a folder
        of such folders, of which the newest (by the C(START TIME) of its C(backup_label)) is
        verified.
    type: path
  wal_archive:
    description:
      - O(engine=native) only. The folder C(archive_command) copies WAL segments into
        (plain or C(.gz) files). Needed by C(wal_continuity) and by a C(test_restore) that
        replays WAL.
    type: path
  pgbackrest_config:
    description:
      - O(engine=pgbackrest) only. The pgBackRest configuration file.
    type: path
    default: /etc/pgbackrest/pgbackrest.conf
  stanza:
    description:
      - O(engine=pgbackrest) only. The stanza to verify.
    type: str
  barman_config:
    description:
      - O(engine=barman) only. The Barman configuration file (C(barman -c)); Barman's own
        default search when not given.
    type: path
  barman_server:
    description:
      - O(engine=barman) only. The Barman server (configuration section) to verify.
    type: str
  barman_bin:
    description:
      - O(engine=barman) only. The barman command, run as O(os_user) (Barman's C(barman_user)).
        Give an absolute path when Barman lives in a virtualenv; C(test_restore) also puts it
        into the scratch server's C(restore_command).
    type: str
    default: barman
  s3_bucket:
    description:
      - O(engine=s3) only. The bucket holding the dumps.
    type: str
  s3_prefix:
    description:
      - O(engine=s3) only. Key prefix of the dumps.
    type: str
    default: ''
  rds_instance_id:
    description:
      - O(engine=aws_rds) only. The DB instance identifier.
    type: str
  cloudsql_instance:
    description:
      - O(engine=gcp_cloudsql) only. The Cloud SQL instance name (in O(gcp_project)).
    type: str
  resource_group:
    description:
      - O(engine=azure_pg_flexible) only. The resource group of the server (in O(azure_subscription_id)).
    type: str
  flexible_server:
    description:
      - O(engine=azure_pg_flexible) only. The flexible server's name.
    type: str
  scratch_dir:
    description:
      - Folder in which a new, private folder is made for C(test_restore) (and for extracting
        a tar backup for C(checksums)). Only that new folder is written to, and it is removed
        at the end whatever happened.
    type: path
    default: /var/tmp
  scratch_port:
    description:
      - TCP port of the scratch server on 127.0.0.1. Default is a free port chosen by the
        kernel. The check fails when the port is already taken.
    type: int
  scratch_login_user:
    description:
      - Role the verify queries run as on the scratch server (over its Unix socket, which the
        scratch C(pg_hba.conf) trusts). Default is O(os_user), the usual bootstrap superuser.
    type: str
  scratch_settings:
    description:
      - Extra PostgreSQL settings for the scratch server (for example C(shared_buffers)).
    type: dict
  os_user:
    description:
      - OS user the scratch PostgreSQL server and pgBackRest run as when the module runs as root.
    type: str
    default: postgres
  pg_bin_dir:
    description:
      - Folder with C(pg_ctl), C(psql) and C(pg_verifybackup). Default is the Debian folder of
        the backup's major version, then E(PATH).
    type: path
  restore_target:
    description:
      - How far the test restore recovers. V(latest) replays every archived segment;
        V(immediate) stops as soon as the backup is consistent.
    type: str
    choices: [immediate, latest]
    default: latest
  restore_command:
    description:
      - O(engine=native) only. C(restore_command) for the test restore. Default copies from
        O(wal_archive) (plain or C(.gz) segments).
    type: str
  verify_queries:
    description:
      - Queries run on the scratch server after the test restore, each with an expectation.
        The check fails, naming the query and the value found, when one is not met.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name used in the report.
        type: str
      sql:
        description: One SQL statement.
        type: str
        required: true
      database:
        description: Database to run it in. Default O(verify_database).
        type: str
      expect:
        description:
          - Expectation on the result. C(value) is the first column of the first row.
        type: dict
        suboptions:
          min_rows:
            description: At least this many rows.
            type: int
          equals:
            description: C(value) equals this (as numbers when both are numbers, else as text).
            type: raw
          min:
            description: C(value) is a number not below this.
            type: float
          max:
            description: C(value) is a number not above this.
            type: float
  verify_database:
    description:
      - Default database of O(verify_queries).
    type: str
    default: postgres
  fail_on_error:
    description:
      - Fail the task when a check fails. With V(false), the task succeeds and reports the
        failures in C(failed_checks).
    type: bool
    default: true
  timeout:
    description:
      - Seconds each external step (verify, test restore recovery) may take.
    type: int
    default: 600
notes:
  - The aws_* options only apply to O(engine=s3) and O(engine=aws_rds), the gcp_* options to
    O(engine=gcp_cloudsql), the azure_* options to O(engine=azure_pg_flexible).
  - The V(s3) and V(aws_rds) engines were tested against moto's server, not against AWS.
  - The V(barman) engine was tested against real Barman 3.19 (PyPI) with C(backup_method=postgres)
    and C(streaming_archiver) on PostgreSQL 15 - a fresh backup passing all four checks, a flipped
    byte named by C(checksums), a removed WAL segment named by C(wal_continuity).
  - The V(gcp_cloudsql) and V(azure_pg_flexible) engines were verified only against local HTTP
    fakes of the REST calls they make (Cloud SQL Admin v1 C(instances.get), C(backupRuns.list),
    C(getLatestRecoveryTime); ARM C(flexibleServers) get and C(backups) list, api-version
    2022-12-01), with a bearer token; the service-account and client-secret token flows were
    not exercised.
  - PostgreSQL 15's C(pg_verifybackup) cannot read tar-format backups; such a backup is
    extracted into a private folder under O(scratch_dir) first and that folder is removed.
  - The scratch server gets its own C(pg_hba.conf) (local trust only), listens on 127.0.0.1,
    never archives and never connects to a primary, so it cannot touch the production cluster
    or its archive.
seealso:
  - name: pg_verifybackup
    description: PostgreSQL's backup manifest verifier.
    link: https://www.postgresql.org/docs/15/app-pgverifybackup.html
  - name: pgbackrest verify
    description: pgBackRest's repository verification.
    link: https://pgbackrest.org/command.html#command-verify
"""

EXAMPLES = r"""
- name: Gate a deploy on a backup younger than 6 hours
  resilience.dr.backup_verify:
    engine: native
    backup_dir: /var/backups/pg/base
    wal_archive: /var/backups/pg/wal
    checks: [max_age]
    max_age: 6h

- name: Prove the newest backup restores and holds data
  resilience.dr.backup_verify:
    engine: native
    backup_dir: /var/backups/pg/base
    wal_archive: /var/backups/pg/wal
    max_age: 24h
    scratch_dir: /var/tmp
    scratch_port: 25432
    verify_queries:
      - name: events
        database: appdb
        sql: select count(*) from events
        expect: {min: 1000}
      - name: newest event
        database: appdb
        sql: select max(written_at) > now() - interval '1 day' from events
        expect: {equals: t}
  register: verify

- name: Verify a pgBackRest stanza, report only
  resilience.dr.backup_verify:
    engine: pgbackrest
    stanza: main
    pgbackrest_config: /etc/pgbackrest/pgbackrest.conf
    fail_on_error: false
  register: verify

- name: Verify a Barman server, test restore included
  resilience.dr.backup_verify:
    engine: barman
    barman_bin: /opt/barman/venv/bin/barman
    barman_config: /etc/barman.conf
    barman_server: main
    max_age: 24h
    scratch_dir: /var/tmp

- name: Newest nightly dump in S3 is younger than a day
  resilience.dr.backup_verify:
    engine: s3
    s3_bucket: db-dumps
    s3_prefix: appdb/
    max_age: 26h

- name: Cloud SQL took a backup in the last day
  resilience.dr.backup_verify:
    engine: gcp_cloudsql
    gcp_project: my-project
    cloudsql_instance: appdb
    max_age: 26h

- name: Azure flexible server backup is fresh
  resilience.dr.backup_verify:
    engine: azure_pg_flexible
    azure_subscription_id: 00000000-0000-0000-0000-000000000000
    resource_group: rg-db
    flexible_server: appdb
    max_age: 26h

- name: RDS can be restored to within 15 minutes
  resilience.dr.backup_verify:
    engine: aws_rds
    rds_instance_id: appdb
    max_age: 15m
    aws_region: eu-west-1
"""

RETURN = r"""
changed:
  description: Always false.
  returned: always
  type: bool
passed:
  description: True when no check failed.
  returned: always
  type: bool
engine:
  description: The engine used.
  returned: always
  type: str
failed_checks:
  description: Names of the checks that failed.
  returned: always
  type: list
  elements: str
  sample: [wal_continuity]
checks:
  description:
    - One entry for each of the four checks, keyed by its name, with C(status) (V(passed), V(failed) or
      V(skipped)), C(detail), C(started_at), C(seconds) and C(figures). A check not in O(checks), or
      one the engine does not support, is V(skipped) and its detail says which.
  returned: always
  type: dict
  sample:
    wal_continuity:
      status: failed
      detail: "WAL gap(s) in /var/backups/pg/wal between 000000010000000000000002 and 000000010000000000000009: 000000010000000000000005 missing"
      seconds: 0.004
      figures: {first: "000000010000000000000002", last: "000000010000000000000009", gaps: [{from: "000000010000000000000005",
                to: "000000010000000000000005", count: 1}]}
backup:
  description:
    - The newest backup found, with C(path) or C(label), C(started_at), C(age_seconds),
      C(size_bytes) (sum of its files on disk or the size the engine reports), C(count) (backups found) and engine-specific facts.
  returned: when a backup was found
  type: dict
wal:
  description:
    - The WAL archive as seen by the checks (C(newest_segment), C(newest_at), C(segment_count),
      C(timelines), and C(continuity) once checked).
  returned: when the engine has a WAL archive
  type: dict
restore:
  description:
    - The test restore's figures, C(scratch_dir), C(scratch_port), C(copy_seconds), C(recovery_seconds),
      C(rto_seconds), C(last_commit_at), C(rpo_seconds) (age of the last restorable commit),
      C(queries), C(scratch_removed), C(wall_seconds).
  returned: when test_restore ran
  type: dict
queries:
  description:
    - The results of O(verify_queries), each with C(name), C(sql), C(database), C(columns), C(rows) (at most 20),
      C(row_count), C(value), C(passed) and C(failures).
  returned: when test_restore ran the queries
  type: list
  elements: dict
before:
  description: Summary of what was verified (engine, backup, status per check).
  returned: always
  type: dict
after:
  description: Same as RV(before); nothing is changed.
  returned: always
  type: dict
plan:
  description: Always empty.
  returned: always
  type: list
  elements: dict
steps:
  description: Always empty.
  returned: always
  type: list
  elements: dict
check_mode:
  description: Whether the task ran in check mode.
  returned: always
  type: bool
discover_seconds:
  description: Seconds spent finding the backups.
  returned: always
  type: float
seconds:
  description: Wall time of the whole task.
  returned: always
  type: float
"""

from ansible_collections.resilience.dr.plugins.module_utils._connection import aws_spec, azure_spec, gcp_spec, merge_specs
from ansible_collections.resilience.dr.plugins.module_utils._module import DRModule

CHECKS = ["max_age", "checksums", "wal_continuity", "test_restore"]


def argument_spec():
    return merge_specs(
        aws_spec(),
        gcp_spec(),
        azure_spec(),
        dict(
            engine=dict(type="str", required=True, choices=["native", "pgbackrest", "barman", "s3", "aws_rds", "gcp_cloudsql", "azure_pg_flexible"]),
            checks=dict(type="list", elements="str", choices=CHECKS),
            max_age=dict(type="str", default="24h"),
            backup_dir=dict(type="path"),
            wal_archive=dict(type="path"),
            pgbackrest_config=dict(type="path", default="/etc/pgbackrest/pgbackrest.conf"),
            stanza=dict(type="str"),
            barman_config=dict(type="path"),
            barman_server=dict(type="str"),
            barman_bin=dict(type="str", default="barman"),
            s3_bucket=dict(type="str"),
            s3_prefix=dict(type="str", default=""),
            rds_instance_id=dict(type="str"),
            cloudsql_instance=dict(type="str"),
            resource_group=dict(type="str"),
            flexible_server=dict(type="str"),
            scratch_dir=dict(type="path", default="/var/tmp"),
            scratch_port=dict(type="int"),
            scratch_login_user=dict(type="str"),
            scratch_settings=dict(type="dict"),
            os_user=dict(type="str", default="postgres"),
            pg_bin_dir=dict(type="path"),
            restore_target=dict(type="str", choices=["immediate", "latest"], default="latest"),
            restore_command=dict(type="str"),
            verify_queries=dict(
                type="list", elements="dict", default=[],
                options=dict(
                    name=dict(type="str"),
                    sql=dict(type="str", required=True),
                    database=dict(type="str"),
                    expect=dict(type="dict", options=dict(
                        min_rows=dict(type="int"),
                        equals=dict(type="raw"),
                        min=dict(type="float"),
                        max=dict(type="float"),
                    )),
                ),
            ),
            verify_database=dict(type="str", default="postgres"),
            fail_on_error=dict(type="bool", default=True),
            timeout=dict(type="int", default=600),
        ),
    )


def main():
    module = DRModule(
        argument_spec=argument_spec(),
        required_if=[
            ("engine", "native", ["backup_dir"]),
            ("engine", "pgbackrest", ["stanza"]),
            ("engine", "barman", ["barman_server"]),
            ("engine", "s3", ["s3_bucket"]),
            ("engine", "aws_rds", ["rds_instance_id"]),
            ("engine", "gcp_cloudsql", ["cloudsql_instance"]),
            ("engine", "azure_pg_flexible", ["resource_group", "flexible_server"]),
        ],
        supports_check_mode=True,
    )
    engine = module.params["engine"]
    if engine == "native":
        from ansible_collections.resilience.dr.plugins.module_utils._verify_native import NativeVerify
        provider = NativeVerify(module)
    elif engine == "pgbackrest":
        from ansible_collections.resilience.dr.plugins.module_utils._verify_pgbackrest import PgBackRestVerify
        provider = PgBackRestVerify(module)
    elif engine == "barman":
        from ansible_collections.resilience.dr.plugins.module_utils._verify_barman import BarmanVerify
        provider = BarmanVerify(module)
    elif engine == "s3":
        from ansible_collections.resilience.dr.plugins.module_utils._verify_aws import S3Verify
        provider = S3Verify(module)
    elif engine == "aws_rds":
        from ansible_collections.resilience.dr.plugins.module_utils._verify_aws import RdsVerify
        provider = RdsVerify(module)
    elif engine == "gcp_cloudsql":
        from ansible_collections.resilience.dr.plugins.module_utils._verify_cloud import CloudSqlVerify
        provider = CloudSqlVerify(module)
    else:
        from ansible_collections.resilience.dr.plugins.module_utils._verify_cloud import AzureFlexibleVerify
        provider = AzureFlexibleVerify(module)
    module.run_provider(provider)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: replica_promote
short_description: Promote a database replica safely (lag guard, fencing, lock, verification)
version_added: 0.1.0
description:
  - Promotes a replica to be the new primary, after checking that it is not too far behind,
    optionally fencing the old primary, and verifying the result. Reports what it measured
    (LSN and timeline before and after, lag at promotion, data loss) and each step with timings.
  - Runs C(read) (preflight) -> C(plan) -> [check mode stops here] -> steps -> verify.
    In check mode the preflight runs in full (connections, lock, lag guard) and the steps a
    real run would take from the same state are listed, unrun.
  - A replica that is already a primary is left alone (C(changed=false)).
  - "O(provider=postgres): a self-managed PostgreSQL streaming replica, through the host's libpq
    (C(libpq.so.5), loaded with ctypes: it starts in a fifth of the time psycopg takes) when
    there is one, else through psycopg; E(RESILIENCE_DR_PG_DRIVER=psycopg) in the module's
    environment forces psycopg. The preflight connects to the replica and takes an advisory lock
    (C(pg_try_advisory_lock) on the key C(1380209232, 1)) on that session, held until the module ends, so a
    second concurrent run fails with C(LOCKED); it then reads C(pg_is_in_recovery),
    C(pg_stat_wal_receiver), received and replayed LSN, the replay age, the timeline and, when
    O(primary_login_host) is given and reachable, the old primary's current LSN."
  - "Steps of O(provider=postgres), in order: C(resume_replay) (only when replay is paused and
    O(wait_for_replay) is set), C(fence_read_only) or C(fence_stop) (only when the old primary
    is reachable and not fenced yet), C(wait_for_replay), C(promote)
    (C(pg_promote) with C(wait => false)), C(wait_for_promotion) (a tight poll of
    C(pg_is_in_recovery)), C(verify_write).
    The old primary is fenced before waiting for replay, so that everything it committed
    before the fence is replayed before the promotion."
  - "Steps of O(provider=patroni): C(switchover) (C(POST /switchover) with C(leader) and C(candidate), when
    C(GET /cluster) shows a running leader) or C(failover) (C(POST /failover) with C(candidate), when no leader
    runs, or with O(patroni_mode=failover)), then C(wait_for_leader) (polls C(GET /cluster) until O(candidate) is
    the running C(leader) on a later timeline). Patroni itself stops the old leader (cleanly, in a switchover),
    promotes the candidate and makes the old leader follow it; the module never touches PostgreSQL behind
    Patroni's back."
  - "Steps of O(provider=aws_rds): C(promote_read_replica) then C(wait_available) (the
    C(db_instance_available) waiter); for Aurora C(failover_db_cluster) then C(wait_for_writer)
    (polls C(describe_db_clusters) until the target is the writer and the cluster available)."
  - When a step fails before C(promote), a read-only fence and a resumed replay are put back;
    a stopped primary is left stopped. After C(promote) nothing is reverted.
  - If the replica is already a primary but the old primary is reachable and still writable
    (split brain), the fence is planned alone.
options:
  provider:
    description:
      - Where the replica lives.
      - C(postgres) (self-managed streaming replica) is tested against real PostgreSQL 15 servers.
      - C(aws_rds) promotes an RDS read replica (O(db_instance_identifier)) or fails an Aurora
        cluster (O(db_cluster_identifier)) over to O(db_instance_identifier). Tested against
        moto's server and botocore's Stubber only (see notes).
      - C(gcp_cloudsql) promotes a Cloud SQL read replica (C(promoteReplica)) or fails a
        regional instance over to its standby zone (C(failover)) through the Cloud SQL Admin API.
        Tested against a local fake of that API only (see notes).
      - C(azure_pg_flexible) promotes a read replica of Azure Database for PostgreSQL flexible
        server (C(properties.replica.promoteMode)/C(promoteOption)) through azure-mgmt-resource,
        polling the long-running operation. Tested against a local fake of Azure Resource
        Manager only (see notes).
      - C(patroni) switches over (or fails over) a Patroni cluster to the member O(candidate) through
        Patroni's REST API (O(patroni_url)). Tested against a real Patroni 4 cluster (two PostgreSQL 15
        members, etcd 3.4).
    type: str
    required: true
    choices: [postgres, aws_rds, gcp_cloudsql, azure_pg_flexible, patroni]
  fence:
    description:
      - How to fence the old primary before promoting, when it is reachable.
      - C(read_only) sets C(default_transaction_read_only=on) with C(ALTER SYSTEM), reloads, and
        terminates every other client session (replication connections are kept so the replica
        receives the last WAL). It is a soft fence; a client may still run
        C(SET default_transaction_read_only = off).
      - C(stop) stops the old primary with C(pg_ctl stop -m fast) as O(primary_os_user); it needs
        O(primary_data_dir) and only works where the module runs on the old primary's host.
      - C(none) leaves the old primary alone.
      - An unreachable old primary is not fenced (see O(require_fence)).
      - O(provider=postgres) only; defaults to C(read_only) there. The cloud providers fence
        through their own API (a promoted RDS replica stops replicating; Aurora demotes the old
        writer).
    type: str
    choices: [read_only, stop, none]
  require_fence:
    description:
      - Refuse to promote (C(PRECONDITION_FAILED)) when O(fence) is not C(none) and the old
        primary cannot be reached to fence it.
    type: bool
    default: false
  primary_login_host:
    description:
      - Host of the old primary (O(provider=postgres)). Without it there is no fencing and the
        data loss cannot be measured (C(data_loss_bytes) is null).
    type: str
  primary_port:
    description:
      - Port of the old primary. Defaults to O(pg_port).
    type: int
  primary_login_user:
    description:
      - Role to connect to the old primary as. Defaults to O(pg_login_user).
    type: str
  primary_login_password:
    description:
      - Password for the old primary. Defaults to O(pg_login_password). Never returned or logged.
    type: str
  primary_database:
    description:
      - Database to connect to on the old primary. Defaults to O(pg_database).
    type: str
  primary_connect_timeout:
    description:
      - Seconds to wait for the old primary to answer (it is often down during a failover).
    type: int
    default: 5
  primary_data_dir:
    description:
      - Data directory of the old primary on the host the module runs on; needed by O(fence=stop).
        When the old primary can be read, its C(data_directory) must be this directory.
    type: path
  primary_os_user:
    description:
      - Operating system user that owns the old primary (C(pg_ctl) runs as this user through
        C(runuser) when the module runs as root).
    type: str
    default: postgres
  pg_bin_dir:
    description:
      - Directory of C(pg_ctl). By default the C(PATH), then C(/usr/lib/postgresql/*/bin) and
        C(/usr/pgsql-*/bin) (newest version) are searched.
    type: path
  max_lag_bytes:
    description:
      - Largest replay lag in bytes that is promoted without O(allow_data_loss). The lag is the
        larger of received-but-not-replayed WAL and the old primary's current LSN minus the
        replayed LSN (when the old primary is reachable).
      - O(provider=patroni) takes the largest of the candidate's C(lag), C(receive_lag) and
        C(replay_lag) in C(GET /cluster) (bytes behind the leader's last LSN that Patroni wrote into
        its DCS, refreshed every C(loop_wait)); a lag Patroni reports as C(unknown) is refused like
        one that is too high.
    type: int
    default: 16777216
  max_lag:
    description:
      - Largest replay lag in time (a duration such as C(30s), C(5m)) promoted without
        O(allow_data_loss).
      - O(provider=postgres) measures the time since C(pg_last_xact_replay_timestamp), and 0 when
        everything received is replayed.
      - O(provider=aws_rds) takes the largest CloudWatch C(ReplicaLag) (RDS, seconds) or
        C(AuroraReplicaLag) (Aurora, milliseconds) of O(db_instance_identifier) in the last
        O(lag_window). No datapoint (lag unknown) or a C(ReplicaLag) of -1 (replication not
        running) is refused like a lag that is too high.
    type: str
    default: 30s
  lag_window:
    description:
      - O(provider=aws_rds) and O(provider=gcp_cloudsql) - how far back the lag metric is read
        (a duration, at least 60s).
    type: str
    default: 5m
  db_instance_identifier:
    description:
      - O(provider=aws_rds) - the RDS read replica to promote, or with O(db_cluster_identifier)
        the Aurora instance to make the writer.
    type: str
  db_cluster_identifier:
    description:
      - O(provider=aws_rds) - the Aurora cluster to fail over (C(failover_db_cluster)) to
        O(db_instance_identifier).
    type: str
  cloudsql_instance:
    description:
      - O(provider=gcp_cloudsql) - the Cloud SQL read replica to promote, or with
        O(cloudsql_mode=ha_failover) the regional instance to fail over. The project is O(gcp_project).
    type: str
  cloudsql_mode:
    description:
      - O(provider=gcp_cloudsql) - C(promote_replica) (C(instances.promoteReplica); the lag guard
        reads the Cloud Monitoring metric C(cloudsql.googleapis.com/database/replication/replica_lag),
        seconds, with the same rules as for RDS) or C(ha_failover) (C(instances.failover) of a
        C(REGIONAL) instance to its standby zone; no lag guard, the standby is synchronous).
    type: str
    choices: [promote_replica, ha_failover]
    default: promote_replica
  cloudsql_target_zone:
    description:
      - O(provider=gcp_cloudsql) with O(cloudsql_mode=ha_failover) - the zone that should serve
        afterwards; when the instance already serves from it nothing is done, so a re-run does
        not fail back. Required with C(ha_failover).
    type: str
  azure_resource_group:
    description:
      - O(provider=azure_pg_flexible) - resource group of the replica server.
    type: str
  azure_server_name:
    description:
      - O(provider=azure_pg_flexible) - name of the read replica server to promote.
    type: str
  azure_promote_mode:
    description:
      - O(provider=azure_pg_flexible) - C(standalone) (the replica becomes an independent server)
        or C(switchover) (it becomes the primary and the old primary its replica; needs a
        virtual endpoint on the Azure side).
    type: str
    choices: [standalone, switchover]
    default: standalone
  azure_promote_option:
    description:
      - O(provider=azure_pg_flexible) - C(planned) lets Azure wait until the replica is in sync
        (no data loss; refused with C(LAG_TOO_HIGH) when the replica's C(replicationState) is
        not C(Active)); C(forced) promotes at once and may lose data, so it needs
        O(allow_data_loss) with O(reason).
    type: str
    choices: [planned, forced]
    default: planned
  patroni_url:
    description:
      - O(provider=patroni) - base URL of the REST API of one or more members of the cluster, such as
        C(http://db1.example.internal:8008) (a member's advertised C(api_url) ending in C(/patroni) is
        accepted). Any member answers for the whole cluster; the URLs are tried in order, so list
        several for a failover where the old leader's host is down.
    type: list
    elements: str
  patroni_username:
    description:
      - O(provider=patroni) - user of Patroni's C(restapi.authentication) (HTTP basic auth). Patroni
        asks for it on C(POST /switchover) and C(POST /failover).
    type: str
  patroni_password:
    description:
      - O(provider=patroni) - password of O(patroni_username). Never returned or logged.
    type: str
  patroni_validate_certs:
    description:
      - O(provider=patroni) - verify the TLS certificate of an C(https) O(patroni_url).
    type: bool
    default: true
  patroni_ca_cert:
    description:
      - O(provider=patroni) - CA bundle to verify an C(https) O(patroni_url) with.
    type: path
  candidate:
    description:
      - O(provider=patroni) - name of the Patroni member to promote (its C(name) in C(patroni.yml)
        and in C(GET /cluster)). Required with O(provider=patroni). An unknown name is refused with
        C(NOT_FOUND); a member that is already the leader is left alone (C(changed=false)).
    type: str
  patroni_mode:
    description:
      - O(provider=patroni) - C(auto) asks for a switchover when C(GET /cluster) shows a running leader
        and for a failover when it does not; C(switchover) refuses (C(PRECONDITION_FAILED)) without a
        running leader; C(failover) always sends C(POST /failover), which does not need the leader.
    type: str
    choices: [auto, switchover, failover]
    default: auto
  backup_retention_period:
    description:
      - O(provider=aws_rds) - days of automated backups for the promoted RDS instance
        (C(BackupRetentionPeriod) of C(promote_read_replica)).
    type: int
  require_streaming:
    description:
      - Also refuse (C(LAG_TOO_HIGH)) when the replica's WAL receiver is not C(streaming). Off
        by default, because in a real failover the old primary is gone and the receiver is not
        streaming; a replica cut off from a live primary is caught by the byte lag.
    type: bool
    default: false
  allow_data_loss:
    description:
      - Promote even when the lag guard fails, and go on when O(wait_for_replay) times out.
        Needs O(reason).
    type: bool
    default: false
  reason:
    description:
      - Why the failover happens; required with O(allow_data_loss); returned and written into the
        O(verify_write) row.
    type: str
  wait_for_replay:
    description:
      - Before promoting, wait until everything received is replayed (and, when the old primary
        was fenced while the replica streamed from it, until its last LSN is replayed).
        A paused replay is resumed first (the promotion would replay it anyway).
    type: bool
    default: true
  replay_timeout:
    description:
      - How long O(wait_for_replay) waits (a duration). On timeout the run fails with C(TIMEOUT)
        (and the fence is put back) unless O(allow_data_loss) is set.
    type: str
    default: 5m
  promote_timeout:
    description:
      - How long to wait for the replica to leave recovery after C(pg_promote), for the RDS
        instance to be C(available) again, or for the Aurora target to be the writer.
    type: str
    default: 60s
  fence_timeout:
    description:
      - How long C(pg_ctl stop) may take (O(fence=stop)).
    type: str
    default: 60s
  verify_write:
    description:
      - After the promotion, create O(verify_table) if needed, insert one row and read it back.
    type: bool
    default: false
  verify_table:
    description:
      - Table of O(verify_write) (C(name) or C(schema.name)) in O(pg_database).
    type: str
    default: resilience_dr_promote_check
extends_documentation_fragment:
  - resilience.dr.postgres
  - resilience.dr.aws
  - resilience.dr.gcp
  - resilience.dr.azure
notes:
  - "O(provider=postgres): the C(pg_*) options address the replica to promote. Options of one
    provider given with another provider are refused (C(INVALID_ARGUMENT))."
  - "O(provider=aws_rds) was verified only against moto's server (promote_read_replica with the
    C(db_instance_available) waiter, Aurora C(failover_db_cluster), CloudWatch metrics put into
    moto) and botocore's Stubber (an already promoted replica, a C(modifying) one, C(ReplicaLag)
    -1), never against real AWS. Its concurrency guard is the instance or cluster status (a
    C(modifying) or C(failing-over) one gives C(LOCKED)); C(data_loss_bytes) is always null."
  - "O(provider=gcp_cloudsql) was verified only against a local HTTP fake of the Cloud SQL Admin
    API v1 and Cloud Monitoring v3 (instances.get, instances.promoteReplica, instances.failover,
    operations.list/get, timeSeries.list) that checks the bearer token and the requests; never
    against Google Cloud. O(gcp_endpoint) replaces both C(https://sqladmin.googleapis.com) and
    C(https://monitoring.googleapis.com). An instance with a C(PENDING) or C(RUNNING) operation
    is refused with C(LOCKED); C(data_loss_bytes) is always null."
  - "O(provider=patroni) was verified against a real Patroni 4.1 cluster (two PostgreSQL 15 members
    and one etcd 3.4 on loopback, REST API with basic auth): check mode, switchover, re-run, lag guard,
    unknown candidate. C(LOCKED) means C(GET /cluster) shows a C(scheduled_switchover); an immediate
    switchover started by someone else is serialised by Patroni itself (its answer is then
    C(PRECONDITION_FAILED) or C(APPLY_FAILED)). C(fence), C(wait_for_replay) and C(verify_write) do
    not apply: Patroni fences and promotes. C(data_loss_bytes) is always null."
  - "O(provider=azure_pg_flexible) was verified only against a local HTTP fake of Azure Resource
    Manager (GET and PATCH of C(Microsoft.DBforPostgreSQL/flexibleServers), api-version
    2024-08-01, with an C(Azure-AsyncOperation) long-running operation) that checks the bearer
    token and the request body; never against Azure. Plain-http endpoints are accepted for
    loopback addresses only. A server that is not C(Ready) is refused with C(LOCKED);
    C(data_loss_bytes) is always null."
  - "The lock is a session advisory lock on the replica: it protects against two runs of this
    module against the same replica, not against a promotion by other tools."
  - "C(data_loss_bytes) is the old primary's last LSN (read after fencing it read-only; its
    shutdown checkpoint location from C(pg_controldata) after C(pg_ctl stop); or read right before
    promoting when not fenced) minus the replica's last replayed
    LSN. It is null when the old primary could not be read; C(data_loss_note) says why."
author:
  - resilience.dr contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Promote the replica, fence the old primary read-only, refuse if more than 16 MiB or 30 s behind
  resilience.dr.replica_promote:
    provider: postgres
    pg_login_host: db2.example.internal
    pg_login_user: postgres
    pg_login_password: "{{ vault_pg_password }}"
    primary_login_host: db1.example.internal
    fence: read_only
    verify_write: true

- name: The old primary is gone; promote anyway and record why
  resilience.dr.replica_promote:
    provider: postgres
    pg_login_host: db2.example.internal
    pg_login_password: "{{ vault_pg_password }}"
    allow_data_loss: true
    reason: "INC-4211 region eu-west-1 lost"

- name: Promote an RDS read replica in the DR region when CloudWatch says it is less than a minute behind
  resilience.dr.replica_promote:
    provider: aws_rds
    aws_region: eu-central-1
    db_instance_identifier: orders-replica-fra
    max_lag: 60s
    backup_retention_period: 7

- name: Fail an Aurora cluster over to a chosen reader
  resilience.dr.replica_promote:
    provider: aws_rds
    aws_region: us-east-1
    db_cluster_identifier: orders
    db_instance_identifier: orders-instance-2

- name: Promote a Cloud SQL cross-region replica
  resilience.dr.replica_promote:
    provider: gcp_cloudsql
    gcp_project: shop-prod
    cloudsql_instance: orders-replica-europe-west1
    max_lag: 60s

- name: Cloud SQL HA failover to the standby zone
  resilience.dr.replica_promote:
    provider: gcp_cloudsql
    gcp_project: shop-prod
    cloudsql_instance: orders
    cloudsql_mode: ha_failover
    cloudsql_target_zone: europe-west1-c

- name: Promote an Azure flexible server read replica, letting Azure wait until it is in sync
  resilience.dr.replica_promote:
    provider: azure_pg_flexible
    azure_subscription_id: 00000000-0000-0000-0000-000000000000
    azure_resource_group: rg-dr-westeurope
    azure_server_name: orders-replica-weu
    azure_promote_option: planned

- name: Planned Patroni switchover to pg2, refused when it is more than 1 MiB behind
  resilience.dr.replica_promote:
    provider: patroni
    patroni_url:
      - http://db1.example.internal:8008
      - http://db2.example.internal:8008
    patroni_username: patroni
    patroni_password: "{{ vault_patroni_api_password }}"
    candidate: pg2
    max_lag_bytes: 1048576

- name: Planned switchover on one host, stopping the old primary
  resilience.dr.replica_promote:
    provider: postgres
    pg_login_host: 127.0.0.1
    pg_port: 5433
    primary_login_host: 127.0.0.1
    primary_port: 5432
    primary_data_dir: /var/lib/postgresql/15/main
    fence: stop
"""

RETURN = r"""
changed:
  description: Whether anything was done (a promotion, or a fence of a still-writable old primary).
  returned: always
  type: bool
before:
  description: State read in the preflight (C(replica) and C(primary) for O(provider=postgres)).
  returned: always
  type: dict
after:
  description: State read back after the steps (predicted in check mode).
  returned: always
  type: dict
plan:
  description: The steps planned, each with C(action), C(target), C(detail) (SQL or argv, no secrets).
  returned: always
  type: list
  elements: dict
steps:
  description: The steps taken (planned ones in check mode) with C(started_at), C(seconds), C(status), C(result).
  returned: always
  type: list
  elements: dict
check_mode:
  description: Whether this was a dry run.
  returned: always
  type: bool
seconds:
  description: Wall time of the module run.
  returned: always
  type: float
provider:
  description: The provider used.
  returned: always
  type: str
replica_target:
  description: The replica as C(host:port/database).
  returned: O(provider=postgres)
  type: str
mode:
  description:
    - C(promote_read_replica) or C(aurora_failover) (aws_rds); C(promote_replica) or C(ha_failover) (gcp_cloudsql);
      C(switchover) or C(failover) (patroni; null when the candidate already leads).
  returned: O(provider=aws_rds), O(provider=gcp_cloudsql) and O(provider=patroni)
  type: str
candidate:
  description: The Patroni member to promote (O(candidate)).
  returned: O(provider=patroni)
  type: str
old_leader:
  description: The Patroni leader when the run started (null when none held the leader lock).
  returned: O(provider=patroni)
  type: str
new_leader:
  description: The Patroni leader after the run (null when nothing was promoted, for example in check mode).
  returned: O(provider=patroni)
  type: str
promote_mode:
  description: The C(promoteMode) sent (O(azure_promote_mode)).
  returned: O(provider=azure_pg_flexible)
  type: str
promote_option:
  description: The C(promoteOption) sent (O(azure_promote_option)).
  returned: O(provider=azure_pg_flexible)
  type: str
promoted:
  description: Whether this run promoted the replica.
  returned: always
  type: bool
already_primary:
  description: The replica was no longer a replica (in recovery / with a source / a reader) when the run started.
  returned: always
  type: bool
lsn_before:
  description: Replayed LSN of the replica before (its current LSN when already a primary).
  returned: O(provider=postgres)
  type: str
lsn_after:
  description: Current WAL LSN of the promoted server.
  returned: O(provider=postgres)
  type: str
timeline_before:
  description: Timeline of the replica before (of the leader, for O(provider=patroni)).
  returned: O(provider=postgres) and O(provider=patroni)
  type: int
timeline_after:
  description: Timeline after the promotion (one more than before; null for O(provider=patroni) when nothing was promoted).
  returned: O(provider=postgres) and O(provider=patroni)
  type: int
lag:
  description:
    - Lag measured by the preflight - for O(provider=postgres) C(bytes), C(bytes_unreplayed),
      C(bytes_behind_primary), C(seconds), the limits; for O(provider=patroni) C(bytes), C(lag),
      C(receive_lag), C(replay_lag), C(max_lag_bytes); for O(provider=aws_rds) C(metric),
      C(seconds), C(latest_seconds), C(datapoints), C(window_seconds); always C(within_limits)
      and C(overridden) (by O(allow_data_loss)).
  returned: when the replica was still a replica
  type: dict
lag_at_promotion:
  description: C(bytes), C(seconds), C(replay_lsn) and C(receive_lsn) measured right before C(pg_promote).
  returned: when promoted by O(provider=postgres)
  type: dict
replayed_lsn_at_promotion:
  description: Last LSN replayed by the replica before it left recovery.
  returned: when promoted by O(provider=postgres)
  type: str
old_primary_last_lsn:
  description: Last LSN read on the old primary (null when it could not be read).
  returned: when promoted by O(provider=postgres)
  type: str
data_loss_bytes:
  description:
    - Old primary's last LSN minus the replica's last replayed LSN, at least 0. Null when the old
      primary could not be read (see C(data_loss_note)), and always for the cloud providers.
  returned: always
  type: int
data_loss_note:
  description: How C(data_loss_bytes) was measured, or why it is unknown.
  returned: always
  type: str
wait_for_replay:
  description: C(reached), C(goal_lsn), C(goal), C(replay_lsn), C(waited_seconds).
  returned: when promoted with O(wait_for_replay)
  type: dict
fence:
  description:
    - C(mode), C(target), C(status) (C(fenced), C(planned), C(already_fenced), C(skipped),
      C(not_needed), C(not_requested)), C(reason) and C(result) of the fence step.
  returned: O(provider=postgres)
  type: dict
verify_write:
  description: C(table), C(id), C(written_at), C(read_back) of the test row.
  returned: when O(verify_write) ran
  type: dict
allow_data_loss:
  description: The O(allow_data_loss) given.
  returned: always
  type: bool
reason:
  description: The O(reason) given.
  returned: always
  type: str
warnings_detail:
  description: O(provider=aws_rds) - what looked odd after a promotion that otherwise verified.
  returned: sometimes
  type: str
error:
  description:
    - Stable error code on failure - C(LAG_TOO_HIGH), C(LOCKED), C(CONNECTION_FAILED),
      C(AUTH_FAILED), C(INVALID_ARGUMENT), C(PRECONDITION_FAILED), C(TIMEOUT), C(APPLY_FAILED),
      C(VERIFY_FAILED), C(MISSING_LIBRARY), C(NOT_FOUND).
  returned: failure
  type: str
"""

from ansible_collections.resilience.dr.plugins.module_utils._connection import (
    aws_spec, azure_spec, gcp_spec, merge_specs, postgres_spec)
from ansible_collections.resilience.dr.plugins.module_utils._module import DRModule

PROVIDERS = ["postgres", "aws_rds", "gcp_cloudsql", "azure_pg_flexible", "patroni"]
_PG_ONLY = ["fence", "require_fence", "primary_login_host", "primary_port", "primary_login_user",
            "primary_login_password", "primary_database", "primary_connect_timeout", "primary_data_dir",
            "primary_os_user", "pg_bin_dir", "require_streaming", "wait_for_replay",
            "replay_timeout", "fence_timeout", "verify_write", "verify_table"]
#: option -> the providers it means something for (refused with another one)
ONLY_FOR = dict((name, ("postgres",)) for name in _PG_ONLY)
ONLY_FOR.update({
    "db_instance_identifier": ("aws_rds",),
    "db_cluster_identifier": ("aws_rds",),
    "backup_retention_period": ("aws_rds",),
    "lag_window": ("aws_rds", "gcp_cloudsql"),
    "cloudsql_instance": ("gcp_cloudsql",),
    "cloudsql_mode": ("gcp_cloudsql",),
    "cloudsql_target_zone": ("gcp_cloudsql",),
    "azure_resource_group": ("azure_pg_flexible",),
    "azure_server_name": ("azure_pg_flexible",),
    "azure_promote_mode": ("azure_pg_flexible",),
    "azure_promote_option": ("azure_pg_flexible",),
    "max_lag_bytes": ("postgres", "patroni"),
    "patroni_url": ("patroni",),
    "patroni_username": ("patroni",),
    "patroni_password": ("patroni",),
    "patroni_validate_certs": ("patroni",),
    "patroni_ca_cert": ("patroni",),
    "candidate": ("patroni",),
    "patroni_mode": ("patroni",),
})


def argument_spec():
    own = dict(
        provider=dict(type="str", required=True, choices=PROVIDERS),
        fence=dict(type="str", choices=["read_only", "stop", "none"]),
        require_fence=dict(type="bool", default=False),
        primary_login_host=dict(type="str"),
        primary_port=dict(type="int"),
        primary_login_user=dict(type="str"),
        primary_login_password=dict(type="str", no_log=True),
        primary_database=dict(type="str"),
        primary_connect_timeout=dict(type="int", default=5),
        primary_data_dir=dict(type="path"),
        primary_os_user=dict(type="str", default="postgres"),
        pg_bin_dir=dict(type="path"),
        max_lag_bytes=dict(type="int", default=16777216),
        max_lag=dict(type="str", default="30s"),
        require_streaming=dict(type="bool", default=False),
        allow_data_loss=dict(type="bool", default=False),
        reason=dict(type="str"),
        wait_for_replay=dict(type="bool", default=True),
        replay_timeout=dict(type="str", default="5m"),
        promote_timeout=dict(type="str", default="60s"),
        fence_timeout=dict(type="str", default="60s"),
        verify_write=dict(type="bool", default=False),
        verify_table=dict(type="str", default="resilience_dr_promote_check"),
        lag_window=dict(type="str", default="5m"),
        db_instance_identifier=dict(type="str"),
        db_cluster_identifier=dict(type="str"),
        backup_retention_period=dict(type="int"),
        cloudsql_instance=dict(type="str"),
        cloudsql_mode=dict(type="str", default="promote_replica", choices=["promote_replica", "ha_failover"]),
        cloudsql_target_zone=dict(type="str"),
        azure_resource_group=dict(type="str"),
        azure_server_name=dict(type="str"),
        azure_promote_mode=dict(type="str", default="standalone", choices=["standalone", "switchover"]),
        azure_promote_option=dict(type="str", default="planned", choices=["planned", "forced"]),
        patroni_url=dict(type="list", elements="str"),
        patroni_username=dict(type="str"),
        patroni_password=dict(type="str", no_log=True),
        patroni_validate_certs=dict(type="bool", default=True),
        patroni_ca_cert=dict(type="path"),
        candidate=dict(type="str"),
        patroni_mode=dict(type="str", default="auto", choices=["auto", "switchover", "failover"]),
    )
    return merge_specs(postgres_spec(), aws_spec(), gcp_spec(), azure_spec(), own)


def foreign_options(module):
    """Options of another provider that were given (not left at their default)."""
    chosen = module.params["provider"]
    given = []
    for name, providers in ONLY_FOR.items():
        if chosen in providers:
            continue
        if module.params.get(name) is not None and module.params.get(name) != module.argument_spec[name].get("default"):
            given.append(name)
    return sorted(given)


def main():
    module = DRModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[
            ("allow_data_loss", True, ["reason"]),
            ("fence", "stop", ["primary_data_dir"]),
        ],
    )
    provider_name = module.params["provider"]
    foreign = foreign_options(module)
    if foreign:
        module.fail_json(msg="Option(s) %s do not apply to provider %s; remove them. Nothing was changed."
                         % (", ".join(foreign), provider_name), error="INVALID_ARGUMENT", changed=False)
    if provider_name == "postgres":
        if module.params["fence"] is None:
            module.params["fence"] = "read_only"
        from ansible_collections.resilience.dr.plugins.module_utils._promote_postgres import PostgresPromote
        provider = PostgresPromote(module)
    elif provider_name == "aws_rds":
        from ansible_collections.resilience.dr.plugins.module_utils._promote_aws_rds import AwsRdsPromote
        provider = AwsRdsPromote(module)
    elif provider_name == "gcp_cloudsql":
        from ansible_collections.resilience.dr.plugins.module_utils._promote_cloudsql import CloudSqlPromote
        provider = CloudSqlPromote(module)
    elif provider_name == "azure_pg_flexible":
        from ansible_collections.resilience.dr.plugins.module_utils._promote_azure import AzurePgFlexiblePromote
        provider = AzurePgFlexiblePromote(module)
    elif provider_name == "patroni":
        from ansible_collections.resilience.dr.plugins.module_utils._promote_patroni import PatroniPromote
        provider = PatroniPromote(module)
    else:  # pragma: no cover - choices keep this out
        module.fail_json(msg="Unknown provider %s." % provider_name, error="INVALID_ARGUMENT")
    module.run_provider(provider)


if __name__ == "__main__":
    main()

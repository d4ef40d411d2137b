#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_pitr_restore
short_description: Point-in-time restore of PostgreSQL that never overshoots its target
version_added: 0.1.0
description:
  - Restores a PostgreSQL cluster to a point in time (O(target_time)), a WAL location
    (O(target_lsn)), a transaction (O(target_xid)), a named restore point (O(target_name)),
    the end of the backup (O(immediate)) or the end of the archived WAL (O(latest)).
  - Chooses the newest backup that ENDED before the target, never one taken after it, and
    fails with C(NO_BACKUP_BEFORE_TARGET) before creating anything when there is none.
  - Restores into O(data_dir) (a new folder). A folder that is not empty is refused
    (O(existing=fail)) or renamed to C(<data_dir>.moved-<UTC time>) (O(existing=move_aside));
    nothing is ever deleted, except the contents of a half-finished restore this module
    made itself (recognised by its marker file).
  - The module PROVES the target was reached from server facts (the C(recovery stopping) record
    of the server log, C(pg_last_xact_replay_timestamp) and C(pg_last_wal_replay_lsn)).
    With O(target_action=promote) on PostgreSQL 14 and later, recovery promotes at the target
    itself (C(recovery_target_action=promote)), since PostgreSQL refuses to promote when WAL ends
    before the target (FATAL C(recovery ended before configured recovery target was reached)); the proof
    runs right after, and a cluster that fails it is stopped. With O(target_action=pause) or
    O(target_action=shutdown), and before PostgreSQL 14, recovery pauses at the target, the proof
    is read while paused, and only then does the module promote (O(target_action=promote)).
    WAL that runs out before the target is C(TARGET_NOT_REACHED) and the cluster is not promoted.
  - Before starting, the WAL archive is checked for every segment from the backup's start to
    the target; a missing segment is an error naming it. Check mode reports the backup it
    would use, the WAL range it needs and whether it is all there, and changes nothing.
  - The restored copy gets its own O(port), listens on O(listen_addresses) only, puts its
    Unix socket into O(socket_dir) (default the data dir), and has C(archive_mode=off), because a
    backup carries the primary's settings, and a copy that kept them would collide with the
    primary or archive into its archive.
  - Replay runs with settings that make it faster (O(replay_settings)); they are removed and
    the cluster is restarted with its normal settings before it is handed over.
  - Idempotent - a marker file C(resilience_dr_restore.json) in the data dir records the
    engine, source, target and state; a second run with the same arguments is
    C(changed=false), and a run killed halfway (marker C(in_progress)) is redone from the
    start into the folder it owns.
author:
  - resilience.dr contributors (@resilience-dr)
options:
  engine:
    description:
      - Where the backups come from.
      - V(native) - C(pg_basebackup) outputs (plain or tar, with C(backup_manifest)) in
        O(backup_dir), WAL segments in O(wal_archive).
      - V(pgbackrest) - a pgBackRest stanza; the backup set is chosen by this module and
        passed to C(pgbackrest restore --set). Replay fetches WAL with C(archive-get --archive-async)
        through a private spool folder beside O(data_dir) (C(.<name>.pgbackrest-spool)), removed
        once the cluster is promoted. The last segments fetched are hard-linked there too, so
        that PostgreSQL's re-read of the last one at the end of recovery is not fetched again.
      - V(barman) - a Barman server (O(barman_server) in O(barman_config)); the backup is
        chosen by this module and passed by id to C(barman recover) with the target options.
      - V(aws_rds) - C(RestoreDBInstanceToPointInTime) of an RDS instance into a new one.
      - V(gcp_cloudsql) - clone of a Cloud SQL instance with C(cloneContext.pointInTime).
      - V(azure_pg_flexible) - point-in-time restore of an Azure Database for PostgreSQL
        flexible server into a new server (C(createMode=PointInTimeRestore)).
    type: str
    required: true
    choices: [native, pgbackrest, barman, aws_rds, gcp_cloudsql, azure_pg_flexible]
  target_time:
    description:
      - Restore up to this moment, ISO 8601 with a zone (V(2026-01-15T10:15:00Z),
        V(2026-01-15T12:15:00+02:00)). A time without a zone is refused.
      - Exactly one of O(target_time), O(target_lsn), O(target_xid), O(target_name),
        O(immediate) and O(latest) is required.
    type: str
  target_lsn:
    description:
      - Restore up to this WAL location (V(0/3000028)).
    type: str
  target_xid:
    description:
      - Restore up to the commit of this transaction id. Without O(backup_id), the OLDEST
        backup is used, because the position of a transaction in the WAL is unknown beforehand.
    type: str
  target_name:
    description:
      - Restore up to this named restore point (C(pg_create_restore_point)). Without
        O(backup_id), the OLDEST backup is used.
    type: str
  immediate:
    description:
      - Stop as soon as the backup is consistent (the state at the end of the backup).
    type: bool
  latest:
    description:
      - Replay every archived WAL segment (the newest state the archive holds). Only with
        O(target_action=promote).
    type: bool
  target_inclusive:
    description:
      - Whether the target itself is included (stop just after it) or excluded (stop just
        before it). Used for O(target_time), O(target_lsn) and O(target_xid).
    type: bool
    default: true
  target_action:
    description:
      - What the restored cluster does once the target is proven. V(promote) makes it a
        read-write primary (on a new timeline); V(pause) leaves it running read-only, paused
        at the target; V(shutdown) leaves it stopped at the target.
    type: str
    choices: [promote, pause, shutdown]
    default: promote
  target_timeline:
    description:
      - C(recovery_target_timeline) (V(current), V(latest) or a number). PostgreSQL's default
        (V(latest)) when not given.
    type: str
  backup_id:
    description:
      - Restore from this backup (native - its folder name; pgbackrest - the set label;
        barman - the backup id)
        instead of letting the module choose. Still refused when it ended after the target.
    type: str
  backup_dir:
    description:
      - O(engine=native) - folder holding one C(pg_basebackup) output per sub-folder (or one
        backup itself).
    type: path
  wal_archive:
    description:
      - O(engine=native) - folder of archived WAL segments (as C(archive_command) writes them).
        The restored cluster copies segments from it with C(restore_command).
    type: path
  pgbackrest_config:
    description:
      - O(engine=pgbackrest) - pgBackRest configuration file.
    type: path
  stanza:
    description:
      - O(engine=pgbackrest) - the stanza to restore.
    type: str
  pgbackrest_bin:
    description:
      - O(engine=pgbackrest) - the pgbackrest command.
    type: str
    default: pgbackrest
  barman_config:
    description:
      - O(engine=barman) - the Barman configuration file (C(barman -c)). Barman's default
        search (C(~/.barman.conf), C(/etc/barman.conf)) when not given.
    type: path
  barman_server:
    description:
      - O(engine=barman) - the Barman server (section of the configuration) to restore from.
    type: str
  barman_bin:
    description:
      - O(engine=barman) - the barman command. Give an absolute path when Barman lives in a
        virtualenv; it runs as O(os_user), which must be Barman's C(barman_user).
    type: str
    default: barman
  delta:
    description:
      - O(engine=pgbackrest) - pass C(--delta) when redoing a half-finished restore of this
        module, so files already restored are kept. Never used on a folder this module did
        not create.
    type: bool
    default: false
  data_dir:
    description:
      - Data directory to restore into (O(engine=native), O(engine=pgbackrest) and O(engine=barman)). Created
        when absent, mode 0700, owned by O(os_user).
    type: path
  existing:
    description:
      - What to do when O(data_dir) is not empty and is not a restore of this module with
        the same arguments. V(fail) refuses; V(move_aside) renames it to
        C(<data_dir>.moved-<UTC time>) (returned as RV(moved_to)) and restores into a
        fresh folder. A folder in which PostgreSQL runs is always refused.
    type: str
    choices: [fail, move_aside]
    default: fail
  port:
    description:
      - TCP port of the restored cluster (required for data dir engines). Must be free.
    type: int
  listen_addresses:
    description:
      - C(listen_addresses) of the restored cluster.
    type: str
    default: 127.0.0.1
  socket_dir:
    description:
      - Unix socket folder of the restored cluster after hand-over. Defaults to O(data_dir).
        During the restore the socket is always in O(data_dir).
    type: path
  os_user:
    description:
      - OS user that owns the data dir and runs PostgreSQL. Defaults to C(postgres) when the
        module runs as root (PostgreSQL refuses to run as root), else the current user.
    type: str
  pg_bin:
    description:
      - Folder of C(pg_ctl), C(psql), C(pg_controldata). Defaults to
        C(/usr/lib/postgresql/<version of the backup>/bin).
    type: path
  pg_login_user:
    description:
      - Role used to query the restored cluster while it is verified (over its private Unix
        socket, which is temporarily trusted; the cluster's own C(pg_hba.conf) is back in
        force after hand-over).
    type: str
    default: postgres
  leave_running:
    description:
      - Leave the restored cluster running after hand-over (ignored for
        O(target_action=shutdown)). When false it is stopped cleanly.
    type: bool
    default: true
  replay_settings:
    description:
      - Extra or changed settings used only while WAL is replayed, merged over the defaults
        C(recovery_init_sync_method=syncfs), C(max_wal_size=8GB), C(checkpoint_timeout=1h).
        A null value drops a default. A bigger C(shared_buffers) can be added here; it is not a
        default because the end-of-recovery checkpoint then has more to write.
      - WAL prefetch runs with PostgreSQL's own defaults (C(recovery_prefetch=try)). The restored
        files were just written and are in the page cache, where a deeper prefetch
        (C(maintenance_io_concurrency=64), C(wal_decode_buffer_size=2MB)) made replay slower in
        the benchmark. For a data set larger than the memory of the host, add those two here.
    type: dict
  replay_settings_enabled:
    description:
      - Set to false to replay with the backup's own settings.
    type: bool
    default: true
  timeout:
    description:
      - How long replay (or the cloud operation) may take, as a duration (V(90s), V(15m), V(1h)).
    type: str
    default: 1h
  source_db_instance:
    description:
      - Cloud engines - name of the RDS instance, Cloud SQL instance or flexible server
        whose backups are used.
    type: str
  target_db_instance:
    description:
      - Cloud engines - name of the new instance or server to create. An existing one that
        this module restored with the same source and target (recognised by its tags or
        labels) is C(changed=false); any other existing one is refused.
      - Only O(target_time) and O(latest), and only O(target_action=promote).
    type: str
  resource_group:
    description:
      - O(engine=azure_pg_flexible) - resource group of the source and the new server.
    type: str
  db_instance_class:
    description:
      - O(engine=aws_rds) - instance class of the new instance (default - the source's).
    type: str
  wait:
    description:
      - O(engine=aws_rds) - wait until the new instance is available.
    type: bool
    default: true
extends_documentation_fragment:
  - resilience.dr.aws
  - resilience.dr.gcp
  - resilience.dr.azure
attributes:
  check_mode:
    support: full
    description: Reports the backup it would use, the WAL range and whether it is complete; changes nothing.
  diff_mode:
    support: full
    description: Before and after state of the data dir or instance.
notes:
  - Run as root (the module switches to O(os_user) with C(runuser)) or as O(os_user) itself.
  - The V(native) and V(pgbackrest) engines are tested against real PostgreSQL 15 and pgBackRest
    2.45. The V(aws_rds) engine is tested against moto's server and botocore's Stubber only;
    V(gcp_cloudsql) and V(azure_pg_flexible) only against local HTTP fakes of the REST calls
    they make (no emulator exists), not against the real services.
  - The V(barman) engine is tested against real Barman 3.19 (PyPI) with C(backup_method=postgres)
    and C(streaming_archiver) on PostgreSQL 15 - time, restore-point (name), LSN, transaction id
    and O(immediate) targets, a target older than every backup, check mode and the second run. C(barman recover) runs locally as O(os_user)
    (Barman's C(barman_user)); remote recovery (C(--remote-ssh-command)) is not offered.
  - A backup's end time comes from the C(.backup) history file in the WAL archive, else from
    the C(backup_manifest)'s modification time.
  - The restored cluster's WAL continuity check covers the segments from the backup's start to
    the segment holding the target (for a time target - the first segment archived after it).
seealso:
  - module: resilience.dr.backup_verify
"""

EXAMPLES = r"""
- name: Restore the lab's primary to the minute before the incident, into a new data dir
  resilience.dr.pg_pitr_restore:
    engine: native
    backup_dir: /var/backups/pg/base
    wal_archive: /var/backups/pg/wal
    target_time: "2026-01-15T12:14:00+02:00"
    data_dir: /srv/pg/restore-incident-42
    port: 5499
  register: restore

- name: Same through pgBackRest, keeping whatever is in the folder under a new name
  resilience.dr.pg_pitr_restore:
    engine: pgbackrest
    pgbackrest_config: /etc/pgbackrest/pgbackrest.conf
    stanza: main
    target_time: "2026-01-15T10:14:00Z"
    data_dir: /srv/pg/restore
    existing: move_aside
    port: 5499

- name: Same through Barman (installed in a virtualenv), run as the postgres OS user
  resilience.dr.pg_pitr_restore:
    engine: barman
    barman_bin: /opt/barman/venv/bin/barman
    barman_config: /etc/barman.conf
    barman_server: main
    target_time: "2026-01-15T10:14:00Z"
    data_dir: /srv/pg/restore-barman
    port: 5499

- name: Dry run - which backup, which WAL, is it all there?
  resilience.dr.pg_pitr_restore:
    engine: native
    backup_dir: /var/backups/pg/base
    wal_archive: /var/backups/pg/wal
    target_lsn: "0/3000028"
    data_dir: /srv/pg/restore
    port: 5499
  check_mode: true

- name: Cloud SQL clone at a point in time
  resilience.dr.pg_pitr_restore:
    engine: gcp_cloudsql
    gcp_project: shop-prod
    source_db_instance: orders
    target_db_instance: orders-restore-0115
    target_time: "2026-01-15T10:14:00Z"

- name: Azure flexible server point-in-time restore into a new server
  resilience.dr.pg_pitr_restore:
    engine: azure_pg_flexible
    azure_subscription_id: 00000000-0000-0000-0000-000000000000
    resource_group: rg-shop
    source_db_instance: orders-pg
    target_db_instance: orders-pg-restore
    target_time: "2026-01-15T10:14:00Z"

- name: RDS point-in-time restore into a new instance
  resilience.dr.pg_pitr_restore:
    engine: aws_rds
    source_db_instance: orders-prod
    target_db_instance: orders-restore-0115
    target_time: "2026-01-15T10:14:00Z"
    aws_region: eu-west-1
"""

RETURN = r"""
changed:
  description: Whether anything was restored.
  returned: always
  type: bool
before:
  description: State found before (data dir contents and marker, or the target instance).
  returned: always
  type: dict
after:
  description: State after the run (in check mode - the predicted state).
  returned: always
  type: dict
plan:
  description: The steps planned (action, target, detail).
  returned: always
  type: list
  elements: dict
steps:
  description: The steps taken (or, in check mode, that would be taken) with start time and seconds.
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
target:
  description: The normalised target (type, value in UTC or LSN text, inclusive, action, timeline).
  returned: always
  type: dict
  sample: {"type": "time", "value": "2026-01-15T10:14:00.000Z", "inclusive": true, "action": "promote", "timeline": null}
backup:
  description: The backup chosen (id, format, start/end LSN and time, where the end time came from).
  returned: when a backup was chosen (data dir engines)
  type: dict
backups_found:
  description: How many backups the catalogue holds.
  returned: data dir engines
  type: int
data_dir_state:
  description: What O(data_dir) held - V(absent), V(empty), V(foreign), V(ours_incomplete), V(restored).
  returned: data dir engines
  type: str
wal:
  description:
    - The WAL range needed (first, last, needed, present, missing, complete, end_known,
      newest_archived). For pgbackrest also the repository's archive min/max.
  returned: data dir engines, unless already restored
  type: dict
archive:
  description: pgBackRest's archive ids with min and max segment.
  returned: engine pgbackrest
  type: list
  elements: dict
proof:
  description:
    - Where recovery stopped, from server facts - C(stop_record) (the server log's
      C(recovery stopping ...) line), C(stop_record_time), C(last_replayed_commit) and
      C(last_replay_lsn) read once recovery stopped, C(reached), C(promoted), C(replay_seconds),
      and C(promoted_by=recovery_target_action) when PostgreSQL promoted at the target itself.
  returned: after a restore, or when already restored
  type: dict
moved_to:
  description: Where the previous contents of O(data_dir) were moved.
  returned: when O(existing=move_aside) moved something
  type: str
timings:
  description: Seconds spent copying the backup (C(restore_backup)) and replaying WAL (C(replay)).
  returned: after a restore
  type: dict
restored_at:
  description: When the existing restore was completed (idempotent re-run).
  returned: when already restored
  type: str
db_instance:
  description: Cloud engines - the new instance (identifier, status, endpoint, the source and target it was restored from/to).
  returned: cloud engines
  type: dict
"""

from ansible_collections.resilience.dr.plugins.module_utils._connection import aws_spec, azure_spec, gcp_spec, merge_specs
from ansible_collections.resilience.dr.plugins.module_utils._module import DRModule


def argument_spec():
    return merge_specs(
        aws_spec(),
        gcp_spec(),
        azure_spec(),
        dict(
            engine=dict(type="str", required=True, choices=["native", "pgbackrest", "barman", "aws_rds", "gcp_cloudsql", "azure_pg_flexible"]),
            target_time=dict(type="str"),
            target_lsn=dict(type="str"),
            target_xid=dict(type="str"),
            target_name=dict(type="str"),
            immediate=dict(type="bool"),
            latest=dict(type="bool"),
            target_inclusive=dict(type="bool", default=True),
            target_action=dict(type="str", default="promote", choices=["promote", "pause", "shutdown"]),
            target_timeline=dict(type="str"),
            backup_id=dict(type="str"),
            backup_dir=dict(type="path"),
            wal_archive=dict(type="path"),
            pgbackrest_config=dict(type="path"),
            stanza=dict(type="str"),
            pgbackrest_bin=dict(type="str", default="pgbackrest"),
            barman_config=dict(type="path"),
            barman_server=dict(type="str"),
            barman_bin=dict(type="str", default="barman"),
            delta=dict(type="bool", default=False),
            data_dir=dict(type="path"),
            existing=dict(type="str", default="fail", choices=["fail", "move_aside"]),
            port=dict(type="int"),
            listen_addresses=dict(type="str", default="127.0.0.1"),
            socket_dir=dict(type="path"),
            os_user=dict(type="str"),
            pg_bin=dict(type="path"),
            pg_login_user=dict(type="str", default="postgres"),
            leave_running=dict(type="bool", default=True),
            replay_settings=dict(type="dict"),
            replay_settings_enabled=dict(type="bool", default=True),
            timeout=dict(type="str", default="1h"),
            source_db_instance=dict(type="str"),
            target_db_instance=dict(type="str"),
            db_instance_class=dict(type="str"),
            resource_group=dict(type="str"),
            wait=dict(type="bool", default=True),
        ),
    )


def main():
    module = DRModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[["target_time", "target_lsn", "target_xid", "target_name", "immediate", "latest"]],
        required_one_of=[["target_time", "target_lsn", "target_xid", "target_name", "immediate", "latest"]],
        required_if=[
            ["engine", "native", ["backup_dir", "wal_archive", "data_dir", "port"]],
            ["engine", "pgbackrest", ["stanza", "data_dir", "port"]],
            ["engine", "barman", ["barman_server", "data_dir", "port"]],
            ["engine", "aws_rds", ["source_db_instance", "target_db_instance"]],
            ["engine", "gcp_cloudsql", ["source_db_instance", "target_db_instance"]],
            ["engine", "azure_pg_flexible", ["source_db_instance", "target_db_instance", "resource_group"]],
        ],
    )
    engine = module.params["engine"]
    try:
        if engine == "native":
            from ansible_collections.resilience.dr.plugins.module_utils._pitr_native import NativeRestore
            provider = NativeRestore(module)
        elif engine == "pgbackrest":
            from ansible_collections.resilience.dr.plugins.module_utils._pitr_pgbackrest import PgBackRestRestore
            provider = PgBackRestRestore(module)
        elif engine == "barman":
            from ansible_collections.resilience.dr.plugins.module_utils._pitr_barman import BarmanRestore
            provider = BarmanRestore(module)
        elif engine == "aws_rds":
            from ansible_collections.resilience.dr.plugins.module_utils._pitr_aws_rds import RdsPitrRestore
            provider = RdsPitrRestore(module)
        elif engine == "gcp_cloudsql":
            from ansible_collections.resilience.dr.plugins.module_utils._pitr_cloud import CloudSqlPitr
            provider = CloudSqlPitr(module)
        else:
            from ansible_collections.resilience.dr.plugins.module_utils._pitr_cloud import AzureFlexiblePitr
            provider = AzureFlexiblePitr(module)
    except Exception as exc:  # pylint: disable=broad-except
        from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError
        if isinstance(exc, DRError):
            exc.msg = exc.msg.rstrip() + " Nothing was changed."
            module.fail_error(exc, changed=False)
        raise
    module.run_provider(provider)


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_record: what every backend shares (private to this collection).

A *record* is the latest state of one DR event (a rollback, a failover...). Each change of
its status is stored as a new immutable *event*: a JSON object carrying the whole record
at that moment, its ``seq`` (1, 2, ... per record id), ``prev_hash`` and ``hash``:

* ``hash`` is the sha256 of the event's canonical JSON (sorted keys, no spaces, ASCII)
  without the ``hash`` key;
* ``prev_hash`` links the events: in the ``file`` backend it is the sha256 of the previous
  line of the file (every event of every record, in order); in the ``s3`` and ``postgres``
  backends it is the ``hash`` of the previous event of the same record. The first link is
  64 zeros.

Backends subclass ``RecordProvider`` and implement ``open``, ``events``, ``append``,
``check_chain`` and ``location``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import copy
import getpass
import hashlib
import json
import os
import re

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    NOT_FOUND,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step
from ansible_collections.resilience.dr.plugins.module_utils import _secrets
from ansible_collections.resilience.dr.plugins.module_utils import _time

# Codes specific to rollback_record (stable; add, never rename).
INVALID_TRANSITION = "INVALID_TRANSITION"
CHAIN_BROKEN = "CHAIN_BROKEN"
CONFLICT = "CONFLICT"

KINDS = ["rollback", "failover", "failback", "restore", "drill", "switch"]
STATUSES = ["started", "completed", "failed", "aborted"]
TERMINAL = frozenset(["completed", "failed", "aborted"])
GENESIS = "0" * 64
ID_PREFIX = "rb"

# Fields taken from the module's options when given (None means "keep what the record has").
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_FIELDS = ("kind", "environment", "services", "trigger", "reason", "executed_by", "job_id", "undo")


def canonical(data):
    """The one serialisation hashes are computed over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_text(data):
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def event_hash(event):
    """sha256 of the event without its own ``hash`` key."""
    return sha256_text(canonical(dict((k, v) for k, v in event.items() if k != "hash")))


def new_id(moment=None):
    """``rb-20260115-101500-ab12``: UTC time of creation plus 4 random hex digits."""
    moment = moment or _time.utcnow()
    suffix = binascii.hexlify(os.urandom(2)).decode("ascii")
    return "%s-%s-%s" % (ID_PREFIX, moment.strftime("%Y%m%d-%H%M%S"), suffix)


def local_user():
    try:
        return getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        return "uid-%d" % os.getuid()


def check_transition(record_id, old, new):
    """None when ``old -> new`` is allowed (or the same), else a DRError to raise."""
    if old == new:
        return None
    if old == "started" and new in TERMINAL:
        return None
    return DRError(
        INVALID_TRANSITION,
        "Record %s is already %s and cannot move to %s: only started -> completed, failed or aborted is "
        "allowed; write a new record instead." % (record_id, old, new),
        details={"id": record_id, "current_status": old, "requested_status": new},
    )


def latest_per_id(events):
    """{id: latest event} from events in storage order (a later seq wins)."""
    out = {}
    for event in events:
        rid = event.get("id")
        if rid is None:
            continue
        if rid not in out or event.get("seq", 0) >= out[rid].get("seq", 0):
            out[rid] = event
    return out


def record_time(record):
    """The moment a record is filed under for since/until/last: started_at, else recorded_at."""
    text = record.get("started_at") or record.get("recorded_at")
    try:
        return _time.parse_timestamp(text) if text else None
    except DRError:
        return None


def parse_moment(value, name):
    """A timestamp, or a duration meaning that long ago (``7d``)."""
    if value is None:
        return None
    try:
        return _time.parse_timestamp(value, name)
    except DRError:
        pass
    try:
        seconds = _time.parse_duration(value, name)
    except DRError:
        raise DRError(INVALID_ARGUMENT, "%s %r is neither an ISO 8601 timestamp with a zone nor a duration such as 7d." % (name, value))
    return _time.from_epoch(_time.utcnow().timestamp() - seconds)


def read_timeline(path):
    """The timeline written by the resilience.dr.timeline callback plugin."""
    if not os.path.isfile(path):
        raise DRError(
            NOT_FOUND,
            "Timeline file %s does not exist; enable the resilience.dr.timeline callback with its timeline_file set "
            "to this path (or drop timeline_file)." % path,
        )
    try:
        with open(path) as handle:
            data = json.load(handle)
    except ValueError as exc:
        raise DRError(INVALID_ARGUMENT, "Timeline file %s is not JSON: %s." % (path, exc))
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise DRError(INVALID_ARGUMENT, "Timeline file %s does not hold a 'tasks' list." % path)
    keep = ("playbook", "started_at", "updated_at", "total_seconds", "tasks")
    return dict((k, data[k]) for k in keep if k in data)


class RecordProvider(Provider):
    """read -> plan -> append -> verify for every backend."""

    name = "record"

    def __init__(self, module):
        super(RecordProvider, self).__init__(module)
        self.generated_id = False
        self.event = None

    # -- what a backend implements -------------------------------------------------
    def location(self):
        raise NotImplementedError

    def open(self):
        """Connect / lock. Called once by read()."""

    def events(self, record_id=None):
        """Stored events (of one record, or all), oldest first."""
        raise NotImplementedError

    def append(self, event):
        """Store ``event`` (fills in ``prev_hash`` and ``hash``); return a dict for the step result."""
        raise NotImplementedError

    def check_chain(self):
        """{valid, checked, first_broken} for the whole store."""
        raise NotImplementedError

    def extra_steps(self, current):
        """Steps to run before the append (for example creating a table)."""
        return []

    def latest_records(self):
        """The latest event of every record (backends may do this more cheaply)."""
        return list(latest_per_id(self.events()).values())

    def refresh(self):
        """Forget cached state so that the next events() reads the store again."""

    def id_taken(self, record_id):
        return bool(self.events(record_id))

    # -- the flow ------------------------------------------------------------------
    def _options(self):
        p = self.params
        opts = {}
        if p.get("id") is not None and not _ID.match(p["id"]):
            raise DRError(INVALID_ARGUMENT, "id %r may only hold letters, digits, '.', '_', ':' and '-' (at most 128, "
                          "starting with a letter or digit)." % p["id"])
        opts["objectives"] = {}
        for key in ("rto", "rpo"):
            value = (p.get("objectives") or {}).get(key)
            if value is not None:
                opts["objectives"][key] = value
                opts["objectives"]["%s_limit_seconds" % key] = _time.parse_duration(value, "objectives.%s" % key)
        unknown = sorted(set((p.get("objectives") or {}).keys()) - set(["rto", "rpo"]))
        if unknown:
            raise DRError(INVALID_ARGUMENT, "objectives accepts rto and rpo only, not %s." % ", ".join(unknown))
        for key in ("started_at", "finished_at"):
            opts[key] = _time.isoformat(_time.parse_timestamp(p.get(key), key)) if p.get(key) else None
        opts["since"] = parse_moment(p.get("since"), "since")
        opts["until"] = parse_moment(p.get("until"), "until")
        if p.get("last") is not None and p["last"] < 1:
            raise DRError(INVALID_ARGUMENT, "last must be 1 or more.")
        for key in ("rto_seconds", "rpo_seconds"):
            if p.get(key) is not None and p[key] < 0:
                raise DRError(INVALID_ARGUMENT, "%s must not be negative." % key)
        opts["timeline"] = None
        if p.get("action") == "write" and p.get("timeline_file"):
            opts["timeline"] = read_timeline(p["timeline_file"])
        return opts

    def read(self):
        self.opts = self._options()
        self.open()
        if self.params.get("verify_chain"):
            chain = self.check_chain()
            self.result["chain"] = chain
            if not chain["valid"]:
                broken = chain["first_broken"]
                raise DRError(
                    CHAIN_BROKEN,
                    "The record chain in %s is broken at %s (record %s): %s. Investigate the store before trusting or "
                    "appending to it." % (self.location(), broken.get("where"), broken.get("id"), broken.get("reason")),
                    details={"chain": chain},
                )
        if self.params["action"] == "query":
            records = self._query()
            self.result["records"] = records
            self.result["count"] = len(records)
            return {"count": len(records)}
        record_id = self.params.get("id")
        current = None
        if record_id:
            events = self.events(record_id)
            current = events[-1] if events else None
        return {"record": current}

    def _query(self):
        p = self.params
        records = self.latest_records()
        out = []
        for record in records:
            if p.get("kind") and record.get("kind") != p["kind"]:
                continue
            if p.get("environment") and record.get("environment") != p["environment"]:
                continue
            if p.get("status") and record.get("status") != p["status"]:
                continue
            moment = record_time(record)
            if self.opts["since"] is not None and (moment is None or moment < self.opts["since"]):
                continue
            if self.opts["until"] is not None and (moment is None or moment > self.opts["until"]):
                continue
            out.append(record)
        out.sort(key=lambda r: (r.get("started_at") or r.get("recorded_at") or "", r.get("id")))
        if p.get("last"):
            out = out[-p["last"]:]
        return out

    def plan(self, current):
        if self.params["action"] == "query":
            return []
        previous = current.get("record")
        p = self.params
        record_id = p.get("id")
        if previous is not None:
            if p.get("kind") and p["kind"] != previous.get("kind"):
                raise DRError(INVALID_ARGUMENT, "Record %s is a %s, not a %s; give another id." % (record_id, previous.get("kind"), p["kind"]))
            error = check_transition(record_id, previous.get("status"), p["status"])
            if error is not None:
                raise error
            if previous.get("status") == p["status"]:
                self.result["record"] = previous
                self.result["id"] = record_id
                self.result["event"] = "unchanged"
                self.result["location"] = self.location()
                return []
        if not p.get("kind") and previous is None:
            raise DRError(INVALID_ARGUMENT, "kind is required to create a record (one of %s)." % ", ".join(KINDS))
        if not record_id:
            self.generated_id = True
            record_id = new_id()
            while self.id_taken(record_id):
                record_id = new_id()
        self.event = self.build_event(record_id, previous)
        self.result["record"] = self.event
        self.result["id"] = record_id
        self.result["event"] = "created" if previous is None else "transitioned"
        self.result["location"] = self.location()
        steps = list(self.extra_steps(current))
        steps.append(Step("append_record", self.location(), run=self._append, id=record_id,
                          status=self.event["status"], seq=self.event["seq"]))
        return steps

    def _append(self):
        return self.append(self.event)

    def build_event(self, record_id, previous):
        """The whole record after this event, masked, without prev_hash/hash."""
        p = self.params
        now = _time.now_iso()
        event = {}
        if previous is not None:
            event.update(copy.deepcopy(dict((k, v) for k, v in previous.items() if k not in ("prev_hash", "hash"))))
        event["id"] = record_id
        event["seq"] = (previous or {}).get("seq", 0) + 1
        event["status"] = p["status"]
        event["recorded_at"] = now
        for key in _FIELDS:
            if p.get(key) is not None:
                event[key] = copy.deepcopy(p[key])
        event.setdefault("executed_by", local_user())
        if p.get("details"):
            details = dict(event.get("details") or {})
            details.update(copy.deepcopy(p["details"]))
            event["details"] = details
        if self.opts["timeline"] is not None:
            event["timeline"] = self.opts["timeline"]
        if self.opts["objectives"]:
            objectives = dict(event.get("objectives") or {})
            objectives.update(self.opts["objectives"])
            event["objectives"] = objectives
        # times
        if self.opts["started_at"]:
            event["started_at"] = self.opts["started_at"]
        elif not event.get("started_at"):
            event["started_at"] = now if p["status"] == "started" else None
        if p["status"] in TERMINAL:
            event["finished_at"] = self.opts["finished_at"] or now
        else:
            event["finished_at"] = None
        event["duration_seconds"] = None
        if event.get("started_at") and event.get("finished_at"):
            start = _time.parse_timestamp(event["started_at"])
            end = _time.parse_timestamp(event["finished_at"])
            if end < start:
                raise DRError(INVALID_ARGUMENT, "finished_at %s is before started_at %s." % (event["finished_at"], event["started_at"]))
            event["duration_seconds"] = round((end - start).total_seconds(), 3)
        # objectives against what was measured
        if p.get("rto_seconds") is not None:
            event["rto_seconds"] = float(p["rto_seconds"])
        elif event.get("rto_seconds") is None and p["status"] in TERMINAL and event["duration_seconds"] is not None:
            event["rto_seconds"] = event["duration_seconds"]
        if p.get("rpo_seconds") is not None:
            event["rpo_seconds"] = float(p["rpo_seconds"])
        objectives = event.get("objectives") or {}
        for key in ("rto", "rpo"):
            limit = objectives.get("%s_limit_seconds" % key)
            measured = event.get("%s_seconds" % key)
            event["%s_met" % key] = (measured <= limit) if (limit is not None and measured is not None) else None
        # secrets: masked by key, then every known secret value scrubbed
        for key in ("details", "undo", "timeline"):
            if event.get(key) is not None:
                event[key] = _secrets.mask(event[key])
        event = _secrets.scrub(event, self.secrets)
        return event

    def predict(self, current, steps):
        if self.event is None:
            return current
        return {"record": self.event}

    def verify(self, current, steps):
        if self.event is None:
            return current
        self.refresh()
        events = self.events(self.event["id"])
        stored = events[-1] if events else None
        if stored is None or stored.get("hash") != self.event.get("hash"):
            raise DRError(
                VERIFY_FAILED,
                "Record %s event %s was written to %s but reads back differently." % (
                    self.event["id"], self.event["seq"], self.location()),
            )
        return {"record": stored}


def check_linked_events(items):
    """Chain check for stores that link each event to the previous event of the same record.

    ``items``: ``(where, event, id_hint)`` in store order (per record, oldest first);
    ``event`` is None when it could not be read. Returns {valid, checked, first_broken}.
    """
    last = {}
    checked = 0
    for where, event, hint in items:
        reason = None
        rid = hint
        if not isinstance(event, dict):
            reason = "%s is not a JSON object (changed or damaged)" % where
        else:
            rid = event.get("id", hint)
            prev = last.get(rid)
            if event.get("hash") != event_hash(event):
                reason = "%s does not match its own hash (its content was changed)" % where
            elif hint is not None and rid != hint:
                reason = "%s holds record %s, not %s (it was moved or replaced)" % (where, rid, hint)
            elif event.get("seq") != (prev["seq"] + 1 if prev else 1):
                reason = "%s is event %s of record %s but event %d was expected (an event was removed or inserted)" % (
                    where, event.get("seq"), rid, prev["seq"] + 1 if prev else 1)
            elif event.get("prev_hash") != (prev["hash"] if prev else GENESIS):
                reason = "%s does not link to the event before it (that event was changed or replaced)" % where
        if reason:
            return {"valid": False, "checked": checked,
                    "first_broken": {"where": where, "id": rid, "reason": reason}}
        last[rid] = event
        checked += 1
    return {"valid": True, "checked": checked, "first_broken": None}

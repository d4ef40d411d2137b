# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every backup_verify engine shares (private to this collection).

backup_verify never changes what it verifies: ``read()`` runs the checks, ``plan()`` is
always empty, so the task reports ``changed: false`` and check mode runs the very same
checks. Each check is a method ``check_<name>()`` returning ``(status, detail, figures)``
or raising ``DRError`` (reported as ``failed`` with the error's message). When a check
fails and ``fail_on_error`` is true, ``read()`` raises ``DRError(CHECK_FAILED)`` whose
message names every failing check and whose details carry the whole report.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
import traceback

from ansible_collections.resilience.dr.plugins.module_utils._module import Provider
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    CHECK_FAILED,
    INVALID_ARGUMENT,
)
from ansible_collections.resilience.dr.plugins.module_utils import _time

ALL_CHECKS = ("max_age", "checksums", "wal_continuity", "test_restore")
PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"


def coerce(value):
    """Text from psql (or a number) as int, float, or the text itself."""
    if isinstance(value, (int, float)) or value is None:
        return value
    text = str(value)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("t", "true"):
        return True
    if text in ("f", "false"):
        return False
    return text


def shown(value):
    """A number as written by a person: 5.0 -> 5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def evaluate_expectation(expect, columns, rows):
    """Return (passed, value, failures) for one query's expectation.

    ``value`` is the first column of the first row (None when there is no row).
    ``expect`` keys: ``min_rows`` (row count at least), ``equals`` (value equal, compared
    as numbers when both are numbers, else as text), ``min`` / ``max`` (numeric bounds).
    """
    value = coerce(rows[0][0]) if rows and rows[0] else None
    failures = []
    expect = expect or {}
    if expect.get("min_rows") is not None and len(rows) < int(expect["min_rows"]):
        failures.append("%d row(s) returned, expected at least %s" % (len(rows), expect["min_rows"]))
    if expect.get("equals") is not None:
        wanted = coerce(expect["equals"])
        same = (value == wanted) if isinstance(value, (int, float)) and isinstance(wanted, (int, float)) \
            else (str(value) == str(expect["equals"]))
        if not same:
            failures.append("value %r, expected %r" % (value, expect["equals"]))
    for bound in ("min", "max"):
        if expect.get(bound) is None:
            continue
        limit = coerce(expect[bound])
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            failures.append("value %r is not a number, expected %s %s" % (value, bound, shown(expect[bound])))
        elif bound == "min" and value < limit:
            failures.append("value %r is below min %s" % (value, shown(expect[bound])))
        elif bound == "max" and value > limit:
            failures.append("value %r is above max %s" % (value, shown(expect[bound])))
    return (not failures, value, failures)


def run_verify_queries(instance, queries, default_database, max_rows=20):
    """Run ``verify_queries`` on a scratch instance. Returns (results, failures)."""
    results = []
    failures = []
    for index, query in enumerate(queries or []):
        name = query.get("name") or "query%d" % (index + 1)
        database = query.get("database") or default_database
        expect = dict((k, shown(v)) for k, v in (query.get("expect") or {}).items() if v is not None)
        item = {"name": name, "sql": query["sql"], "database": database, "expect": expect}
        t0 = time.monotonic()
        try:
            columns, rows = instance.query_with_header(query["sql"], database)
        except DRError as exc:
            item.update(passed=False, error=exc.msg, seconds=round(time.monotonic() - t0, 3))
            failures.append("query %s (%s) failed: %s" % (name, query["sql"], exc.msg))
            results.append(item)
            continue
        passed, value, problems = evaluate_expectation(expect, columns, rows)
        item.update(columns=columns, rows=[[coerce(v) for v in r] for r in rows[:max_rows]], row_count=len(rows),
                    value=value, passed=passed, seconds=round(time.monotonic() - t0, 3))
        if problems:
            item["failures"] = problems
            failures.append("query %s (%s): %s" % (name, query["sql"], "; ".join(problems)))
        results.append(item)
    return results, failures


def label(what):
    return what.replace("_", " ").replace("wal", "WAL")


def age_seconds(moment):
    if moment is None:
        return None
    return round((_time.utcnow() - moment).total_seconds(), 3)


class VerifyProvider(Provider):
    """Base of a backup_verify engine."""

    name = "backup_verify"
    #: checks this engine can run, in the order they run
    supported = ALL_CHECKS

    def __init__(self, module):
        super(VerifyProvider, self).__init__(module)
        self.report = {}
        self.figures = {}

    # -- the checks to run -------------------------------------------------------------
    def selected_checks(self):
        wanted = self.params.get("checks")
        if not wanted:
            return [c for c in ALL_CHECKS if c in self.supported]
        unknown = [c for c in wanted if c not in self.supported]
        if unknown:
            raise DRError(
                INVALID_ARGUMENT,
                "The %s engine cannot run the check(s) %s; it supports %s." % (
                    self.params["engine"], ", ".join(unknown), ", ".join(self.supported)),
            )
        return [c for c in ALL_CHECKS if c in wanted]

    def max_age_seconds(self):
        return _time.parse_duration(self.params.get("max_age"), "max_age")

    # -- hooks ---------------------------------------------------------------------
    def validate(self, checks):
        """Refuse bad arguments before any check runs (raise INVALID_ARGUMENT)."""

    def discover(self):
        """Find the backups; fill ``self.figures['backup']``. Raise DRError when none."""
        raise NotImplementedError

    # -- the flow ------------------------------------------------------------------
    def read(self):
        checks = self.selected_checks()
        max_age = self.max_age_seconds()
        if "max_age" in checks and max_age is None:
            raise DRError(INVALID_ARGUMENT, "The max_age check needs max_age (the RPO), such as 6h or 24h.")
        self.validate(checks)
        discovery_error = None
        t0 = time.monotonic()
        try:
            self.discover()
        except DRError as exc:
            discovery_error = exc
        discover_seconds = round(time.monotonic() - t0, 3)
        for name in ALL_CHECKS:
            if name not in checks:
                self.report[name] = {
                    "status": SKIPPED,
                    "detail": "not requested" if name in self.supported else "the %s engine does not support it" % self.params["engine"],
                    "started_at": None,
                    "seconds": 0.0,
                    "figures": {},
                }
                continue
            started = _time.now_iso()
            t0 = time.monotonic()
            figures = {}
            try:
                if discovery_error is not None:
                    raise discovery_error
                status, detail, figures = getattr(self, "check_" + name)()
            except DRError as exc:
                status, detail = FAILED, exc.msg
                figures = dict(exc.details)
            except Exception as exc:  # pylint: disable=broad-except
                status, detail = FAILED, "unexpected error: %s" % exc
                figures = {"exception": traceback.format_exc()}
            self.report[name] = {
                "status": status,
                "detail": detail,
                "started_at": started,
                "seconds": round(time.monotonic() - t0, 3),
                "figures": figures or {},
            }
        failed = [n for n in ALL_CHECKS if n in self.report and self.report[n]["status"] == FAILED]
        self.result.update(
            engine=self.params["engine"],
            checks=self.report,
            failed_checks=failed,
            passed=not failed,
            backup=self.figures.get("backup"),
            discover_seconds=discover_seconds,
        )
        for key in ("wal", "restore", "queries"):
            if key in self.figures:
                self.result[key] = self.figures[key]
        if failed and self.params.get("fail_on_error", True):
            raise DRError(
                CHECK_FAILED,
                "Backup verification failed: %s." % "; ".join("%s: %s" % (n, self.report[n]["detail"].rstrip(".")) for n in failed),
                details=dict(self.result),
            )
        return {
            "engine": self.params["engine"],
            "backup": self.figures.get("backup"),
            "checks": dict((n, self.report[n]["status"]) for n in self.report),
        }

    def plan(self, current):
        return []

    # -- shared check --------------------------------------------------------------
    def freshness(self, items):
        """``max_age`` over ``items``: a list of (what, moment, extra figures)."""
        limit = self.max_age_seconds()
        figures = {"max_age_seconds": limit}
        too_old = []
        parts = []
        for what, moment, extra in items:
            age = age_seconds(moment)
            figures[what] = dict(extra or {}, at=_time.isoformat(moment) if moment else None, age_seconds=age)
            if age is None:
                too_old.append("no %s found" % label(what))
            elif age > limit:
                too_old.append("%s is %s old (%ss), older than max_age %s" % (
                    label(what), _time.format_duration(age), age, _time.format_duration(limit)))
            else:
                parts.append("%s %s old" % (label(what), _time.format_duration(age)))
        if too_old:
            return FAILED, "; ".join(too_old), figures
        return PASSED, "; ".join(parts) + " (max_age %s)" % _time.format_duration(limit), figures

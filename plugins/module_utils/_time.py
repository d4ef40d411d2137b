# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durations and timestamps (private to this collection).

* Durations: ``"90s"``, ``"15m"``, ``"6h"``, ``"7d"``, ``"1w"``, combinations such as
  ``"1h30m"``, ``"250ms"``, or a bare number of seconds (``30``, ``"2.5"``).
* Timestamps: ISO 8601 with a zone (``2026-01-15T10:15:00Z``,
  ``2026-01-15T12:15:00+02:00``). A timestamp without a zone is refused: in a restore, a
  time that could be read in two zones is a lost hour of data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
import time

string_types = (str,)

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
)

UTC = datetime.timezone.utc

_UNITS = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)", re.IGNORECASE)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def parse_duration(value, name="duration"):
    """Return seconds (float) for a duration; raise DRError(INVALID_ARGUMENT) otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise DRError(INVALID_ARGUMENT, "%s must be a duration such as 90s, 15m, 6h or 7d, not a boolean." % name)
    if isinstance(value, (int, float)):
        if value < 0:
            raise DRError(INVALID_ARGUMENT, "%s must not be negative (got %s)." % (name, value))
        return float(value)
    if not isinstance(value, string_types):
        raise DRError(INVALID_ARGUMENT, "%s must be a duration such as 90s, 15m, 6h or 7d." % name)
    text = value.strip().lower().replace(" ", "")
    if _NUMBER.match(text):
        return float(text)
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise DRError(
            INVALID_ARGUMENT,
            "%s %r is not a duration; use a number with a unit such as 90s, 15m, 6h or 7d." % (name, value),
        )
    return total


def format_duration(seconds):
    """Human form of a number of seconds: ``1h2m3s``, ``4.2s``."""
    if seconds is None:
        return None
    if seconds < 60:
        return ("%.3f" % seconds).rstrip("0").rstrip(".") + "s"
    seconds = int(round(seconds))
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append("%d%s" % (seconds // size, unit))
            seconds %= size
    return "".join(out)


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)$"
)


def parse_timestamp(value, name="timestamp"):
    """Return an aware ``datetime`` in UTC from ISO 8601 text with a zone."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise DRError(INVALID_ARGUMENT, "%s has no time zone; give one (Z or +HH:MM)." % name)
        return value.astimezone(UTC)
    if not isinstance(value, string_types):
        raise DRError(INVALID_ARGUMENT, "%s must be an ISO 8601 timestamp with a zone." % name)
    match = _ISO.match(value.strip())
    if not match:
        raise DRError(
            INVALID_ARGUMENT,
            "%s %r is not an ISO 8601 timestamp with a zone, such as 2026-01-15T10:15:00Z "
            "or 2026-01-15T12:15:00+02:00." % (name, value),
        )
    year, month, day, hour, minute, second, frac, zone = match.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        if offset >= datetime.timedelta(hours=24):
            raise DRError(INVALID_ARGUMENT, "%s %r has an impossible zone offset." % (name, value))
        tz = datetime.timezone(sign * offset)
    try:
        parsed = datetime.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=tz
        )
    except ValueError as exc:
        raise DRError(INVALID_ARGUMENT, "%s %r is not a valid date and time: %s." % (name, value, exc))
    return parsed.astimezone(UTC)


def isoformat(moment):
    """ISO 8601 in UTC with a ``Z`` and millisecond precision."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] + "Z"


def utcnow():
    return datetime.datetime.now(UTC)


def now_iso():
    return isoformat(utcnow())


def from_epoch(seconds):
    return datetime.datetime.fromtimestamp(seconds, UTC)


def monotonic():
    return time.monotonic()

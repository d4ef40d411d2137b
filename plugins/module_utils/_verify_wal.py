# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL segment names, timeline history and archive continuity (private to this collection).

A WAL segment file is named ``TTTTTTTTXXXXXXXXYYYYYYYY``: the timeline, then the segment
number split into a "log id" and a segment within that log id (``0x100000000 / segment
size`` segments per log id). Recovery reads a segment from the newest timeline of its path
that had begun by that segment: the segment holding a timeline switch point is read from
the new timeline; the old timeline's copy of it (often archived as ``.partial``) is not
needed. ``.partial``, ``.backup`` and ``.history`` files are not segments.

Nothing here touches the archive: callers list names (a folder, a pgBackRest repository,
an object store) and pass them in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
COMPRESSED_SUFFIXES = (".gz", ".lz4", ".zst", ".bz2", ".xz", ".br")

_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")
_BACKUP = re.compile(r"^([0-9A-F]{24})\.([0-9A-F]{8})\.backup$")
_PGBACKREST_SEGMENT = re.compile(r"^([0-9A-F]{24})-[0-9a-f]{40}$")
_LSN = re.compile(r"^\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*$")


def strip_compression(name):
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def classify(name):
    """Return (kind, value) for an archive file name: ``segment`` (the 24-char name),
    ``history`` (timeline), ``backup`` (segment name), ``partial``, or ``other``.
    pgBackRest's ``<segment>-<sha1>`` names and compression suffixes are understood."""
    base = strip_compression(name.rsplit("/", 1)[-1])
    if base.endswith(".partial"):
        return ("partial", base[:24])
    match = _SEGMENT.match(base)
    if match:
        return ("segment", base)
    match = _PGBACKREST_SEGMENT.match(base)
    if match:
        return ("segment", match.group(1))
    match = _HISTORY.match(base)
    if match:
        return ("history", int(match.group(1), 16))
    match = _BACKUP.match(base)
    if match:
        return ("backup", match.group(1))
    return ("other", base)


def parse_lsn(text):
    match = _LSN.match(text or "")
    if not match:
        raise ValueError("not an LSN: %r" % (text,))
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(lsn):
    return "%X/%X" % (lsn >> 32, lsn & 0xFFFFFFFF)


def segs_per_id(segment_size):
    return 0x100000000 // segment_size


def segment_name(tli, segno, segment_size=DEFAULT_SEGMENT_SIZE):
    per = segs_per_id(segment_size)
    return "%08X%08X%08X" % (tli, segno // per, segno % per)


def parse_segment(name, segment_size=DEFAULT_SEGMENT_SIZE):
    """(timeline, segno) of a 24-char segment name."""
    match = _SEGMENT.match(name)
    if not match:
        raise ValueError("not a WAL segment name: %r" % (name,))
    per = segs_per_id(segment_size)
    return int(match.group(1), 16), int(match.group(2), 16) * per + int(match.group(3), 16)


def lsn_segno(lsn, segment_size=DEFAULT_SEGMENT_SIZE):
    return lsn // segment_size


def parse_history(text):
    """Entries of a ``.history`` file: a list of (parent_tli, switch_lsn, reason)."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        try:
            out.append((int(parts[0]), parse_lsn(parts[1]), parts[2].strip() if len(parts) > 2 else ""))
        except ValueError:
            continue
    return out


def scan_tree(folder):
    """Every WAL segment and timeline history file below ``folder`` (a WAL store kept in
    sub-folders, such as Barman's or a pgBackRest repository's archive): ``segments``
    {name: path}, ``mtimes`` {name: mtime}, ``histories`` {timeline: parsed history},
    ``newest`` (segment name or None). A missing folder gives empty results."""
    segments, mtimes, histories = {}, {}, {}
    if folder and os.path.isdir(folder):
        for root, _dirs, files in os.walk(folder):
            for name in files:
                kind, value = classify(name)
                full = os.path.join(root, name)
                if kind == "segment":
                    segments[value] = full
                    mtimes[value] = os.stat(full).st_mtime
                elif kind == "history" and name.endswith(".history"):
                    with open(full, errors="replace") as handle:
                        histories[value] = parse_history(handle.read())
    return {"segments": segments, "mtimes": mtimes, "histories": histories, "newest": max(segments) if segments else None}


def timeline_path(target_tli, histories):
    """The timelines recovery passes through to reach ``target_tli``: a list of
    (tli, begin_lsn, end_lsn) oldest first; ``end_lsn`` is None for the target.
    ``histories`` maps a timeline to its parsed history (its ancestors' switch points)."""
    entries = histories.get(target_tli) or []
    path = []
    begin = 0
    for parent, switch, _reason in entries:
        path.append((parent, begin, switch))
        begin = switch
    path.append((target_tli, begin, None))
    return path


def check_continuity(start_tli, start_lsn, segments, histories, segment_size=DEFAULT_SEGMENT_SIZE):
    """Check that every segment recovery needs from ``start_lsn`` (on ``start_tli``) up to
    the newest archived segment is present.

    :param segments: iterable of 24-char segment names present in the archive.
    :param histories: {tli: parsed history entries} of the archive's ``.history`` files.
    :return: dict with ``ok``, ``first`` / ``last`` expected segment names, ``expected``
        and ``present`` counts, ``gaps`` (list of {from, to, count}), ``missing`` (names,
        at most 100), ``target_timeline``, ``timelines`` (the path) and ``ignored`` (segments
        on timelines that are not on the path).
    """
    present = set(segments)
    by_tli = {}
    for name in present:
        try:
            tli, segno = parse_segment(name, segment_size)
        except ValueError:
            continue
        by_tli.setdefault(tli, []).append(segno)

    # the newest timeline whose path goes through the backup's timeline at/after its start
    candidates = set(by_tli) | set(histories)
    target = start_tli
    for tli in sorted(candidates, reverse=True):
        if tli < start_tli:
            break
        path = timeline_path(tli, histories)
        ok = False
        for ptli, begin, end in path:
            if ptli == start_tli and begin <= start_lsn and (end is None or start_lsn < end):
                ok = True
        if ok:
            target = tli
            break
    path = timeline_path(target, histories)
    path_tlis = [p[0] for p in path]
    start_seg = lsn_segno(start_lsn, segment_size)

    # first segment each timeline of the path provides
    begins = [(ptli, lsn_segno(begin, segment_size)) for ptli, begin, _end in path]

    def tli_for(segno):
        chosen = path[0][0]
        for ptli, first in begins:
            if first <= segno:
                chosen = ptli
        return chosen

    end_seg = None
    for ptli in path_tlis:
        for segno in by_tli.get(ptli, []):
            if tli_for(segno) == ptli and (end_seg is None or segno > end_seg):
                end_seg = segno
    result = {
        "target_timeline": target,
        "timelines": [{"timeline": p[0], "begin_lsn": format_lsn(p[1]),
                       "end_lsn": format_lsn(p[2]) if p[2] is not None else None} for p in path],
        "segment_size": segment_size,
        "first": segment_name(tli_for(start_seg), start_seg, segment_size),
        "ignored": sorted(n for n in present if parse_segment(n, segment_size)[0] not in path_tlis),
    }
    if end_seg is None or end_seg < start_seg:
        result.update(ok=False, last=None, expected=1, present=0, missing=[result["first"]],
                      gaps=[{"from": result["first"], "to": result["first"], "count": 1}])
        return result
    missing = []
    gaps = []
    current = None
    for segno in range(start_seg, end_seg + 1):
        name = segment_name(tli_for(segno), segno, segment_size)
        if name in present:
            current = None
            continue
        if len(missing) < 100:
            missing.append(name)
        if current is None:
            current = {"from": name, "to": name, "count": 1}
            gaps.append(current)
        else:
            current["to"] = name
            current["count"] += 1
    expected = end_seg - start_seg + 1
    result.update(
        ok=not gaps,
        last=segment_name(tli_for(end_seg), end_seg, segment_size),
        expected=expected,
        present=expected - sum(g["count"] for g in gaps),
        missing=missing,
        gaps=gaps,
    )
    return result


def describe_gaps(gaps):
    parts = []
    for gap in gaps:
        if gap["count"] == 1:
            parts.append(gap["from"])
        else:
            parts.append("%s..%s (%d segments)" % (gap["from"], gap["to"], gap["count"]))
    return ", ".join(parts)

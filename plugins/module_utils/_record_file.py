# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollback_record, backend ``file``: append-only, hash-chained JSON Lines (private).

* One line per event, canonical JSON; each line carries ``prev_hash`` (sha256 of the
  previous line's bytes, 64 zeros for the first) and ``hash`` (sha256 of itself without
  ``hash``).
* Created with mode 0600 (parent folders 0700); opened with ``O_APPEND``; every append is
  ``fsync``'d (and the folder too when the file was created).
* An exclusive ``fcntl.flock`` on the file itself is held from the read to the end of the
  append, so concurrent writers (other hosts' tasks, other playbooks) queue up and every
  line links to the one before it. When the file does not exist yet, the lock is taken on
  creation and the state is read again under it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import re

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._record_common import (
    CONFLICT,
    GENESIS,
    RecordProvider,
    canonical,
    event_hash,
    new_id,
    sha256_text,
)

_ID_IN_TEXT = re.compile(r'"id":"([^"]*)"')


def split_lines(raw):
    """(complete lines, trailing partial line or b'')."""
    if not raw:
        return [], b""
    parts = raw.split(b"\n")
    return parts[:-1], parts[-1]


def check_lines(raw):
    """Walk the chain of a file's bytes; return {valid, checked, first_broken}."""
    lines, partial = split_lines(raw)
    prev = GENESIS
    for number, line in enumerate(lines, 1):
        match = _ID_IN_TEXT.search(line.decode("utf-8", "replace"))
        rid = match.group(1) if match else None
        broken = None
        try:
            event = json.loads(line.decode("utf-8"))
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError:
            broken = "line %d is not a JSON object (changed or damaged)" % number
        else:
            rid = event.get("id", rid)
            if event.get("hash") != event_hash(event):
                broken = "line %d does not match its own hash (its content was changed)" % number
            elif event.get("prev_hash") != prev:
                broken = ("line %d does not link to line %d (line %d was changed after it, or lines were removed or "
                          "inserted)" % (number, number - 1, number - 1)) if number > 1 else "line 1 does not start the chain"
        if broken:
            return {"valid": False, "checked": number - 1,
                    "first_broken": {"line": number, "id": rid, "reason": broken, "where": "line %d" % number}}
        prev = sha256_text(line)
    if partial:
        number = len(lines) + 1
        return {"valid": False, "checked": len(lines),
                "first_broken": {"line": number, "id": None, "where": "line %d" % number,
                                 "reason": "line %d is incomplete (an interrupted write)" % number}}
    return {"valid": True, "checked": len(lines), "first_broken": None}


def parse_events(raw, record_id=None):
    """Events of the file (skipping lines that do not parse; verify_chain reports those)."""
    lines, _partial = split_lines(raw)
    out = []
    needle = None
    if record_id is not None:
        # lines are canonical JSON: a line of this record holds exactly this text
        needle = ('"id":%s' % json.dumps(record_id)).encode("utf-8")
    for line in lines:
        if needle is not None and needle not in line:
            continue
        try:
            event = json.loads(line.decode("utf-8"))
        except ValueError:
            continue
        if isinstance(event, dict) and (record_id is None or event.get("id") == record_id):
            out.append(event)
    return out


class FileRecordProvider(RecordProvider):
    name = "file"

    def __init__(self, module):
        super(FileRecordProvider, self).__init__(module)
        self.path = os.path.abspath(self.params["path"])
        self.fd = None
        self.raw = b""

    def location(self):
        return self.path

    # -- file handling ---------------------------------------------------------------
    def _read_all(self):
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            data = os.read(self.fd, 1 << 20)
            if not data:
                break
            chunks.append(data)
        self.raw = b"".join(chunks)

    def open(self):
        if os.path.isdir(self.path):
            raise DRError(PRECONDITION_FAILED, "path %s is a directory; give the path of a file." % self.path)
        if not os.path.exists(self.path):
            self.raw = b""
            return
        writable = self.params["action"] == "write" and os.access(self.path, os.W_OK)
        try:
            self.fd = os.open(self.path, (os.O_RDWR | os.O_APPEND) if writable else os.O_RDONLY)
            fcntl.flock(self.fd, fcntl.LOCK_EX if writable else fcntl.LOCK_SH)
            self._read_all()
        except OSError as exc:
            raise DRError(PRECONDITION_FAILED, "Cannot read record file %s: %s." % (self.path, exc.strerror))

    def close(self):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def refresh(self):
        if self.fd is not None:
            self._read_all()

    def events(self, record_id=None):
        return parse_events(self.raw, record_id)

    def check_chain(self):
        return check_lines(self.raw)

    # -- the append ------------------------------------------------------------------
    def _create(self):
        folder = os.path.dirname(self.path)
        created_folder = False
        if not os.path.isdir(folder):
            try:
                os.makedirs(folder, 0o700)
                created_folder = True
            except FileExistsError:
                pass  # another writer created it between the check and here
            except OSError as exc:
                raise DRError(APPLY_FAILED, "Cannot create the folder of record file %s: %s." % (self.path, exc.strerror))
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DRError(APPLY_FAILED, "Cannot create record file %s: %s." % (self.path, exc.strerror))
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd = fd
        self._read_all()
        if not self.raw:
            os.fsync(fd)
            self._fsync_dir(folder)
            if created_folder:
                self._fsync_dir(os.path.dirname(folder))

    @staticmethod
    def _fsync_dir(folder):
        try:
            dfd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EBADF):
                raise
        finally:
            os.close(dfd)

    def append(self, event):
        if self.fd is None:
            # the file did not exist at read time: take the lock now and look again
            self._create()
            theirs = self.events(event["id"])
            if theirs:
                if self.generated_id:
                    event["id"] = new_id()
                    while self.events(event["id"]):
                        event["id"] = new_id()
                    self.result["id"] = event["id"]
                else:
                    raise DRError(CONFLICT, "Another writer recorded %s in %s at the same moment; run the task again to "
                                  "see its state." % (event["id"], self.path))
        lines, partial = split_lines(self.raw)
        if partial:
            raise DRError(PRECONDITION_FAILED, "The last line of %s is incomplete (an interrupted write); run with "
                          "verify_chain and repair the file before appending." % self.path)
        event["prev_hash"] = sha256_text(lines[-1]) if lines else GENESIS
        event["hash"] = event_hash(event)
        line = canonical(event).encode("utf-8") + b"\n"
        try:
            written = os.write(self.fd, line)
            if written != len(line):
                raise OSError(errno.EIO, "short write (%d of %d bytes)" % (written, len(line)))
            os.fsync(self.fd)
        except OSError as exc:
            raise DRError(APPLY_FAILED, "Cannot append to record file %s: %s." % (self.path, exc.strerror or exc))
        self.raw += line
        return {"line": len(lines) + 1, "hash": event["hash"]}

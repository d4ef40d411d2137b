# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors raised inside module_utils (private to this collection).

Only the module wrapper (``_module.DRModule``) turns a ``DRError`` into ``fail_json``.
Codes are stable strings that playbooks and AWX job templates may match on.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Stable error codes. Add, never rename.
INVALID_ARGUMENT = "INVALID_ARGUMENT"
MISSING_LIBRARY = "MISSING_LIBRARY"
CONNECTION_FAILED = "CONNECTION_FAILED"
AUTH_FAILED = "AUTH_FAILED"
NOT_FOUND = "NOT_FOUND"
PRECONDITION_FAILED = "PRECONDITION_FAILED"
LAG_TOO_HIGH = "LAG_TOO_HIGH"
LOCKED = "LOCKED"
APPLY_FAILED = "APPLY_FAILED"
VERIFY_FAILED = "VERIFY_FAILED"
TIMEOUT = "TIMEOUT"
TARGET_NOT_REACHED = "TARGET_NOT_REACHED"
NO_BACKUP_BEFORE_TARGET = "NO_BACKUP_BEFORE_TARGET"
CHECK_FAILED = "CHECK_FAILED"
INTERNAL_ERROR = "INTERNAL_ERROR"


class DRError(Exception):
    """An error an operator can act on.

    :param code: one of the stable codes above (or a module specific one).
    :param msg: one sentence that says what is wrong and what to do.
    :param details: a dict of facts (never secrets) returned beside the message.
    :param completed_steps: steps already done when the error happened; the wrapper fills
        this in when the error escapes from a step, a provider only sets it for work it did
        outside the planned steps.
    :param reverted: True when the provider put back what it had changed.
    """

    def __init__(self, code, msg, details=None, completed_steps=None, reverted=None):
        super(DRError, self).__init__(msg)
        self.code = code
        self.msg = msg
        self.details = dict(details or {})
        self.completed_steps = list(completed_steps or [])
        self.reverted = reverted

    def __str__(self):
        return "%s: %s" % (self.code, self.msg)

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lazy third-party imports (private to this collection).

In the spirit of community.general's ``deps.declare()``: a provider file wraps its SDK
imports in ``declare()``; the import error is remembered instead of raised, and
``require()`` turns it into a ``DRError(MISSING_LIBRARY)`` whose message is Ansible's
``missing_required_lib`` text naming the exact pip package. Because provider files are
only imported by the module when that provider is selected, an SDK is only imported
when it is used::

    from ansible_collections.resilience.dr.plugins.module_utils import _deps

    with _deps.declare("boto3", pip="boto3"):
        import boto3

    def connect():
        _deps.require("boto3")
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    MISSING_LIBRARY,
)

_REGISTRY = {}


class _Dependency(object):
    def __init__(self, name, pip, reason):
        self.name = name
        self.pip = pip or name
        self.reason = reason
        self.error = None
        self.trace = None

    @property
    def ok(self):
        return self.error is None


class declare(object):
    """Context manager: record an ImportError for ``name`` instead of raising it."""

    def __init__(self, name, pip=None, reason=None):
        self.dep = _Dependency(name, pip, reason)
        _REGISTRY[name] = self.dep

    def __enter__(self):
        return self.dep

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, ImportError):
            self.dep.error = exc
            self.dep.trace = "".join(traceback.format_exception(exc_type, exc, tb))
            return True
        return False


def available(name):
    dep = _REGISTRY.get(name)
    return dep is not None and dep.ok


def require(*names):
    """Raise ``DRError(MISSING_LIBRARY)`` if any declared dependency failed to import."""
    for name in names:
        dep = _REGISTRY.get(name)
        if dep is None:
            raise DRError(
                MISSING_LIBRARY,
                "Internal error: dependency %s was never declared." % name,
            )
        if not dep.ok:
            raise DRError(
                MISSING_LIBRARY,
                missing_required_lib(dep.pip, reason=dep.reason),
                details={"library": dep.pip, "import_error": str(dep.error)},
            )

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keeping secrets out of results, records, logs and exceptions (private).

* ``mask(data)``: a copy of nested data with values under secret-looking keys replaced.
* ``scrub(data, secrets)``: a copy with every occurrence of the given secret strings
  replaced (for error texts from SDKs and drivers, which like to echo DSNs).
* ``safe_argv(argv, secrets)``: a command line as a list with secrets replaced, for the
  ``steps`` and ``plan`` of a result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

string_types = (str,)

MASK = "********"

_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)|(^|[_-])pass($|[_-])|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|"
    r"credential|auth|cookie|session[_-]?key|^key$|_key$|dsn|conn(ection)?[_-]?string)",
    re.IGNORECASE,
)
# Keys that match the pattern above but never hold a secret.
_NOT_SECRET = frozenset(
    ["key_id", "access_key_id", "aws_access_key_id", "kms_key_id", "partition_key", "sort_key",
     "auth_method", "auth_type", "token_uri", "key_name"]
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
_KV_PASSWORD = re.compile(r"((?:password|passwd|secret|token)\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)", re.IGNORECASE)


def is_secret_key(key):
    if not isinstance(key, string_types):
        return False
    if key.lower() in _NOT_SECRET:
        return False
    return bool(_SECRET_KEY.search(key))


def mask(data):
    """Copy ``data`` with the values of secret-looking keys masked (recursively)."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if is_secret_key(key) and value not in (None, "", [], {}):
                out[key] = MASK
            else:
                out[key] = mask(value)
        return out
    if isinstance(data, (list, tuple)):
        return [mask(v) for v in data]
    if isinstance(data, string_types):
        return _URL_PASSWORD.sub(r"\1" + MASK + r"\3", data)
    return data


def scrub(data, secrets=()):
    """Copy ``data`` with every occurrence of each secret string replaced by the mask,
    passwords inside URLs and ``password=...`` pairs masked too."""
    secrets = [s for s in secrets if isinstance(s, string_types) and s]
    # longest first, so a secret that contains another is fully replaced
    secrets.sort(key=len, reverse=True)

    def _one(text):
        for secret in secrets:
            text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(r"\1" + MASK + r"\3", text)
        return _KV_PASSWORD.sub(r"\1" + MASK, text)

    def _walk(value):
        if isinstance(value, dict):
            return dict((k, _walk(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return [_walk(v) for v in value]
        if isinstance(value, string_types):
            return _one(value)
        return value

    return _walk(data)


def safe_argv(argv, secrets=()):
    return [scrub(str(a), secrets) for a in argv]

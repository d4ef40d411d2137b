# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.resilience.dr.plugins.module_utils import _secrets


def test_mask_nested_secret_keys():
    data = {
        "user": "app",
        "password": "hunter2",
        "nested": [{"api_key": "k1", "region": "eu"}, {"Token": "t"}],
        "aws_access_key_id": "AKIAEXAMPLE",
        "dsn": "postgresql://app:pw@db/app",
        "note": "connect with postgresql://app:pw2@db/app",
        "empty_password": "",
    }
    out = _secrets.mask(data)
    text = json.dumps(out)
    for secret in ("hunter2", "k1", '"t"', "pw@", "pw2"):
        assert secret not in text
    assert out["user"] == "app"
    assert out["nested"][0]["region"] == "eu"
    assert out["aws_access_key_id"] == "AKIAEXAMPLE"
    assert out["empty_password"] == ""
    # the input is not modified
    assert data["password"] == "hunter2"


def test_scrub_replaces_values_anywhere():
    data = {"msg": "FATAL: password authentication failed, used s3cr3t!", "argv": ["x", "--pw=s3cr3t!"],
            "dsn": "host=db password=abc123 user=x"}
    out = _secrets.scrub(data, ["s3cr3t!", None, ""])
    text = json.dumps(out)
    assert "s3cr3t!" not in text
    assert "abc123" not in text
    assert _secrets.MASK in out["msg"]


def test_scrub_longest_first():
    out = _secrets.scrub("ab abc", ["ab", "abc"])
    assert "c" not in out.replace(_secrets.MASK, "")


def test_safe_argv():
    assert _secrets.safe_argv(["psql", "--password", "p@ss"], ["p@ss"]) == ["psql", "--password", _secrets.MASK]


def test_is_secret_key():
    assert _secrets.is_secret_key("pg_login_password")
    assert _secrets.is_secret_key("client_secret")
    assert _secrets.is_secret_key("credentials")
    assert not _secrets.is_secret_key("kms_key_id")
    assert not _secrets.is_secret_key("services")
    assert not _secrets.is_secret_key(3)
    # results, not passwords
    assert not _secrets.is_secret_key("passed")
    assert not _secrets.is_secret_key("queries_passed")
    assert not _secrets.is_secret_key("bypass_cache")
    assert _secrets.is_secret_key("db_pass")
    assert _secrets.is_secret_key("pass")

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each backend's argument spec and its doc fragment say the same thing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib

import pytest
import yaml

from ansible_collections.resilience.dr.plugins.module_utils import _connection

PREFIX = {"postgres": "pg_", "aws": "aws_", "gcp": "gcp_", "azure": "azure_",
          "kubernetes": "k8s_", "haproxy": "haproxy_"}
SECRETS = {"pg_login_password", "aws_secret_access_key", "aws_session_token", "gcp_access_token",
           "azure_client_secret", "azure_access_token", "k8s_api_key"}


@pytest.mark.parametrize("backend", sorted(_connection.SPECS))
def test_spec_matches_doc_fragment(backend):
    spec = _connection.SPECS[backend]()
    fragment = importlib.import_module(
        "ansible_collections.resilience.dr.plugins.doc_fragments.%s" % backend
    ).ModuleDocFragment
    docs = yaml.safe_load(fragment.DOCUMENTATION)["options"]
    assert sorted(spec) == sorted(docs)
    for name, opt in spec.items():
        doc = docs[name]
        assert doc["type"] == opt["type"], name
        assert doc.get("default") == opt.get("default"), name
        assert doc.get("choices") == opt.get("choices"), name
        assert doc.get("elements") == opt.get("elements"), name
        assert name.startswith(PREFIX[backend]), "%s is not prefixed %s" % (name, PREFIX[backend])


@pytest.mark.parametrize("backend", sorted(_connection.SPECS))
def test_secrets_are_no_log(backend):
    for name, opt in _connection.SPECS[backend]().items():
        if name in SECRETS:
            assert opt.get("no_log") is True, name
        else:
            assert not opt.get("no_log"), name


def test_env_fallback(monkeypatch):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    monkeypatch.setenv("PGHOST", "/run/pg")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    spec = _connection.merge_specs(_connection.postgres_spec(), _connection.aws_spec())
    result = ArgumentSpecValidator(spec).validate({})
    assert not result.error_messages
    assert result.validated_parameters["pg_login_host"] == "/run/pg"
    assert result.validated_parameters["aws_region"] == "eu-west-1"
    assert result.validated_parameters["pg_port"] == 5432


def test_merge_refuses_duplicates():
    with pytest.raises(ValueError):
        _connection.merge_specs(_connection.postgres_spec(), _connection.postgres_spec())

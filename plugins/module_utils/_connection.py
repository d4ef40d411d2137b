# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flat, prefixed connection options per backend (private to this collection).

Each function returns a fresh argument spec fragment; each has a doc fragment of the same
name in ``plugins/doc_fragments/`` (a unit test keeps the two in step). Options are flat
and prefixed (``pg_login_host``, ``aws_region``...) so that ``module_defaults`` and
group-level defaults in AWX merge per option instead of replacing a whole dict, and so
that no connection option collides with a module's own ``host`` or ``region``. Every
secret is ``no_log``; each option falls back to the environment variable its SDK uses.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import env_fallback


def _env(*names):
    return (env_fallback, list(names))


def postgres_spec():
    return dict(
        pg_login_host=dict(type="str", fallback=_env("PGHOST")),
        pg_port=dict(type="int", default=5432, fallback=_env("PGPORT")),
        pg_login_user=dict(type="str", default="postgres", fallback=_env("PGUSER")),
        pg_login_password=dict(type="str", no_log=True, fallback=_env("PGPASSWORD")),
        pg_database=dict(type="str", default="postgres", fallback=_env("PGDATABASE")),
        pg_ssl_mode=dict(
            type="str",
            default="prefer",
            choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
            fallback=_env("PGSSLMODE"),
        ),
        pg_ca_cert=dict(type="path", fallback=_env("PGSSLROOTCERT")),
        pg_connect_timeout=dict(type="int", default=10, fallback=_env("PGCONNECT_TIMEOUT")),
    )


def aws_spec():
    return dict(
        aws_region=dict(type="str", fallback=_env("AWS_REGION", "AWS_DEFAULT_REGION")),
        aws_access_key_id=dict(type="str", no_log=False, fallback=_env("AWS_ACCESS_KEY_ID")),
        aws_secret_access_key=dict(type="str", no_log=True, fallback=_env("AWS_SECRET_ACCESS_KEY")),
        aws_session_token=dict(type="str", no_log=True, fallback=_env("AWS_SESSION_TOKEN")),
        aws_profile=dict(type="str", fallback=_env("AWS_PROFILE")),
        aws_endpoint_url=dict(type="str", fallback=_env("AWS_ENDPOINT_URL")),
        aws_validate_certs=dict(type="bool", default=True),
    )


def gcp_spec():
    return dict(
        gcp_project=dict(type="str", fallback=_env("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")),
        gcp_credentials_file=dict(type="path", fallback=_env("GOOGLE_APPLICATION_CREDENTIALS")),
        gcp_access_token=dict(type="str", no_log=True, fallback=_env("GOOGLE_OAUTH_ACCESS_TOKEN")),
        gcp_endpoint=dict(type="str"),
        gcp_scopes=dict(
            type="list",
            elements="str",
            default=["https://www.googleapis.com/auth/cloud-platform"],
        ),
    )


def azure_spec():
    return dict(
        azure_subscription_id=dict(type="str", fallback=_env("AZURE_SUBSCRIPTION_ID")),
        azure_tenant_id=dict(type="str", fallback=_env("AZURE_TENANT_ID")),
        azure_client_id=dict(type="str", fallback=_env("AZURE_CLIENT_ID")),
        azure_client_secret=dict(type="str", no_log=True, fallback=_env("AZURE_CLIENT_SECRET")),
        azure_access_token=dict(type="str", no_log=True, fallback=_env("AZURE_ACCESS_TOKEN")),
        azure_resource_manager_endpoint=dict(type="str", default="https://management.azure.com"),
    )


def kubernetes_spec():
    return dict(
        k8s_kubeconfig=dict(type="path", fallback=_env("K8S_AUTH_KUBECONFIG", "KUBECONFIG")),
        k8s_context=dict(type="str", fallback=_env("K8S_AUTH_CONTEXT")),
        k8s_host=dict(type="str", fallback=_env("K8S_AUTH_HOST")),
        k8s_api_key=dict(type="str", no_log=True, fallback=_env("K8S_AUTH_API_KEY")),
        k8s_validate_certs=dict(type="bool", default=True),
        k8s_ca_cert=dict(type="path", fallback=_env("K8S_AUTH_SSL_CA_CERT")),
    )


def haproxy_spec():
    return dict(
        haproxy_socket=dict(type="str", fallback=_env("HAPROXY_SOCKET")),
        haproxy_timeout=dict(type="float", default=5.0),
    )


SPECS = {
    "postgres": postgres_spec,
    "aws": aws_spec,
    "gcp": gcp_spec,
    "azure": azure_spec,
    "kubernetes": kubernetes_spec,
    "haproxy": haproxy_spec,
}


def merge_specs(*specs):
    """Merge argument spec fragments, refusing a name defined twice."""
    out = {}
    for spec in specs:
        for name, opt in spec.items():
            if name in out:
                raise ValueError("option %s defined twice" % name)
            out[name] = opt
    return out

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read -> plan -> (check) -> apply -> verify flow of DRModule."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest


from ansible_collections.resilience.dr.plugins.module_utils._module import DRModule, Provider, Step
from ansible_collections.resilience.dr.plugins.module_utils._errors import DRError
from modrun import run_main  # pylint: disable=import-error


SPEC = dict(
    desired=dict(type="dict", required=True),
    password=dict(type="str", no_log=True),
    fail_at=dict(type="str"),
    revert=dict(type="bool", default=True),
    verify_ok=dict(type="bool", default=True),
)


class DictProvider(Provider):
    """Keeps a dict in line with ``desired``, one step per key."""

    name = "dict"
    store = {}

    def read(self):
        if self.params["password"] == "wrong":
            raise DRError("AUTH_FAILED", "Login refused with password %s." % self.params["password"])
        return dict(self.store)

    def plan(self, current):
        steps = []
        for key, value in sorted(self.params["desired"].items()):
            if current.get(key) != value:
                steps.append(Step("set", key, run=self._setter(key, value), value=value))
        return steps

    def _setter(self, key, value):
        def run():
            self.result["last_key"] = key
            if key == self.params["fail_at"]:
                raise DRError("APPLY_FAILED", "Could not set %s." % key)
            self.store[key] = value
            return {"set": key}
        return run

    def predict(self, current, steps):
        out = dict(current)
        out.update(self.params["desired"])
        return out

    def verify(self, current, steps):
        if not self.params["verify_ok"]:
            raise DRError("VERIFY_FAILED", "Read back something else.")
        return self.read()

    def on_failure(self, current, done_steps, error):
        if not self.params["revert"]:
            return None
        self.store.clear()
        self.store.update(current)
        return True


def _dict_module():
    module = DRModule(argument_spec=SPEC, supports_check_mode=True)
    module.run_provider(DictProvider(module))


def run(args, check=False, diff=False):
    return run_main(_dict_module, args, check, diff)


@pytest.fixture(autouse=True)
def clean_store():
    DictProvider.store.clear()
    yield
    DictProvider.store.clear()


def test_check_mode_plans_the_same_steps_the_real_run_takes(captured):
    DictProvider.store.update({"a": 1})
    dry = run({"desired": {"a": 1, "b": 2, "c": 3}}, check=True, diff=True)
    assert dry.kind == "exit"
    assert DictProvider.store == {"a": 1}, "check mode changed the state"
    assert dry.payload["changed"] is True
    assert [(s["action"], s["target"], s["status"]) for s in dry.payload["steps"]] == [
        ("set", "b", "planned"), ("set", "c", "planned")]
    assert dry.payload["diff"]["after"] == {"a": 1, "b": 2, "c": 3}

    real = run({"desired": {"a": 1, "b": 2, "c": 3}})
    assert real.kind == "exit"
    assert DictProvider.store == {"a": 1, "b": 2, "c": 3}
    assert [(s["action"], s["target"]) for s in real.payload["steps"]] == [
        (s["action"], s["target"]) for s in dry.payload["steps"]]
    for step in real.payload["steps"]:
        assert step["status"] == "done"
        assert step["started_at"].endswith("Z")
        assert step["seconds"] >= 0
    assert real.payload["before"] == {"a": 1}
    assert real.payload["after"] == {"a": 1, "b": 2, "c": 3}


def test_second_run_is_idempotent(captured):
    run({"desired": {"a": 1}})
    again = run({"desired": {"a": 1}})
    assert again.payload["changed"] is False
    assert again.payload["steps"] == []
    dry = run({"desired": {"a": 1}}, check=True)
    assert dry.payload["changed"] is False


def test_failed_step_reverts_and_reports_where_it_stopped(captured):
    DictProvider.store.update({"a": 0})
    out = run({"desired": {"a": 1, "b": 2, "c": 3}, "fail_at": "c"})
    assert out.kind == "fail"
    assert out.payload["error"] == "APPLY_FAILED"
    assert [s["target"] for s in out.payload["completed_steps"]] == ["a", "b"]
    assert out.payload["failed_step"]["target"] == "c"
    assert out.payload["reverted"] is True
    assert "reverted" in out.payload["msg"]
    assert out.payload["changed"] is False
    assert DictProvider.store == {"a": 0}
    # what the provider gathered before the failure is returned with it
    assert out.payload["last_key"] == "c"


def test_failed_step_without_revert_says_so(captured):
    out = run({"desired": {"a": 1, "b": 2}, "fail_at": "b", "revert": False})
    assert out.payload["error"] == "APPLY_FAILED"
    assert out.payload["changed"] is True
    assert "1 step(s) had completed" in out.payload["msg"]
    assert DictProvider.store == {"a": 1}


def test_failing_first_step_changed_nothing(captured):
    out = run({"desired": {"a": 1}, "fail_at": "a"})
    assert out.payload["error"] == "APPLY_FAILED"
    assert "Nothing was changed" in out.payload["msg"]
    assert out.payload["completed_steps"] == []


def test_verify_failure_reverts(captured):
    out = run({"desired": {"a": 1}, "verify_ok": False})
    assert out.payload["error"] == "VERIFY_FAILED"
    assert out.payload["reverted"] is True
    assert out.payload["failed_step"] is None
    assert DictProvider.store == {}


def test_preflight_error_hides_the_password(captured):
    out = run({"desired": {"a": 1}, "password": "wrong"})
    assert out.kind == "fail"
    assert out.payload["error"] == "AUTH_FAILED"
    assert "wrong" not in json.dumps(out.payload)
    assert "Nothing was changed" in out.payload["msg"]


def test_unexpected_exception_is_internal_error(captured, monkeypatch):
    def boom(self):
        raise RuntimeError("kaput")
    monkeypatch.setattr(DictProvider, "read", boom)
    out = run({"desired": {"a": 1}})
    assert out.payload["error"] == "INTERNAL_ERROR"
    assert "kaput" in out.payload["msg"]
    assert "exception" in out.payload


def test_step_serialisation_never_includes_the_callable():
    step = Step("promote", "replica", run=lambda: None, lsn="0/1")
    data = step.to_dict()
    json.dumps(data)
    assert data["detail"] == {"lsn": "0/1"}
    assert step.key() == ("promote", "replica")

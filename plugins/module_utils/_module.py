# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module wrapper that owns the flow of every resilience.dr module (private).

::

    read current state -> plan (desired vs current) -> [check mode: stop, return the plan]
                       -> apply each planned step -> verify -> exit_json

Providers never look at ``check_mode``: they describe what they would do as a list of
``Step`` objects, each carrying the callable that does it. In check mode the wrapper
returns the steps unrun; in a real run it runs the same list, so a dry run and a real run
from the same starting state report the same steps.

A provider raises ``DRError`` for anything an operator must act on. The wrapper adds the
steps already done, asks the provider to put back what it can (``on_failure``), and
calls ``fail_json(msg=..., error=CODE, completed_steps=[...], failed_step=..., reverted=...)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INTERNAL_ERROR,
)
from ansible_collections.resilience.dr.plugins.module_utils import _secrets
from ansible_collections.resilience.dr.plugins.module_utils import _time


class Step(object):
    """One action of a plan.

    :param action: a short stable verb phrase (``set_server_state``, ``pg_promote``).
    :param target: what it acts on (a server, a file, an instance id).
    :param run: a callable ``run()`` doing the action; its return value (a dict or None)
        is kept as the step's ``result``. Not serialised.
    :param detail: facts describing the action (SQL templates, argv lists with secrets
        already replaced, desired values). Must never hold secrets.
    """

    def __init__(self, action, target=None, run=None, **detail):
        self.action = action
        self.target = target
        self.run = run
        self.detail = detail
        self.status = "planned"
        self.started_at = None
        self.seconds = None
        self.result = None

    def key(self):
        """What must be equal between a dry run and a real run."""
        return (self.action, self.target)

    def to_dict(self):
        out = {"action": self.action, "target": self.target, "status": self.status}
        if self.detail:
            out["detail"] = copy.deepcopy(self.detail)
        out["started_at"] = self.started_at
        out["seconds"] = self.seconds
        if self.result is not None:
            out["result"] = self.result
        return out


class Provider(object):
    """Base class of a provider: one backend of one operation.

    Subclasses implement ``read`` and ``plan`` and usually ``verify``; they may fill
    ``self.result`` with extra return values and ``self.secrets`` with strings to keep
    out of every output.
    """

    #: name used in messages
    name = "provider"

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.result = {}
        self.secrets = list(module.secret_values())

    # -- contract -------------------------------------------------------------------
    def read(self):
        """Return the current state as a JSON-able dict. Preflight checks go here."""
        raise NotImplementedError

    def plan(self, current):
        """Return the list of ``Step`` that brings ``current`` to the desired state.
        An empty list means nothing to do (``changed: false``)."""
        raise NotImplementedError

    def predict(self, current, steps):
        """The state expected after ``steps`` (used for ``after`` and ``diff`` in check
        mode). Defaults to None: unknown until applied."""
        return None

    def verify(self, current, steps):
        """Called after the steps ran; return the state read back. Raise DRError
        (usually VERIFY_FAILED) when it is not what was planned."""
        return self.read()

    def on_failure(self, current, done_steps, error):
        """Called when a step or verify failed after ``done_steps`` ran. Put back what can
        be put back and return True when everything was reverted, False when it was
        tried and did not fully work, None when nothing was attempted."""
        return None

    def close(self):
        """Release connections, locks, temporary files."""


class DRModule(AnsibleModule):
    """AnsibleModule that runs a Provider through the read/plan/apply/verify flow."""

    def __init__(self, *args, **kwargs):
        super(DRModule, self).__init__(*args, **kwargs)
        self._started = _time.monotonic()

    # -- helpers -------------------------------------------------------------------
    def secret_values(self):
        """Every value given to a no_log option (strings only)."""
        out = []
        for name, spec in self.argument_spec.items():
            if spec.get("no_log") and isinstance(self.params.get(name), str) and self.params.get(name):
                out.append(self.params[name])
        return out

    def fail_error(self, error, **extra):
        """``fail_json`` for a DRError, with secrets scrubbed."""
        secrets = self.secret_values() + list(extra.pop("_secrets", []))
        payload = dict(extra)
        payload.update(error.details)
        payload["error"] = error.code
        payload["completed_steps"] = error.completed_steps
        if error.reverted is not None:
            payload["reverted"] = error.reverted
        payload = _secrets.scrub(payload, secrets)
        self.fail_json(msg=_secrets.scrub(error.msg, secrets), **payload)

    # -- the flow ------------------------------------------------------------------
    def run_provider(self, provider):
        """Run ``provider`` and exit. Never returns."""
        try:
            result = self._run(provider)
        except DRError as error:
            extra = getattr(error, "_extra", None)
            if extra is None:
                # raised by read() or plan(): nothing has been done yet
                extra = {"changed": False}
                error.msg = error.msg.rstrip() + " Nothing was changed."
            provider.close()
            # what the provider had gathered (previous routing, undo...) is returned on failure too
            payload = dict(provider.result)
            payload.update(extra)
            self.fail_error(error, _secrets=provider.secrets, **payload)
        except Exception as exc:  # pylint: disable=broad-except
            provider.close()
            error = DRError(
                INTERNAL_ERROR,
                "Unexpected error in the %s provider: %s. Nothing further was done; see "
                "'exception' for the trace." % (provider.name, exc),
            )
            self.fail_error(error, exception=traceback.format_exc(), _secrets=provider.secrets)
        provider.close()
        self.exit_json(**_secrets.scrub(result, provider.secrets))

    def _run(self, provider):
        before = provider.read()
        steps = provider.plan(before) or []
        changed = bool(steps)
        result = {
            "changed": changed,
            "before": before,
            "plan": [s.to_dict() for s in steps],
            "check_mode": bool(self.check_mode),
        }
        if not changed:
            result["after"] = before
            result["steps"] = []
            result.update(provider.result)
            result["seconds"] = round(_time.monotonic() - self._started, 3)
            return result

        if self.check_mode:
            after = provider.predict(before, steps)
            result["after"] = after
            result["steps"] = [s.to_dict() for s in steps]
            if self._diff:
                result["diff"] = {"before": before, "after": after if after is not None else {}}
            result.update(provider.result)
            result["seconds"] = round(_time.monotonic() - self._started, 3)
            return result

        done = []
        for step in steps:
            step.started_at = _time.now_iso()
            t0 = time.monotonic()
            step.status = "running"
            try:
                step.result = step.run() if step.run is not None else None
            except DRError as error:
                step.seconds = round(time.monotonic() - t0, 3)
                step.status = "failed"
                self._fail_during(provider, before, steps, done, step, error)
            except Exception as exc:  # pylint: disable=broad-except
                step.seconds = round(time.monotonic() - t0, 3)
                step.status = "failed"
                error = DRError(
                    INTERNAL_ERROR,
                    "Step %s on %s failed unexpectedly: %s." % (step.action, step.target, exc),
                    details={"exception": traceback.format_exc()},
                )
                self._fail_during(provider, before, steps, done, step, error)
            step.seconds = round(time.monotonic() - t0, 3)
            step.status = "done"
            done.append(step)

        try:
            after = provider.verify(before, done)
        except DRError as error:
            self._fail_during(provider, before, steps, done, None, error)

        result["after"] = after
        result["steps"] = [s.to_dict() for s in done]
        if self._diff:
            result["diff"] = {"before": before, "after": after}
        result.update(provider.result)
        result["seconds"] = round(_time.monotonic() - self._started, 3)
        return result

    def _fail_during(self, provider, before, steps, done, failed_step, error):
        reverted = error.reverted
        if done and reverted is None:
            try:
                reverted = provider.on_failure(before, done, error)
            except Exception as exc:  # pylint: disable=broad-except
                reverted = False
                error.details["revert_error"] = str(exc)
        error.completed_steps = [s.to_dict() for s in done] + error.completed_steps
        error.reverted = reverted
        msg = error.msg
        if done:
            if reverted is True:
                msg += " The %d completed step(s) were reverted." % len(done)
            elif reverted is False:
                msg += " Reverting the %d completed step(s) did not fully succeed; see completed_steps." % len(done)
            else:
                msg += " %d step(s) had completed before it; see completed_steps." % len(done)
        else:
            msg += " Nothing was changed."
        error.msg = msg
        error._extra = {
            "failed_step": failed_step.to_dict() if failed_step is not None else None,
            "plan": [s.to_dict() for s in steps],
            "changed": bool(done) and reverted is not True,
        }
        raise error

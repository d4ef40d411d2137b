# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pieces of the traffic_switch providers (private to this collection).

* The routing model: a dict ``{target: share}`` of percentages (``active: green`` is
  ``{green: 100, <every other target>: 0}``).
* ``TrafficProvider``: the base class every traffic provider extends. A subclass implements
  ``read_state()`` (returns ``(routing, detail)``), ``plan_changes(current, desired)`` and
  ``restore(current)``; the base class turns that into the DRModule contract: ``previous``,
  ``undo`` and ``routing`` return values, the read-back check and the HTTP/TCP ``verify``
  after applying, and the automatic revert on failure.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import socket
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    INVALID_ARGUMENT,
    NOT_FOUND,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider
from ansible_collections.resilience.dr.plugins.module_utils import _time

#: shares closer than this (in percent) are the same routing
TOLERANCE = 0.5

VERIFY_SPEC = dict(
    url=dict(type="str"),
    host=dict(type="str"),
    port=dict(type="int"),
    status=dict(type="list", elements="int", default=[200]),
    body_regex=dict(type="str"),
    retries=dict(type="int", default=5),
    delay=dict(type="str", default="1s"),
    timeout=dict(type="str", default="5s"),
    validate_certs=dict(type="bool", default=True),
)


# -- routing helpers -----------------------------------------------------------------------
def validate_desired(active, weights):
    """Check ``active``/``weights`` (exactly one given) and return the desired shares of the
    targets named in them: ``{target: int}`` summing to 100."""
    if (active is None) == (weights is None):
        raise DRError(INVALID_ARGUMENT, "Give exactly one of active (one target gets all traffic) or weights (target: percent).")
    if active is not None:
        if not isinstance(active, str) or not active.strip():
            raise DRError(INVALID_ARGUMENT, "active must name a target.")
        return {active: 100}
    if not isinstance(weights, dict) or not weights:
        raise DRError(INVALID_ARGUMENT, "weights must be a non-empty mapping of target to percent.")
    out = {}
    for name, value in weights.items():
        if isinstance(value, bool):
            raise DRError(INVALID_ARGUMENT, "weights.%s must be a whole number of percent, not a boolean." % name)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or value < 0 or value > 100:
            raise DRError(INVALID_ARGUMENT, "weights.%s must be a whole number of percent between 0 and 100 (got %r)." % (name, value))
        out[str(name)] = int(value)
    total = sum(out.values())
    if total != 100:
        raise DRError(
            INVALID_ARGUMENT,
            "weights must sum to 100 but %s sum to %d." % (", ".join("%s=%d" % kv for kv in sorted(out.items())), total),
            details={"weights": out, "sum": total},
        )
    return out


def expand_desired(desired, known, what="target"):
    """Desired shares over every known target (unnamed ones get 0). Unknown names raise
    NOT_FOUND before anything is done."""
    unknown = sorted(set(desired) - set(known))
    if unknown:
        raise DRError(
            NOT_FOUND,
            "Unknown %s %s; known: %s." % (what, ", ".join(unknown), ", ".join(sorted(known)) or "none"),
            details={"unknown": unknown, "known": sorted(known)},
        )
    return dict((name, desired.get(name, 0)) for name in known)


def shares(raw):
    """``{target: weight >= 0}`` -> percent shares (floats rounded to 2 places; all 0 when
    every weight is 0)."""
    total = float(sum(raw.values()))
    if total <= 0:
        return dict((name, 0) for name in raw)
    out = {}
    for name, value in raw.items():
        share = round(value * 100.0 / total, 2)
        out[name] = int(share) if float(share).is_integer() else share
    return out


def same_routing(current, desired):
    names = set(current) | set(desired)
    return all(abs(float(current.get(n, 0)) - float(desired.get(n, 0))) < TOLERANCE for n in names)


def to_percent(routing):
    """Whole percents summing to 100 (largest remainder) for ``undo``."""
    total = float(sum(routing.values()))
    if total <= 0:
        return dict((n, 0) for n in routing)
    exact = dict((n, v * 100.0 / total) for n, v in routing.items())
    out = dict((n, int(v)) for n, v in exact.items())
    rest = 100 - sum(out.values())
    for name in sorted(exact, key=lambda n: (-(exact[n] - out[n]), n))[:rest]:
        out[name] += 1
    return out


def undo_args(params, routing, context_options):
    """Module arguments that bring ``routing`` back."""
    args = {"provider": params["provider"]}
    for name in context_options:
        if params.get(name) is not None:
            args[name] = params[name]
    percent = to_percent(routing)
    up = [n for n, v in percent.items() if v > 0]
    if len(up) == 1 and percent[up[0]] == 100:
        args["active"] = up[0]
    elif up:
        args["weights"] = percent
    else:
        args["weights"] = None
    return args


# -- verify --------------------------------------------------------------------------------
def _check_http(conf, timeout):
    # imported here: urllib.request pulls in ssl, http.client and email (tens of milliseconds at
    # every module start), and only the HTTP verify needs them
    import ssl  # pylint: disable=import-outside-toplevel
    from urllib.error import HTTPError, URLError  # pylint: disable=import-outside-toplevel
    from urllib.request import Request, build_opener, HTTPSHandler, HTTPHandler  # pylint: disable=import-outside-toplevel

    url = conf["url"]
    handlers = [HTTPHandler()]
    if url.lower().startswith("https") and not conf.get("validate_certs", True):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        handlers.append(HTTPSHandler(context=ctx))
    opener = build_opener(*handlers)
    req = Request(url, headers={"Connection": "close", "User-Agent": "resilience.dr traffic_switch verify"})
    try:
        resp = opener.open(req, timeout=timeout)
        status = resp.getcode()
        body = resp.read(1048576)
    except HTTPError as exc:
        status = exc.code
        body = exc.read(1048576) if hasattr(exc, "read") else b""
    except (URLError, socket.error, socket.timeout) as exc:
        return False, "GET %s failed: %s" % (url, getattr(exc, "reason", exc))
    text = body.decode("utf-8", "replace")
    if status not in (conf.get("status") or [200]):
        return False, "GET %s answered %s, expected %s" % (url, status, conf.get("status") or [200])
    if conf.get("body_regex") and not re.search(conf["body_regex"], text):
        return False, "GET %s answered %s but the body does not match %r: %r" % (url, status, conf["body_regex"], text[:200])
    return True, "GET %s answered %s" % (url, status)


def _check_tcp(conf, timeout):
    try:
        sock = socket.create_connection((conf["host"], conf["port"]), timeout=timeout)
        sock.close()
    except (socket.error, socket.timeout) as exc:
        return False, "TCP %s:%s failed: %s" % (conf["host"], conf["port"], exc)
    return True, "TCP %s:%s accepted a connection" % (conf["host"], conf["port"])


def check_verify_conf(conf):
    if not conf:
        return None
    if not conf.get("url") and not (conf.get("host") and conf.get("port")):
        raise DRError(INVALID_ARGUMENT, "verify needs a url, or a host and a port for a TCP check.")
    if conf.get("retries") is not None and conf["retries"] < 0:
        raise DRError(INVALID_ARGUMENT, "verify.retries must not be negative.")
    _time.parse_duration(conf.get("delay"), "verify.delay")
    _time.parse_duration(conf.get("timeout"), "verify.timeout")
    if conf.get("body_regex"):
        try:
            re.compile(conf["body_regex"])
        except re.error as exc:
            raise DRError(INVALID_ARGUMENT, "verify.body_regex is not a valid regular expression: %s." % exc)
    return conf


def run_verify(conf, sleep=time.sleep):
    """Run the HTTP/TCP check until it passes (1 + retries attempts). Return a summary;
    raise VERIFY_FAILED with the last answer."""
    timeout = _time.parse_duration(conf.get("timeout") or "5s", "verify.timeout")
    delay = _time.parse_duration(conf.get("delay") or "1s", "verify.delay")
    attempts = 1 + int(conf.get("retries") or 0)
    messages = []
    for attempt in range(1, attempts + 1):
        if conf.get("url"):
            ok, message = _check_http(conf, timeout)
        else:
            ok, message = _check_tcp(conf, timeout)
        messages.append(message)
        if ok:
            return {"passed": True, "attempts": attempt, "message": message}
        if attempt < attempts:
            sleep(delay)
    raise DRError(
        VERIFY_FAILED,
        "Verification failed after %d attempt(s): %s." % (attempts, messages[-1]),
        details={"verify": {"passed": False, "attempts": attempts, "messages": messages[-5:]}},
    )


# -- base provider -------------------------------------------------------------------------
class TrafficProvider(Provider):
    """Base of the traffic_switch providers.

    Subclasses set ``context_options`` (their options copied into ``undo``) and implement:

    * ``read_state()`` -> ``(routing, detail)``: routing as percent shares of every known
      target, detail the provider's exact state (returned as ``before.detail``);
    * ``plan_changes(current, desired)`` -> list of Step; ``current`` is what read() returned
      and ``desired`` the shares over every known target;
    * ``restore(current)``: put the exact state of ``current`` back (used by the revert).
    """

    context_options = ()

    def __init__(self, module):
        super(TrafficProvider, self).__init__(module)
        self.requested = validate_desired(self.params.get("active"), self.params.get("weights"))
        self.verify_conf = check_verify_conf(self.params.get("verify"))
        self.desired = None

    # subclass hooks
    def read_state(self):
        raise NotImplementedError

    def plan_changes(self, current, desired):
        raise NotImplementedError

    def restore(self, current):
        raise NotImplementedError

    def known_targets(self, routing):
        return list(routing)

    def target_what(self):
        """How an unknown target is named in NOT_FOUND (``server of HAProxy backend web``)."""
        return "target"

    # contract
    def read(self):
        routing, detail = self.read_state()
        current = {"routing": routing, "detail": detail}
        if self.desired is None:
            self.desired = expand_desired(self.requested, self.known_targets(routing), self.target_what())
            self.result["previous"] = routing
            self.result["undo"] = undo_args(self.params, routing, self.context_options)
            self.result["routing"] = routing
        return current

    def plan(self, current):
        return self.plan_changes(current, self.desired)

    def predict(self, current, steps):
        after = {"routing": dict(self.desired), "detail": None}
        self.result["routing"] = dict(self.desired)
        return after

    def verify(self, current, steps):
        after = self.read()
        self.result["routing"] = after["routing"]
        if not same_routing(after["routing"], self.desired):
            raise DRError(
                VERIFY_FAILED,
                "The %s routing read back after the change is %s, not the requested %s." % (self.name, after["routing"], self.desired),
                details={"routing": after["routing"]},
            )
        if self.verify_conf:
            self.result["verify"] = run_verify(self.verify_conf)
        return after

    def on_failure(self, current, done_steps, error):
        error.details.setdefault("previous", self.result.get("previous"))
        error.details.setdefault("undo", self.result.get("undo"))
        if not self.params.get("revert_on_failure", True):
            return None
        self.restore(current)
        back = self.read()
        self.result["routing"] = back["routing"]
        error.details["routing"] = back["routing"]
        return same_routing(back["routing"], current["routing"])

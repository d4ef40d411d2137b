# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""replica_promote, provider ``patroni``: promote a member of a Patroni cluster through
Patroni's REST API, never behind its back (private).

* read: ``GET /cluster`` from the first answering URL of ``patroni_url`` (any member: the
  answer comes from the DCS). The candidate must be a member; a pending scheduled
  switchover/failover is ``LOCKED``; the lag guard takes the largest of the candidate's
  ``lag``, ``receive_lag`` and ``replay_lag`` (bytes behind the leader's last LSN in the DCS),
  unknown counting as too high.
* plan: ``POST /switchover`` ``{"leader", "candidate"}`` when a leader is running (planned,
  the old leader is stopped cleanly first), ``POST /failover`` ``{"candidate"}`` when none is
  (or ``patroni_mode: failover``); then ``wait_for_leader``.
* verify: ``/cluster`` shows the candidate as ``leader``, ``running``, on a later timeline.

The HTTP client is ansible's ``open_url``: no third-party library.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import http.client
import json
import socket
import ssl
import time
from urllib.error import HTTPError, URLError
from urllib.request import HTTPRedirectHandler, HTTPSHandler, Request, build_opener

from ansible_collections.resilience.dr.plugins.module_utils import _time
from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    APPLY_FAILED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    DRError,
    INVALID_ARGUMENT,
    LAG_TOO_HIGH,
    LOCKED,
    NOT_FOUND,
    PRECONDITION_FAILED,
    TIMEOUT,
    VERIFY_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Provider, Step

#: member states in which a replica can take over (Patroni's PostgresqlState values)
HEALTHY_REPLICA_STATES = ("streaming", "running", "in archive recovery")
LEADER_ROLES = ("leader", "standby_leader")
#: the keys of a /cluster member that are kept
MEMBER_KEYS = ("name", "role", "state", "host", "port", "timeline", "lag", "receive_lag", "replay_lag", "lsn",
               "replay_lsn", "tags")


def normalise_url(url):
    url = (url or "").strip().rstrip("/")
    if url.endswith("/patroni"):  # the api_url members advertise
        url = url[:-len("/patroni")]
    if not url.startswith(("http://", "https://")):
        raise DRError(INVALID_ARGUMENT, "patroni_url %r must start with http:// or https://." % url)
    return url


def lag_of(member):
    """Largest known lag in bytes of a member (None when Patroni reports none or 'unknown')."""
    values = []
    for key in ("lag", "receive_lag", "replay_lag"):
        value = member.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            values.append(int(value))
        elif value not in (None, "unknown"):
            try:
                values.append(int(value))
            except (TypeError, ValueError):
                pass
    return max(values) if values else None


def summarise(body):
    """The parts of ``GET /cluster`` the provider reasons about."""
    members = []
    for m in body.get("members") or []:
        members.append(dict((k, m[k]) for k in MEMBER_KEYS if k in m))
    leader = next((m for m in members if m.get("role") in LEADER_ROLES), None)
    return {
        "scope": body.get("scope"),
        "members": members,
        "leader": leader["name"] if leader else None,
        "leader_state": leader.get("state") if leader else None,
        "leader_healthy": bool(leader and leader.get("state") == "running"),
        "timeline": leader.get("timeline") if leader else max([m.get("timeline") or 0 for m in members] or [0]) or None,
        "paused": bool(body.get("pause")),
        "scheduled_switchover": body.get("scheduled_switchover"),
    }


class _NoRedirect(HTTPRedirectHandler):
    """Patroni never redirects; a 3xx comes back as an HTTPError with its status."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def open_url(url, data=None, method="GET", headers=None, url_username=None, url_password=None, validate_certs=True,
             ca_path=None, timeout=10):
    """One HTTP(S) request with the standard library (ansible's ``urls`` costs every module build 56 kB to
    parse); basic auth is sent up front when ``url_username`` is set, redirects are not followed."""
    headers = dict(headers or {})
    if url_username:
        token = ("%s:%s" % (url_username, url_password or "")).encode("utf-8")
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    context = ssl.create_default_context(cafile=ca_path) if url.startswith("https:") else None
    if context is not None and not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    opener = build_opener(HTTPSHandler(context=context), _NoRedirect) if context else build_opener(_NoRedirect)
    body = data.encode("utf-8") if isinstance(data, str) else data
    return opener.open(Request(url, data=body, headers=headers, method=method), timeout=timeout)


class PatroniPromote(Provider):
    """Switch over, or fail over, a Patroni cluster to a named member."""

    name = "patroni"
    poll_interval = 0.5

    def __init__(self, module):
        super(PatroniPromote, self).__init__(module)
        p = self.params
        self.urls = []
        self.candidate = p.get("candidate")
        self.mode = p.get("patroni_mode") or "auto"
        self.action = None
        self.timeout = None
        self.post_answer = None

    # -- http -----------------------------------------------------------------------------
    def call(self, method, path, body=None, timeout=10, urls_to_try=None):
        """One REST call, trying each URL until one answers; returns (status, body, url)."""
        p = self.params
        data = json.dumps(body) if body is not None else None
        problems = []
        for base in urls_to_try or self.urls:
            try:
                resp = open_url(base + path, data=data, method=method, timeout=timeout,
                                headers={"Content-Type": "application/json", "Accept": "application/json"},
                                url_username=p.get("patroni_username"), url_password=p.get("patroni_password"),
                                validate_certs=p.get("patroni_validate_certs", True), ca_path=p.get("patroni_ca_cert"))
                status, raw = resp.getcode(), resp.read()
            except HTTPError as exc:
                status, raw = exc.code, exc.read() if hasattr(exc, "read") else b""
            except (URLError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                if method != "GET" and (isinstance(reason, socket.timeout) or "timed out" in str(reason)):
                    # the request may have been taken: never send it to a second member
                    return 0, "no answer within %ss (%s)" % (timeout, reason), base
                problems.append("%s: %s" % (base, reason))
                continue
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
            try:
                parsed = json.loads(text) if text else {}
            except ValueError:
                parsed = text.strip()
            if status == 401:
                raise DRError(AUTH_FAILED, "Patroni at %s refused %s %s (HTTP 401); check patroni_username and "
                              "patroni_password (restapi.authentication)." % (base, method, path))
            if status == 403:
                raise DRError(AUTH_FAILED, "Patroni at %s forbids %s %s (HTTP 403); check restapi.allowlist and the "
                              "client certificate settings." % (base, method, path))
            return status, parsed, base
        raise DRError(CONNECTION_FAILED, "No Patroni REST API answered %s %s (%s); check patroni_url and that Patroni "
                      "runs." % (method, path, "; ".join(problems)))

    def get_cluster(self):
        status, body, base = self.call("GET", "/cluster")
        if status != 200 or not isinstance(body, dict) or "members" not in body:
            raise DRError(APPLY_FAILED, "Patroni at %s answered GET /cluster with HTTP %s and no member list; is it "
                          "Patroni's REST API?" % (base, status))
        return summarise(body)

    # -- read -----------------------------------------------------------------------------
    def read(self):
        p = self.params
        if not p.get("patroni_url"):
            raise DRError(INVALID_ARGUMENT, "provider patroni needs patroni_url (the REST API of any member, "
                          "e.g. http://db1:8008).")
        if not self.candidate:
            raise DRError(INVALID_ARGUMENT, "provider patroni needs candidate (the Patroni member name to promote).")
        if p.get("patroni_password") and not p.get("patroni_username"):
            raise DRError(INVALID_ARGUMENT, "patroni_password needs patroni_username.")
        self.urls = [normalise_url(u) for u in p["patroni_url"]]
        self.timeout = _time.parse_duration(p.get("promote_timeout"), "promote_timeout")
        state = self.get_cluster()
        names = [m["name"] for m in state["members"]]
        self.result.update(provider="patroni", candidate=self.candidate, old_leader=state["leader"], new_leader=None,
                           promoted=False, already_primary=False, allow_data_loss=bool(p["allow_data_loss"]),
                           reason=p.get("reason"), data_loss_bytes=None, timeline_before=state["timeline"],
                           timeline_after=None,
                           data_loss_note="not measured through Patroni's REST API; see lag for the candidate's lag "
                                          "before the promotion (a switchover stops the old leader cleanly first)")
        member = next((m for m in state["members"] if m["name"] == self.candidate), None)
        if member is None:
            raise DRError(NOT_FOUND, "Patroni cluster %s has no member named %s (members: %s); check candidate."
                          % (state["scope"], self.candidate, ", ".join(names) or "none"), details={"members": names})
        state["candidate"] = member
        if member.get("role") in LEADER_ROLES:
            if member.get("state") != "running":
                raise DRError(PRECONDITION_FAILED, "Member %s holds the leader lock but its PostgreSQL is %s, not "
                              "running; look at Patroni's log on it." % (self.candidate, member.get("state")))
            self.result.update(already_primary=True, new_leader=self.candidate, mode=None)
            return state
        if state["scheduled_switchover"]:
            sched = state["scheduled_switchover"]
            raise DRError(LOCKED, "Patroni cluster %s has a switchover scheduled at %s (from %s to %s); cancel it "
                          "(patronictl flush %s switchover) or wait for it, then run again."
                          % (state["scope"], sched.get("at"), sched.get("from"), sched.get("to"), state["scope"]),
                          details={"scheduled_switchover": sched})
        if member.get("state") not in HEALTHY_REPLICA_STATES:
            raise DRError(PRECONDITION_FAILED, "Member %s is %s, not streaming or running; Patroni cannot promote it. "
                          "Choose another candidate or repair it." % (self.candidate, member.get("state")))
        if (member.get("tags") or {}).get("nofailover"):
            raise DRError(PRECONDITION_FAILED, "Member %s has the nofailover tag; Patroni never promotes it."
                          % self.candidate)
        if self.mode == "switchover" and not state["leader_healthy"]:
            raise DRError(PRECONDITION_FAILED, "patroni_mode=switchover needs a running leader, and the cluster has %s; "
                          "use patroni_mode auto or failover." % (
                              "none" if not state["leader"] else "%s in state %s" % (state["leader"], state["leader_state"])))
        self.action = "failover" if self.mode == "failover" or not state["leader_healthy"] else "switchover"
        self.result["mode"] = self.action
        self._lag_guard(member)
        return state

    def _lag_guard(self, member):
        limit = self.params.get("max_lag_bytes")
        worst = lag_of(member)
        lag = {"bytes": worst, "lag": member.get("lag"), "receive_lag": member.get("receive_lag"),
               "replay_lag": member.get("replay_lag"), "max_lag_bytes": limit}
        if worst is None:
            problem = "Patroni reports its lag as unknown"
        elif worst > limit:
            problem = "it is %d bytes behind the leader's last known LSN (max_lag_bytes %d)" % (worst, limit)
        else:
            problem = None
        lag["within_limits"] = problem is None
        lag["overridden"] = problem is not None and bool(self.params["allow_data_loss"])
        self.result["lag"] = lag
        if problem and not self.params["allow_data_loss"]:
            raise DRError(LAG_TOO_HIGH, "Patroni member %s: %s; wait for it to catch up, or set allow_data_loss with a "
                          "reason to promote anyway." % (self.candidate, problem), details={"lag": lag})

    # -- plan -----------------------------------------------------------------------------
    def plan(self, current):
        if self.result["already_primary"]:
            return []
        if self.action == "switchover":
            body = {"leader": current["leader"], "candidate": self.candidate}
        else:
            body = {"candidate": self.candidate}
        first = Step(self.action, self.candidate, run=lambda: self._post(body), request="POST /%s" % self.action,
                     body=body)
        wait = Step("wait_for_leader", self.candidate, run=lambda: self._wait(current), timeout_seconds=self.timeout,
                    until="candidate is leader, running, on a timeline after %s" % current["timeline"])
        return [first, wait]

    def predict(self, current, steps):
        after = dict(current, leader=self.candidate, leader_state="running", leader_healthy=True,
                     timeline=(current["timeline"] or 0) + 1)
        members = []
        for m in current["members"]:
            m = dict(m)
            if m["name"] == self.candidate:
                m.update(role="leader", state="running")
            elif m.get("role") in LEADER_ROLES:
                m.update(role="replica")
            members.append(m)
        after["members"] = members
        after["candidate"] = next(m for m in members if m["name"] == self.candidate)
        return after

    # -- steps ----------------------------------------------------------------------------
    def _post(self, body):
        # Patroni answers a switchover/failover when it is done or after about 20 s of polling
        status, answer, base = self.call("POST", "/" + self.action, body=body, timeout=max(30, self.timeout + 5),
                                         urls_to_try=self.urls)
        self.post_answer = {"status": status, "answer": answer, "url": base}
        text = answer if isinstance(answer, str) else json.dumps(answer)
        if status in (0, 200) or (status == 503 and "unknown" in text.lower()):
            return self.post_answer  # done, or perhaps still running: wait_for_leader decides
        if status == 412:
            raise DRError(PRECONDITION_FAILED, "Patroni refused the %s to %s: %s." % (self.action, self.candidate, text))
        raise DRError(APPLY_FAILED, "Patroni answered POST /%s with HTTP %s: %s." % (self.action, status, text))

    def _wait(self, current):
        start = time.monotonic()
        seen = None
        while True:
            try:
                state = self.get_cluster()
            except DRError as exc:  # members restart during a switchover; another URL may answer next time
                if exc.code != CONNECTION_FAILED:
                    raise
                state = None
            if state is not None:
                seen = state
                member = next((m for m in state["members"] if m["name"] == self.candidate), {})
                if member.get("role") == "leader" and member.get("state") == "running" and \
                        (member.get("timeline") or 0) > (current["timeline"] or 0):
                    return {"leader": self.candidate, "timeline": member.get("timeline"),
                            "waited_seconds": round(time.monotonic() - start, 3)}
            if time.monotonic() - start > self.timeout:
                raise DRError(TIMEOUT, "Patroni did not report %s as the running leader on a new timeline within "
                              "promote_timeout %s (leader now: %s); look at /cluster and Patroni's logs."
                              % (self.candidate, self.params["promote_timeout"], seen and seen["leader"]),
                              details={"cluster": seen})
            time.sleep(self.poll_interval)

    # -- verify ---------------------------------------------------------------------------
    def verify(self, current, steps):
        state = self.get_cluster()
        member = next((m for m in state["members"] if m["name"] == self.candidate), {})
        state["candidate"] = member
        if member.get("role") != "leader" or member.get("state") != "running":
            raise DRError(VERIFY_FAILED, "After the %s, Patroni reports %s as %s/%s, not the running leader."
                          % (self.action, self.candidate, member.get("role"), member.get("state")), details={"after": state})
        self.result.update(promoted=True, new_leader=self.candidate, timeline_after=member.get("timeline"))
        return state

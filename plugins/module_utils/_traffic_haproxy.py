# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``haproxy``: the runtime API (private to this collection).

Targets are the servers of one backend (``haproxy_backend``). A server takes traffic when
its administrative state is ready (no maintenance bit 0x23, no drain bit 0x18 in
``srv_admin_state``; a server declared ``disabled`` in the configuration keeps bit 0x04 and
reads 4 once ready) and its weight is above 0; its share is its weight over the sum.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import socket
import tempfile
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    CONNECTION_FAILED,
    INVALID_ARGUMENT,
    NOT_FOUND,
    PRECONDITION_FAILED,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)
from ansible_collections.resilience.dr.plugins.module_utils import _time

ADMF_MAINT = 0x23  # forced | inherited | resolution maintenance
ADMF_DRAIN = 0x18  # forced | inherited drain
_TCP = re.compile(r"^(?:tcp://)?(\[[^\]]+\]|[^/:\s]+):(\d+)$")


class RuntimeAPI(object):
    """One command per connection over a Unix socket or TCP (non-interactive mode)."""

    def __init__(self, address, timeout=5.0):
        if not address:
            raise DRError(INVALID_ARGUMENT, "haproxy_socket is required: the runtime API socket path or HOST:PORT.")
        self.address = address
        self.timeout = float(timeout or 5.0)
        match = _TCP.match(address.strip())
        if match and not address.startswith("/"):
            self.family = socket.AF_INET6 if match.group(1).startswith("[") else socket.AF_INET
            self.target = (match.group(1).strip("[]"), int(match.group(2)))
        else:
            path = address[len("unix://"):] if address.startswith("unix://") else address
            self.family = socket.AF_UNIX
            self.target = path

    def command(self, text):
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.target)
            sock.sendall(text.encode("utf-8") + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (socket.error, socket.timeout, OSError) as exc:
            raise DRError(
                CONNECTION_FAILED,
                "Cannot talk to the HAProxy runtime API at %s: %s; check haproxy_socket and that HAProxy runs "
                "with 'stats socket ... level admin'." % (self.address, exc),
                details={"haproxy_socket": self.address, "command": text},
            )
        finally:
            sock.close()
        answer = b"".join(chunks).decode("utf-8", "replace")
        if answer.strip().lower().startswith("permission denied"):
            raise DRError(
                PRECONDITION_FAILED,
                "The HAProxy runtime API at %s refused '%s' (permission denied); the stats socket needs 'level admin'."
                % (self.address, text.split()[0] + " " + text.split()[1]),
                details={"command": text},
            )
        return answer


def admin_name(admin_state):
    if admin_state & ADMF_MAINT:
        return "maint"
    if admin_state & ADMF_DRAIN:
        return "drain"
    return "ready"


class HAProxyTraffic(TrafficProvider):
    name = "haproxy"
    context_options = ("haproxy_socket", "haproxy_timeout", "haproxy_backend", "haproxy_state_file")

    def __init__(self, module):
        super(HAProxyTraffic, self).__init__(module)
        self.backend = self.params.get("haproxy_backend")
        if not self.backend:
            raise DRError(INVALID_ARGUMENT, "haproxy_backend is required with provider=haproxy.")
        self.api = RuntimeAPI(self.params.get("haproxy_socket"), self.params.get("haproxy_timeout"))
        self.drain = bool(self.params.get("drain"))
        self.drain_timeout = _time.parse_duration(self.params.get("drain_timeout") or "60s", "drain_timeout")
        self.ready_timeout = _time.parse_duration(self.params.get("ready_timeout") or "30s", "ready_timeout")
        self.sleep = time.sleep

    def target_what(self):
        return "server of HAProxy backend %s:" % self.backend

    # -- reading ------------------------------------------------------------------------
    def servers_state(self):
        answer = self.api.command("show servers state %s" % self.backend)
        lines = [line for line in answer.splitlines() if line.strip()]
        if not lines or not lines[0].strip().isdigit() or len(lines) < 2 or not lines[1].startswith("#"):
            text = answer.strip() or "empty answer"
            if "find backend" in text.lower() or "no such" in text.lower():
                raise DRError(
                    NOT_FOUND,
                    "HAProxy has no backend named %s (it answered: %s)." % (self.backend, text),
                    details={"haproxy_backend": self.backend},
                )
            raise DRError(APPLY_FAILED, "Unexpected answer to 'show servers state %s': %s." % (self.backend, text[:300]))
        header = lines[1].lstrip("#").split()
        out = {}
        for line in lines[2:]:
            row = dict(zip(header, line.split()))
            out[row["srv_name"]] = row
        return out

    def get_weight(self, server):
        answer = self.api.command("get weight %s/%s" % (self.backend, server)).strip()
        match = re.match(r"^(\d+)\s*\(initial\s+(\d+)\)", answer)
        if not match:
            raise DRError(NOT_FOUND, "HAProxy did not give the weight of %s/%s: %s." % (self.backend, server, answer))
        return int(match.group(1)), int(match.group(2))

    def read_state(self):
        rows = self.servers_state()
        if not rows:
            raise DRError(NOT_FOUND, "HAProxy backend %s has no servers." % self.backend, details={"haproxy_backend": self.backend})
        detail = {}
        for name, row in rows.items():
            admin = int(row.get("srv_admin_state", "0"))
            weight, initial = self.get_weight(name)
            detail[name] = {
                "state": admin_name(admin),
                "admin_state": admin,
                "operational_state": int(row.get("srv_op_state", "0")),
                "weight": weight,
                "initial_weight": initial,
                "address": "%s:%s" % (row.get("srv_addr"), row.get("srv_port")),
            }
        raw = dict((n, d["weight"] if d["state"] == "ready" else 0) for n, d in detail.items())
        return shares(raw), detail

    # -- planning -----------------------------------------------------------------------
    def plan_changes(self, current, desired):
        detail = current["detail"]
        if same_routing(current["routing"], desired) and all(
            detail[n]["state"] in ("ready" if desired[n] > 0 else "maint",) for n in desired
        ):
            return []
        incoming = sorted(n for n in desired if desired[n] > 0)
        leaving = sorted(n for n in desired if desired[n] == 0 and detail[n]["state"] != "maint")
        weights = {}
        if len(incoming) == 1:
            cur = detail[incoming[0]]
            weights[incoming[0]] = cur["weight"] or cur["initial_weight"] or 100
        else:
            now = shares(dict((n, detail[n]["weight"]) for n in incoming))
            if same_routing(now, dict((n, desired[n]) for n in incoming)):
                weights = dict((n, detail[n]["weight"]) for n in incoming)
            else:
                weights = dict((n, desired[n]) for n in incoming)
        steps = []
        for name in incoming:
            if detail[name]["weight"] != weights[name]:
                steps.append(Step("set_weight", "%s/%s" % (self.backend, name), run=self._setter("weight", name, weights[name]),
                                  weight=weights[name], previous=detail[name]["weight"]))
        for name in incoming:
            if detail[name]["state"] != "ready":
                steps.append(Step("set_state", "%s/%s" % (self.backend, name), run=self._setter("state", name, "ready"),
                                  state="ready", previous=detail[name]["state"]))
        for name in incoming:
            if detail[name]["state"] != "ready" or detail[name]["operational_state"] != 2:
                steps.append(Step("wait_up", "%s/%s" % (self.backend, name), run=self._up_waiter(name), timeout=self.ready_timeout))
        for name in leaving:
            if self.drain:
                if detail[name]["state"] != "drain":
                    steps.append(Step("set_state", "%s/%s" % (self.backend, name), run=self._setter("state", name, "drain"),
                                      state="drain", previous=detail[name]["state"]))
                steps.append(Step("wait_drained", "%s/%s" % (self.backend, name), run=self._waiter(name),
                                  timeout=self.drain_timeout))
            steps.append(Step("set_state", "%s/%s" % (self.backend, name), run=self._setter("state", name, "maint"),
                              state="maint", previous="drain" if self.drain else detail[name]["state"]))
        if steps and self.params.get("haproxy_state_file"):
            steps.append(Step("save_server_state", self.params["haproxy_state_file"], run=self._save_state))
        return steps

    def predict(self, current, steps):
        after = super(HAProxyTraffic, self).predict(current, steps)
        detail = dict((n, dict(d)) for n, d in current["detail"].items())
        for step in steps:
            name = step.target.split("/", 1)[1] if step.target and "/" in step.target else None
            if name in detail and "weight" in step.detail:
                detail[name]["weight"] = step.detail["weight"]
            if name in detail and "state" in step.detail:
                detail[name]["state"] = step.detail["state"]
        for row in detail.values():  # admin_state and operational_state are known once applied
            row.pop("admin_state", None)
            row.pop("operational_state", None)
        after["detail"] = detail
        return after

    # -- acting -------------------------------------------------------------------------
    def _set(self, kind, server, value):
        if kind == "weight":
            command = "set weight %s/%s %d" % (self.backend, server, value)
        else:
            command = "set server %s/%s state %s" % (self.backend, server, value)
        answer = self.api.command(command).strip()
        if answer:
            raise DRError(APPLY_FAILED, "HAProxy refused '%s': %s." % (command, answer), details={"command": command})
        return {"command": command}

    def _setter(self, kind, server, value):
        return lambda: self._set(kind, server, value)

    def sessions(self, server):
        answer = self.api.command("show stat %s 4 -1" % self.backend)
        lines = answer.splitlines()
        if not lines or not lines[0].startswith("#"):
            raise DRError(APPLY_FAILED, "Unexpected answer to 'show stat %s': %s." % (self.backend, answer.strip()[:300]))
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("svname") == server:
                return int(row.get("scur") or 0)
        raise DRError(NOT_FOUND, "HAProxy reports no statistics for %s/%s." % (self.backend, server))

    def _waiter(self, server):
        def run():
            start = time.monotonic()
            deadline = start + self.drain_timeout
            current = self.sessions(server)
            while current > 0 and time.monotonic() < deadline:
                self.sleep(0.1)
                current = self.sessions(server)
            return {"drained": current == 0, "sessions_left": current, "waited": round(time.monotonic() - start, 3)}
        return run

    def _up_waiter(self, server):
        def run():
            start = time.monotonic()
            deadline = start + self.ready_timeout
            row = self.servers_state().get(server, {})
            while row.get("srv_op_state") != "2" and time.monotonic() < deadline:
                # HAProxy checks a server leaving maintenance every fastinter/downinter (100 ms on the lab):
                # a 20 ms poll sees it up soon after, and the callers' proof write follows sooner
                self.sleep(0.02)
                row = self.servers_state().get(server, {})
            if row.get("srv_op_state") != "2":
                raise DRError(
                    APPLY_FAILED,
                    "HAProxy server %s/%s did not come up within %ss (operational state %s, check status %s); the leaving "
                    "servers were kept in service." % (self.backend, server, self.ready_timeout, row.get("srv_op_state"),
                                                       row.get("srv_check_status")),
                )
            return {"up": True, "waited": round(time.monotonic() - start, 3)}
        return run

    def _save_state(self):
        path = self.params["haproxy_state_file"]
        answer = self.api.command("show servers state")
        folder = os.path.dirname(os.path.abspath(path))
        handle, tmp = tempfile.mkstemp(prefix=".traffic_switch.", dir=folder)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(answer)
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, path)
        except (IOError, OSError) as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise DRError(APPLY_FAILED, "Could not write the HAProxy server-state file %s: %s." % (path, exc))
        return {"path": path}

    def restore(self, current):
        detail = current["detail"]
        now = self.read_state()[1]
        order = sorted(detail, key=lambda n: (detail[n]["state"] != "ready", n))
        for name in order:
            if name not in now:
                continue
            if now[name]["weight"] != detail[name]["weight"]:
                self._set("weight", name, detail[name]["weight"])
            if now[name]["state"] != detail[name]["state"]:
                self._set("state", name, detail[name]["state"])
        if self.params.get("haproxy_state_file"):
            self._save_state()

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""traffic_switch provider ``nginx``: a managed upstream include file (private).

The file is written atomically (temporary file in the same folder, then rename), then
checked with ``nginx -t -c <config>``; when the check fails the original content is put
back at once and nothing is reloaded. When it passes, the original content is kept as
``<file>.previous`` and nginx is reloaded (``nginx_reload_command``, a SIGHUP to the PID in
``nginx_pid_file``, or ``nginx -s reload -c <config>``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import signal
import tempfile
import time

from ansible_collections.resilience.dr.plugins.module_utils._errors import (
    DRError,
    APPLY_FAILED,
    INVALID_ARGUMENT,
    NOT_FOUND,
)
from ansible_collections.resilience.dr.plugins.module_utils._module import Step
from ansible_collections.resilience.dr.plugins.module_utils._traffic_common import (
    TrafficProvider,
    same_routing,
    shares,
)

HEADER = "# Managed by resilience.dr.traffic_switch: rewritten whole on every switch; the previous version is in %s.previous\n"
DEFAULT_TEMPLATE = "upstream __UPSTREAM__ {\n__SERVERS__}\n"
_SERVER = re.compile(r"^\s*server\s+([^\s;]+)([^;]*);", re.MULTILINE)


def parse_upstream(text, name):
    """Servers of ``upstream <name> { ... }``: list of (address, weight, down, backup)."""
    stripped = re.sub(r"#[^\n]*", "", text)
    match = re.search(r"\bupstream\s+%s\s*\{" % re.escape(name), stripped)
    if not match:
        return None
    depth = 1
    pos = match.end()
    while pos < len(stripped) and depth:
        if stripped[pos] == "{":
            depth += 1
        elif stripped[pos] == "}":
            depth -= 1
        pos += 1
    body = stripped[match.end():pos - 1]
    servers = []
    for address, params in _SERVER.findall(body):
        words = params.split()
        weight = 1
        for word in words:
            if word.startswith("weight="):
                try:
                    weight = int(word.split("=", 1)[1])
                except ValueError:
                    weight = 1
        servers.append((address, weight, "down" in words, "backup" in words))
    return servers


class NginxTraffic(TrafficProvider):
    name = "nginx"
    context_options = ("nginx_upstream_file", "nginx_upstream_name", "nginx_servers", "nginx_server_options",
                       "nginx_template", "nginx_binary", "nginx_config", "nginx_pid_file", "nginx_reload_command")

    def __init__(self, module):
        super(NginxTraffic, self).__init__(module)
        self.path = self.params["nginx_upstream_file"]
        self.upstream = self.params["nginx_upstream_name"]
        self.servers = dict((str(k), str(v)) for k, v in (self.params.get("nginx_servers") or {}).items())
        if not self.servers:
            raise DRError(INVALID_ARGUMENT, "nginx_servers must map at least one target name to a server address.")
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.upstream or ""):
            raise DRError(INVALID_ARGUMENT, "nginx_upstream_name %r is not a valid upstream name." % self.upstream)
        for target, address in self.servers.items():
            if not re.match(r"^[^\s;{}#]+$", address):
                raise DRError(INVALID_ARGUMENT, "nginx_servers.%s: %r is not a server address (host:port or unix:/path)." % (target, address))
        template = self.params.get("nginx_template") or DEFAULT_TEMPLATE
        if "__SERVERS__" not in template:
            raise DRError(INVALID_ARGUMENT, "nginx_template must contain __SERVERS__ where the server lines go.")
        self.template = template
        self.extra = {}
        self.original = None

    def target_what(self):
        return "target of nginx_servers (upstream %s):" % self.upstream

    # -- reading ------------------------------------------------------------------------
    def read_state(self):
        try:
            with open(self.path, "rb") as handle:
                content = handle.read().decode("utf-8")
        except (IOError, OSError) as exc:
            raise DRError(NOT_FOUND, "Cannot read the nginx upstream file %s: %s." % (self.path, exc), details={"nginx_upstream_file": self.path})
        servers = parse_upstream(content, self.upstream)
        if servers is None:
            raise DRError(NOT_FOUND, "The file %s has no 'upstream %s' block; check nginx_upstream_name." % (self.path, self.upstream))
        by_address = dict((v, k) for k, v in self.servers.items())
        raw = dict((name, 0) for name in self.servers)
        listed = []
        for address, weight, down, backup in servers:
            target = by_address.get(address)
            if target is None:
                target = address
                self.extra[address] = address
            raw[target] = raw.get(target, 0) + (0 if down or backup else weight)
            listed.append({"target": target, "address": address, "weight": weight, "down": down, "backup": backup})
        if self.original is None:
            self.original = content
        return shares(raw), {"file": self.path, "servers": listed, "content": content}

    # -- planning -----------------------------------------------------------------------
    def render(self, desired):
        addresses = dict(self.servers)
        addresses.update(self.extra)
        incoming = [n for n in desired if desired[n] > 0]
        options = (" " + self.params["nginx_server_options"].strip()) if self.params.get("nginx_server_options") else ""
        lines = []
        for target in list(self.servers) + sorted(self.extra):
            share = desired.get(target, 0)
            if share <= 0:
                lines.append("    server %s%s down;  # %s\n" % (addresses[target], options, target))
            elif len(incoming) == 1:
                lines.append("    server %s%s;  # %s\n" % (addresses[target], options, target))
            else:
                lines.append("    server %s weight=%d%s;  # %s\n" % (addresses[target], share, options, target))
        body = self.template.replace("__UPSTREAM__", self.upstream).replace("__SERVERS__", "".join(lines))
        return HEADER % os.path.basename(self.path) + body

    def plan_changes(self, current, desired):
        if same_routing(current["routing"], desired):
            return []
        content = self.render(desired)
        return [
            Step("write_upstream_file", self.path, run=lambda: self.write_checked(content),
                 upstream=self.upstream, content=content, test_argv=self.test_argv()),
            Step("reload_nginx", self.params.get("nginx_config"), run=self.reload, argv=self.reload_argv()),
        ]

    def predict(self, current, steps):
        after = super(NginxTraffic, self).predict(current, steps)
        after["detail"] = {"file": self.path, "content": steps[0].detail["content"]}
        return after

    # -- acting -------------------------------------------------------------------------
    def test_argv(self):
        return [self.params.get("nginx_binary") or "nginx", "-t", "-c", self.params["nginx_config"]]

    def reload_argv(self):
        if self.params.get("nginx_reload_command"):
            return list(self.params["nginx_reload_command"])
        if self.params.get("nginx_pid_file"):
            return ["kill", "-HUP", "$(cat %s)" % self.params["nginx_pid_file"]]
        return [self.params.get("nginx_binary") or "nginx", "-s", "reload", "-c", self.params["nginx_config"]]

    def _run(self, argv):
        try:
            code, out, err = self.module.run_command(argv)
        except (IOError, OSError) as exc:
            return 127, "%s: %s" % (argv[0], exc)
        return code, (out + err).strip()

    def _write(self, content):
        folder = os.path.dirname(os.path.abspath(self.path))
        handle, tmp = tempfile.mkstemp(prefix=".traffic_switch.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content.encode("utf-8"))
                out.flush()
                os.fsync(out.fileno())
            try:
                info = os.stat(self.path)
                os.chmod(tmp, info.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.chown(tmp, info.st_uid, info.st_gid)
            except OSError:
                os.chmod(tmp, 0o644)
            os.rename(tmp, self.path)
        except (IOError, OSError) as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise DRError(APPLY_FAILED, "Could not write %s: %s." % (self.path, exc))

    def write_checked(self, content):
        original = self.original
        self._write(content)
        argv = self.test_argv()
        code, output = self._run(argv)
        if code != 0:
            self._write(original)
            raise DRError(
                APPLY_FAILED,
                "nginx -t refused the configuration with the new upstream file, so %s was put back as it was and nginx was "
                "not reloaded: %s." % (self.path, output[-800:].rstrip(".")),
                details={"nginx_test_argv": argv, "nginx_test_output": output, "rejected_content": content},
            )
        with open(self.path + ".previous", "wb") as out:
            out.write(original.encode("utf-8"))
        return {"nginx_test": output[-400:], "previous_file": self.path + ".previous"}

    @staticmethod
    def _children(pid):
        out = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (IOError, OSError, IndexError):
                continue
            if fields and int(fields[1]) == pid:
                out.add(int(entry))
        return out

    def reload(self):
        if self.params.get("nginx_reload_command") or not self.params.get("nginx_pid_file"):
            argv = self.reload_argv()
            code, output = self._run(argv)
            if code != 0:
                raise DRError(APPLY_FAILED, "Reloading nginx with %s failed: %s." % (" ".join(argv), output[-400:]))
            return {"argv": argv, "output": output[-400:]}
        pid_file = self.params["nginx_pid_file"]
        try:
            with open(pid_file) as handle:
                pid = int(handle.read().strip())
        except (IOError, OSError, ValueError) as exc:
            raise DRError(APPLY_FAILED, "Cannot read the nginx master PID from %s: %s." % (pid_file, exc))
        old = self._children(pid) if os.path.isdir("/proc") else set()
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise DRError(APPLY_FAILED, "Cannot send SIGHUP to nginx master %d (from %s): %s." % (pid, pid_file, exc))
        # wait (up to 10 s) for the new workers: proof that the master accepted the configuration
        deadline = time.monotonic() + 10
        new = set()
        while os.path.isdir("/proc") and time.monotonic() < deadline:
            new = self._children(pid) - old
            if new:
                break
            time.sleep(0.05)
        if os.path.isdir("/proc") and not new:
            raise DRError(APPLY_FAILED, "nginx master %d started no new workers within 10s after SIGHUP; see its error log." % pid)
        return {"signal": "HUP", "pid": pid, "new_workers": len(new)}

    def restore(self, current):
        original = current["detail"]["content"]
        with open(self.path, "rb") as handle:
            now = handle.read().decode("utf-8")
        if now == original:
            return
        self._write(original)
        code, output = self._run(self.test_argv())
        if code != 0:
            raise DRError(APPLY_FAILED, "nginx -t refused the restored file %s: %s" % (self.path, output[-400:]))
        self.reload()

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small fake of the Azure Resource Manager paths of Front Door origins, for tests.

``origins`` maps an origin group path (``/subscriptions/.../originGroups/G``) to
``{origin_name: properties}``. GET ``<group>/origins`` lists them; PATCH
``<group>/origins/<name>`` validates ``enabledState`` and ``weight`` (1-1000), answers 202 with
an ``Azure-AsyncOperation`` URL and applies the change when that URL is polled the second
time (``InProgress`` first, then ``Succeeded``), as a slow ARM operation would. Every request
needs ``Authorization: Bearer <token>`` and ``api-version``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import uuid
from urllib.parse import parse_qs, urlparse

from fakes.base import FakeApi, JsonHandler


class FakeFrontDoor(FakeApi):
    def __init__(self, port, token="azure-token"):
        super(FakeFrontDoor, self).__init__(port, token)
        self.origins = {}
        self.pending = {}
        fake = self

        class Handler(JsonHandler):
            def _error(self, code, error, message):
                self._send(code, {"error": {"code": error, "message": message}})

            def _handle(self, method):
                url = urlparse(self.path)
                path = url.path
                fake.requests.append((method, path))
                if self.headers.get("Authorization") != "Bearer %s" % fake.token:
                    return self._error(401, "InvalidAuthenticationToken", "The access token is invalid.")
                if not parse_qs(url.query).get("api-version"):
                    return self._error(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
                with fake.lock:
                    if path.startswith("/operations/") and method == "GET":
                        op = fake.pending.get(path)
                        if op is None:
                            return self._error(404, "NotFound", "no operation")
                        op["polls"] += 1
                        if op["polls"] < 2:
                            return self._send(200, {"status": "InProgress"})
                        if not op["applied"]:
                            fake.origins[op["group"]][op["name"]].update(op["props"])
                            op["applied"] = True
                        return self._send(200, {"status": "Succeeded"})
                    if method == "GET" and path.endswith("/origins") and path[:-len("/origins")] in fake.origins:
                        group = path[:-len("/origins")]
                        return self._send(200, {"value": [{"name": n, "id": "%s/origins/%s" % (group, n), "properties": dict(p)}
                                                          for n, p in sorted(fake.origins[group].items())]})
                    group, name = path.rsplit("/origins/", 1) if "/origins/" in path else (path, "")
                    if method == "PATCH" and group in fake.origins and name in fake.origins[group]:
                        length = int(self.headers.get("Content-Length") or 0)
                        props = json.loads(self.rfile.read(length).decode()).get("properties") or {}
                        if props.get("enabledState", "Enabled") not in ("Enabled", "Disabled"):
                            return self._error(400, "BadRequest", "enabledState must be Enabled or Disabled")
                        if "weight" in props and not 1 <= int(props["weight"]) <= 1000:
                            return self._error(400, "BadRequest", "weight must be between 1 and 1000")
                        op = "/operations/%s" % uuid.uuid4().hex
                        fake.pending[op] = {"group": group, "name": name, "props": props, "polls": 0, "applied": False}
                        body = {"name": name, "properties": dict(fake.origins[group][name], provisioningState="Updating")}
                        return self._send(202, body, {"Azure-AsyncOperation": "%s%s?api-version=2024-02-01" % (fake.url, op),
                                                      "Retry-After": "0"})
                    return self._error(404, "ResourceNotFound", "The Resource '%s' was not found." % path)

        self.serve(Handler)

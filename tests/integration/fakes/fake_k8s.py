# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small fake of the Kubernetes API paths traffic_switch uses, for tests.

Objects live in ``store`` keyed by their URL path. GET answers the object or a 404
``Status``; PUT replaces it only when ``metadata.resourceVersion`` matches the stored one
(409 otherwise, as the API server does), bumps the version and answers 200; POST to the
collection creates (201). Every request needs ``Authorization: Bearer <token>`` (401
otherwise). ``requests`` records (method, path) for assertions.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from fakes.base import FakeApi, JsonHandler


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}


class FakeK8s(FakeApi):
    def __init__(self, port, token="fake-token"):
        super(FakeK8s, self).__init__(port, token)
        self.store = {}
        self.version = 100
        fake = self

        class Handler(JsonHandler):
            def _handle(self, method):
                path = self.path.split("?")[0]
                fake.requests.append((method, path))
                if self.headers.get("Authorization") != "Bearer %s" % fake.token:
                    return self._send(401, status(401, "Unauthorized", "Unauthorized"))
                with fake.lock:
                    if method == "GET":
                        if path not in fake.store:
                            return self._send(404, status(404, "NotFound", "%s not found" % path))
                        return self._send(200, fake.store[path])
                    body = self._body()
                    if method == "POST":
                        target = "%s/%s" % (path, body["metadata"]["name"])
                        if target in fake.store:
                            return self._send(409, status(409, "AlreadyExists", "%s already exists" % target))
                        return self._send(201, fake.put(target, body))
                    if method == "PUT":
                        if path not in fake.store:
                            return self._send(404, status(404, "NotFound", "%s not found" % path))
                        sent = (body.get("metadata") or {}).get("resourceVersion")
                        if sent != fake.store[path]["metadata"]["resourceVersion"]:
                            message = "the object has been modified; please apply your changes to the latest version and try again"
                            return self._send(409, status(409, "Conflict", message))
                        return self._send(200, fake.put(path, body))
                return self._send(405, status(405, "MethodNotAllowed", method))

        self.serve(Handler)

    def put(self, path, obj):
        self.version += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        self.store[path] = obj
        return obj

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small fake of the Cloud Run Admin API v2 paths traffic_switch uses, for tests.

``services`` maps ``projects/P/locations/L/services/S`` to the service; ``revisions`` to its
revision names. PATCH with ``updateMask=traffic`` checks that the percents sum to 100 and that
each revision exists (400 otherwise, as Cloud Run does), then answers a long-running operation
that is done on its second GET. Every request needs ``Authorization: Bearer <token>``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import uuid
from urllib.parse import parse_qs, urlparse

from fakes.base import FakeApi, JsonHandler


class FakeCloudRun(FakeApi):
    def __init__(self, port, token="gcp-token"):
        super(FakeCloudRun, self).__init__(port, token)
        self.services = {}
        self.revisions = {}
        self.operations = {}
        fake = self

        class Handler(JsonHandler):
            def _error(self, code, message):
                self._send(code, {"error": {"code": code, "message": message}})

            def _handle(self, method):
                url = urlparse(self.path)
                path = url.path[len("/v2/"):] if url.path.startswith("/v2/") else url.path
                fake.requests.append((method, path))
                if self.headers.get("Authorization") != "Bearer %s" % fake.token:
                    return self._error(401, "Request had invalid authentication credentials.")
                with fake.lock:
                    if method == "GET" and path in fake.operations:
                        op = fake.operations[path]
                        op["polls"] += 1
                        done = op["polls"] >= 2
                        return self._send(200, {"name": path, "done": done, "response": fake.services[op["service"]]} if done
                                          else {"name": path, "done": False})
                    if method == "GET" and path.endswith("/revisions") and path[:-len("/revisions")] in fake.services:
                        service = path[:-len("/revisions")]
                        return self._send(200, {"revisions": [{"name": "%s/revisions/%s" % (service, r)} for r in fake.revisions[service]]})
                    if path not in fake.services:
                        return self._error(404, "Resource '%s' was not found" % path)
                    if method == "GET":
                        return self._send(200, fake.services[path])
                    if method == "PATCH":
                        if parse_qs(url.query).get("updateMask") != ["traffic"]:
                            return self._error(400, "updateMask must be traffic")
                        length = int(self.headers.get("Content-Length") or 0)
                        traffic = json.loads(self.rfile.read(length).decode())["traffic"]
                        if sum(int(t.get("percent") or 0) for t in traffic) != 100:
                            return self._error(400, "traffic percents must sum to 100")
                        for entry in traffic:
                            if entry.get("revision") and entry["revision"] not in fake.revisions[path]:
                                return self._error(400, "Revision %s does not exist" % entry["revision"])
                        fake.services[path]["traffic"] = traffic
                        fake.services[path]["etag"] = uuid.uuid4().hex
                        name = "projects/p/locations/l/operations/%s" % uuid.uuid4().hex
                        fake.operations[name] = {"service": path, "polls": 0}
                        return self._send(200, {"name": name, "done": False})
                return self._error(405, method)

        self.serve(Handler)

    def add_service(self, path, revisions, traffic):
        self.services[path] = {"name": path, "traffic": copy.deepcopy(traffic), "latestReadyRevision": "%s/revisions/%s" % (path, revisions[-1])}
        self.revisions[path] = list(revisions)

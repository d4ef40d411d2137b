# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small fake of the Azure Resource Manager paths of Traffic Manager, for tests.

``profiles`` maps a profile path (``/subscriptions/S/resourceGroups/G/providers/
Microsoft.Network/trafficmanagerprofiles/P``, compared case-insensitively as ARM does) to
``{"trafficRoutingMethod": ..., "profileStatus": ..., "endpoints": {name: {"type": "externalEndpoints", ...properties}}}``.

* GET of the profile answers it with its ``endpoints`` (each with ``id``, ``name``, ``type``
  ``Microsoft.Network/trafficManagerProfiles/<type>`` and ``properties``).
* PATCH ``<profile>/<endpointType>/<name>`` (Endpoints_Update) accepts only known endpoint
  properties, checks ``endpointStatus`` (Enabled/Disabled), ``weight`` and ``priority``
  (1-1000), applies them and answers 200 with the endpoint, as Azure does.
* Every request needs ``Authorization: Bearer <token>`` and ``api-version=2022-04-01``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
from urllib.parse import parse_qs, unquote, urlparse

from fakes.base import FakeApi, JsonHandler

API_VERSION = "2022-04-01"
WRITABLE = ("endpointStatus", "weight", "priority", "target", "targetResourceId", "endpointLocation", "customHeaders", "alwaysServe",
            "geoMapping", "subnets", "minChildEndpoints")


class FakeTrafficManager(FakeApi):
    def __init__(self, port, token="azure-tm-token"):
        super(FakeTrafficManager, self).__init__(port, token)
        self.profiles = {}
        self.bodies = []
        fake = self

        class Handler(JsonHandler):
            def _error(self, code, error, message):
                self._send(code, {"error": {"code": error, "message": message}})

            def _handle(self, method):
                url = urlparse(self.path)
                path = unquote(url.path)
                fake.requests.append((method, path))
                if self.headers.get("Authorization") != "Bearer %s" % fake.token:
                    return self._error(401, "InvalidAuthenticationToken", "The access token is invalid.")
                if parse_qs(url.query).get("api-version") != [API_VERSION]:
                    return self._error(400, "InvalidApiVersionParameter", "The api-version '%s' is invalid." % parse_qs(url.query).get("api-version"))
                with fake.lock:
                    profiles = dict((p.lower(), p) for p in fake.profiles)
                    if method == "GET" and path.lower() in profiles:
                        return self._send(200, fake.render(profiles[path.lower()]))
                    head, dummy, name = path.rpartition("/")
                    base, dummy, etype = head.rpartition("/")
                    if method == "PATCH" and base.lower() in profiles:
                        profile = fake.profiles[profiles[base.lower()]]
                        endpoint = profile["endpoints"].get(name)
                        if endpoint is None or endpoint["type"].lower() != etype.lower():
                            return self._error(404, "NotFound", "The endpoint '%s/%s' was not found." % (etype, name))
                        length = int(self.headers.get("Content-Length") or 0)
                        body = json.loads(self.rfile.read(length).decode())
                        fake.bodies.append(copy.deepcopy(body))
                        props = body.get("properties")
                        if not isinstance(props, dict) or not props:
                            return self._error(400, "BadRequest", "The request body must have properties.")
                        unknown = sorted(set(props) - set(WRITABLE))
                        if unknown:
                            return self._error(400, "BadRequest", "Unknown endpoint properties %s." % unknown)
                        if props.get("endpointStatus", "Enabled") not in ("Enabled", "Disabled"):
                            return self._error(400, "BadRequest", "endpointStatus must be Enabled or Disabled.")
                        for key in ("weight", "priority"):
                            if key in props and (not isinstance(props[key], int) or not 1 <= props[key] <= 1000):
                                return self._error(400, "BadRequest", "%s must be an integer between 1 and 1000." % key)
                        endpoint.update(props)
                        return self._send(200, fake.render_endpoint(profiles[base.lower()], name))
                    return self._error(404, "ResourceNotFound", "The Resource '%s' was not found." % path)

        self.serve(Handler)

    def render_endpoint(self, path, name):
        endpoint = self.profiles[path]["endpoints"][name]
        props = dict((k, v) for k, v in endpoint.items() if k != "type")
        props.setdefault("endpointMonitorStatus", "Online" if props.get("endpointStatus") == "Enabled" else "Disabled")
        return {"id": "%s/%s/%s" % (path, endpoint["type"], name), "name": name,
                "type": "Microsoft.Network/trafficManagerProfiles/%s" % endpoint["type"], "properties": props}

    def render(self, path):
        profile = self.profiles[path]
        props = dict((k, copy.deepcopy(v)) for k, v in profile.items() if k != "endpoints")
        props.setdefault("profileStatus", "Enabled")
        props["endpoints"] = [self.render_endpoint(path, n) for n in sorted(profile["endpoints"])]
        return {"id": path, "name": path.rsplit("/", 1)[-1], "type": "Microsoft.Network/trafficManagerProfiles", "location": "global",
                "properties": props}

    def writes(self):
        return [r for r in self.requests if r[0] == "PATCH"]

# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every loopback HTTP fake of a cloud API shares: a quiet JSON request handler and
a threaded server on 127.0.0.1 that records requests, checks nothing by itself and is
started and stopped by the test.

A fake subclasses ``FakeApi``, defines its ``Handler(JsonHandler)`` with ``_handle(method)``
(and its API's ``_error`` shape), and calls ``self.serve(Handler)``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _send(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length).decode() or "{}")

    def _handle(self, method):
        raise NotImplementedError

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self):  # noqa: N802
        self._handle("PATCH")


class FakeApi(object):
    def __init__(self, port, token):
        self.token = token
        self.requests = []
        self.lock = threading.Lock()
        self.url = "http://127.0.0.1:%d" % port
        self.port = port
        self.server = self.thread = None

    def serve(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

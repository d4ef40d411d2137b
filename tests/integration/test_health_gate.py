# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles health_gate and notify against a tiny local fake Prometheus, a flaky HTTP endpoint and
a fake webhook receiver (Slack-style and generic), all on loopback in port block 29000-29999."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from lablib import VENV_BIN, run_playbook

PORT = 29600

PLAYBOOK = """---
- name: Gate then notify
  hosts: all
  gather_facts: false
  roles:
    - role: resilience.dr.health_gate
    - role: resilience.dr.notify
"""


class Fake(object):
    """State of the fakes: Prometheus values per query, flaky endpoint countdown, webhook bodies."""

    def __init__(self):
        self.values = {}
        self.queries = []
        self.flaky_left = 0
        self.flaky_calls = 0
        self.posts = []


def make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code, body, ctype="application/json"):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            url = urlparse(self.path)
            if url.path == "/api/v1/query":
                query = parse_qs(url.query)["query"][0]
                fake.queries.append(query)
                value = fake.values.get(query)
                result = [] if value is None else [{"metric": {}, "value": [1700000000.0, str(value)]}]
                self._send(200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}))
            elif url.path == "/flaky":
                fake.flaky_calls += 1
                if fake.flaky_left > 0:
                    fake.flaky_left -= 1
                    self._send(503, "warming up", "text/plain")
                else:
                    self._send(200, "blue v1 healthy", "text/plain")
            else:
                self._send(404, "{}")

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            fake.posts.append({"path": self.path, "body": json.loads(self.rfile.read(length) or b"null"),
                               "auth": self.headers.get("Authorization")})
            self._send(200, "ok", "text/plain")

    return Handler


@pytest.fixture(scope="module")
def fake():
    state = Fake()
    server = ThreadingHTTPServer(("127.0.0.1", PORT), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture()
def play(tmp_path):
    playbook = tmp_path / "gate.yml"
    playbook.write_text(PLAYBOOK)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % os.path.join(VENV_BIN, "python"))

    def run(extra, check=False):
        return run_playbook(str(playbook), extra, inventory=str(inventory), check=check, timeout=300)
    return run


BASE = "http://127.0.0.1:%d" % PORT
ERROR_RATE = 'sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
P95 = "histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[5m])) by (le))"


def gate_vars(**extra):
    out = {
        "health_gate_http_checks": [{"url": BASE + "/flaky", "contains": "blue v1"}],
        "health_gate_retries": 5,
        "health_gate_delay": 1,
        "health_gate_prometheus_url": BASE + "/",
        "health_gate_prometheus_checks": [{"name": "error_rate", "query": ERROR_RATE, "max": 0.05},
                                          {"name": "p95_latency", "query": P95, "max": 0.5}],
        "notify_message": "rollback done",
        "notify_status": "completed",
        "notify_webhook_url": BASE + "/hooks/generic",
        "notify_webhook_headers": {"Authorization": "Bearer hook-token"},
        "notify_slack_webhook_url": BASE + "/services/T000/B000/XXXX",
    }
    out.update(extra)
    return out


def test_gate_passes_after_retries_and_notifies(fake, play):
    fake.values = {ERROR_RATE: 0.01, P95: 0.2}
    fake.flaky_left, fake.flaky_calls, fake.posts, fake.queries = 2, 0, [], []
    out = play(gate_vars())
    assert out.returncode == 0, out.stdout[-3000:]
    assert fake.flaky_calls == 3  # two 503s, then the healthy page
    assert sorted(fake.queries) == sorted([ERROR_RATE, P95])  # the PromQL arrived intact
    by_path = {p["path"]: p for p in fake.posts}
    assert by_path["/services/T000/B000/XXXX"]["body"] == {"text": "[completed] rollback done"}
    generic = by_path["/hooks/generic"]
    assert generic["auth"] == "Bearer hook-token"
    assert generic["body"]["message"] == "rollback done" and generic["body"]["status"] == "completed"
    assert generic["body"]["host"] == "localhost" and generic["body"]["sent_at"].endswith("Z")


def test_gate_fails_on_a_crossed_threshold_and_names_it(fake, play):
    fake.values = {ERROR_RATE: 0.2, P95: 0.2}
    fake.flaky_left, fake.posts = 0, []
    out = play(gate_vars())
    assert out.returncode != 0
    assert "Health gate failed: error_rate = 0.2" in out.stdout
    assert "p95_latency" not in out.stdout.split("Health gate failed:")[1].split("\n")[0]
    assert fake.posts == []  # the play stopped at the gate


def test_gate_no_data_fails_unless_allowed(fake, play):
    fake.values = {ERROR_RATE: 0.0}
    fake.posts = []
    out = play(gate_vars(health_gate_http_checks=[]))
    assert out.returncode != 0 and "p95_latency = no data" in out.stdout
    checks = [{"name": "p95_latency", "query": P95, "max": 0.5, "on_empty": "pass"}]
    out = play(gate_vars(health_gate_http_checks=[], health_gate_prometheus_checks=checks))
    assert out.returncode == 0, out.stdout[-3000:]


def test_http_gate_gives_up_after_its_retries(fake, play):
    fake.flaky_left, fake.flaky_calls = 100, 0
    out = play(gate_vars(health_gate_retries=3, health_gate_prometheus_checks=[]))
    assert out.returncode != 0
    assert fake.flaky_calls == 3


def test_check_mode_gates_but_sends_nothing(fake, play):
    fake.values = {ERROR_RATE: 0.01, P95: 0.2}
    fake.flaky_left, fake.posts, fake.queries = 0, [], []
    out = play(gate_vars(), check=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert len(fake.queries) == 2
    assert fake.posts == []
    assert "Would notify [completed] rollback done to: slack, webhook" in out.stdout


def test_nothing_configured_sends_nothing(fake, play):
    fake.posts = []
    out = play({"notify_message": "hello"})
    assert out.returncode == 0, out.stdout[-3000:]
    assert fake.posts == []

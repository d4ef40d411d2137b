# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Send commands to HAProxy's runtime API and print the answers as JSON (used by db_restore).

    haproxy_runtime.py SOCKET COMMAND [COMMAND...]

SOCKET is a Unix socket path or HOST:PORT. Exits 1 when an answer looks like an error
(HAProxy answers errors in plain text: "No such server.", "Unknown command", ...).
"""

from __future__ import absolute_import, division, print_function

import json
import socket
import sys

ERRORS = ("no such", "unknown", "not found", "require", "invalid", "permission denied", "can't", "cannot")


def send(address, command, timeout=5.0):
    if ":" in address and not address.startswith("/"):
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=timeout)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
    try:
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    finally:
        sock.close()
    return b"".join(chunks).decode(errors="replace").strip()


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    address, commands = argv[1], argv[2:]
    out, failed = [], False
    for command in commands:
        answer = send(address, command)
        bad = any(word in answer.lower() for word in ERRORS) and not command.startswith("show ")
        failed = failed or bad
        out.append({"command": command, "answer": answer, "ok": not bad})
    print(json.dumps({"socket": address, "results": out, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

# -*- coding: utf-8 -*-
# Copyright: resilience.dr contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of the HAProxy provider (runtime API).
    DOCUMENTATION = r"""
options:
  haproxy_socket:
    description:
      - "HAProxy runtime API (C(stats socket ... level admin)): a Unix socket path, or
        C(HOST:PORT) or C(tcp://HOST:PORT) for a TCP listener. Falls back to E(HAPROXY_SOCKET)."
    type: str
  haproxy_timeout:
    description:
      - Seconds to wait for the runtime API to answer one command.
    type: float
    default: 5.0
"""

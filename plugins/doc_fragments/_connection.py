# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
# Internal to neonops.storage; may change in any release.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - Base URL of the service's HTTP management API, for example V(http://ps-1.internal:9898).
      - Only C(http) and C(https) URLs without query or fragment are accepted; they are checked before any request.
      - If not set, the value of the E(NEONOPS_API_URL) environment variable is used.
    type: str
    required: true
  api_token:
    description:
      - "Bearer token (a JWT) sent in the C(Authorization) header. Omit when the service runs without auth."
      - It never appears in results, warnings or error messages.
      - If not set, the value of the E(NEONOPS_API_TOKEN) environment variable is used.
    type: str
  validate_certs:
    description:
      - Verify the server's TLS certificate for C(https) URLs.
      - If not set, the value of the E(NEONOPS_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file (or directory) of CA certificates used to verify the server when O(validate_certs=true).
      - If not set, the value of the E(NEONOPS_CA_PATH) environment variable is used.
    type: path
  timeout:
    description:
      - Timeout in seconds for each HTTP request (connect and read).
      - If not set, the value of the E(NEONOPS_TIMEOUT) environment variable is used.
    type: float
    default: 30
  retries:
    description:
      - How many times an idempotent request (C(GET), C(PUT)) is retried after a transport error or
        HTTP 408, 429, 502, 503 or 504, with exponential backoff. Each retry is reported as a warning.
      - C(POST), C(PATCH) and C(DELETE) requests are never retried.
    type: int
    default: 3
requirements:
  - requests
notes:
  - Use O(api_url) and O(api_token) with C(module_defaults) for the action group C(group/neonops.storage.neon).
"""

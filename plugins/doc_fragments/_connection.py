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
      - The URL must not carry user information (C(user:password@)); pass credentials with O(api_token). It must
        not contain whitespace or control characters, its host name must be ASCII (an internationalized name in
        its C(xn--) form) with dot-separated parts of 1 to 63 characters, and it is at most 2048 characters long.
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
      - It must exist and be readable when O(validate_certs=true); this is checked before any request.
      - If not set, the value of the E(NEONOPS_CA_PATH) environment variable is used.
    type: path
  timeout:
    description:
      - Timeout in seconds for each HTTP request (connect and read). More than 0 and at most 86400.
      - If not set, the value of the E(NEONOPS_TIMEOUT) environment variable is used (with the same bounds).
    type: float
    default: 30
  retries:
    description:
      - How many times an idempotent request (C(GET), C(PUT)) is retried after a transport error or
        HTTP 408, 429, 502, 503 or 504, with exponential backoff. Each retry is reported as a warning.
      - C(POST), C(PATCH) and C(DELETE) requests are never retried.
      - From 0 to 100.
    type: int
    default: 3
requirements:
  - requests
notes:
  - Use O(api_url) and O(api_token) with C(module_defaults) for the action group C(group/neonops.storage.neon).
  - Every option is checked before the first request, and a failure names the option. Integer options never
    take a boolean, and every number has bounds (given with each option; other integers 0 or more). Text
    options are at most 4096 characters (tokens 65536), lists at most 1024 entries, and dict options at most
    64 KiB as JSON (unless stated otherwise); no option may contain a NUL character or, in a dict, a number
    that is not finite.
  - A server answer that is not the JSON the route returns (for example an HTML page) fails the module. An
    HTTP 404 counts as "not found" only when it is the service's own answer naming the tenant, timeline,
    shard or node; any other 404 means the URL does not serve the API, and the module fails.
  - A failure after the server accepted a change reports RV(ignore:changed=true).
"""

# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Common argspec, client factory and error helpers for modules. Internal; may change in any release."""

from __future__ import annotations

import copy

from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible_collections.neonops.storage.plugins.module_utils._client import (
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    NeonAPIError,
    NeonClient,
)

NEON_CONNECTION_SPEC = {
    "api_url": {"type": "str", "required": True, "fallback": (env_fallback, ["NEONOPS_API_URL"])},
    "api_token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["NEONOPS_API_TOKEN"])},
    "validate_certs": {"type": "bool", "default": True, "fallback": (env_fallback, ["NEONOPS_VALIDATE_CERTS"])},
    "ca_path": {"type": "path", "fallback": (env_fallback, ["NEONOPS_CA_PATH"])},
    "timeout": {"type": "float", "default": 30.0, "fallback": (env_fallback, ["NEONOPS_TIMEOUT"])},
    "retries": {"type": "int", "default": 3},
}


def neon_argument_spec(**module_options) -> dict:
    """The connection options plus the module's own."""
    spec = copy.deepcopy(NEON_CONNECTION_SPEC)
    spec.update(module_options)
    return spec


def client_from_module(module, url_option="api_url", token_option="api_token", error_key="msg") -> NeonClient:
    """Build the client from the module's connection options; fail_json on a bad URL or missing requests."""
    params = module.params
    return client_for_url(module, params.get(url_option), params.get(token_option), url_option, error_key)


def client_for_url(module, url, token=None, field="api_url", error_key="msg") -> NeonClient:
    """A client for another service URL (e.g. one of several safekeepers) with the module's TLS/timeout/retries."""
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    params = module.params
    timeout = params.get("timeout")
    if timeout is not None and timeout <= 0:
        module.fail_json(msg=f"timeout: must be a positive number of seconds, got {timeout!r}")
    try:
        return NeonClient(
            url,
            token=token,
            validate_certs=params.get("validate_certs", True),
            ca_path=params.get("ca_path"),
            timeout=timeout or 30.0,
            retries=params.get("retries", 3),
            warn=module.warn,
            error_key=error_key,
        )
    except ValueError as exc:
        module.fail_json(msg=f"{field}: {exc}")


def fail_api(module, exc: NeonAPIError, attempted: str, reason: str | None = None, **extra):
    """fail_json with what was attempted, the request and the server's message (the token is never part of it).

    ``reason`` is the module's reading of the error (e.g. "not attached on this pageserver").
    """
    module.fail_json(
        msg=f"{attempted} failed: {reason} ({exc})" if reason else f"{attempted} failed: {exc}",
        method=exc.method,
        url=exc.url,
        status=exc.status,
        error=exc.message,
        **extra,
    )


def validate_or_fail(module, validator, value, field, *args):
    """Run a validator (e.g. validate_tenant_id, Lsn.parse); fail_json naming the field and value on ValueError."""
    try:
        return validator(value, *args)
    except ValueError as exc:
        text = str(exc)
        if not text.startswith(f"{field}:"):
            text = f"{field}: {text}"
        module.fail_json(msg=text)

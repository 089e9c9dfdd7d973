# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Controller-side action for neonops.storage.tenant_migration_step.

A module costs a new Python interpreter, the AnsiballZ payload and the imports at every call (about 0.25 s on an
idle machine, several times that on a busy one), and the runbook calls its engine a dozen times per move. The
engine only talks HTTP to the fleet and keeps files on the controller, so it runs here, in the task's worker,
with the module's own argument spec, defaults (module_defaults included), fallbacks and no_log handling.
"""

from __future__ import annotations

import getpass
import os
import socket

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonClient
from ansible_collections.neonops.storage.plugins.module_utils._migration import MigrationError
from ansible_collections.neonops.storage.plugins.modules.tenant_migration_step import (
    argument_spec,
    param_error,
    run_phase,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        validated = ArgumentSpecValidator(argument_spec()).validate(dict(self._task.args))
        secrets = {str(v) for v in validated._no_log_values if v}
        if validated.error_messages:
            return {**result, "failed": True, "msg": _redact("; ".join(validated.error_messages), secrets)}
        params = validated.validated_parameters
        if params["phase"] == "begin" and not params.get("owner"):
            # This worker's parent is ansible-playbook itself: while it runs, the lock's holder is alive.
            params["owner"] = {"host": socket.gethostname(), "pid": os.getppid(), "user": getpass.getuser()}
        error = param_error(params)
        if error:
            return {**result, "failed": True, "msg": error}
        warnings = []

        def clients(url, token, field):
            timeout = params.get("timeout")
            if timeout is None or not timeout > 0:
                raise MigrationError(f"timeout: must be a positive number of seconds, got {timeout!r}")
            try:
                return NeonClient(
                    url,
                    token=token,
                    validate_certs=params["validate_certs"],
                    ca_path=params.get("ca_path"),
                    timeout=timeout,
                    retries=params.get("retries", 3),
                    warn=warnings.append,
                )
            except ValueError as exc:
                raise MigrationError(f"{field}: {exc}") from None

        failed, outcome = run_phase(params, bool(self._task.check_mode), clients, warnings.append)
        outcome = _redact_all(outcome, secrets)
        if failed:
            outcome["failed"] = True
        if warnings:
            outcome["warnings"] = [_redact(w, secrets) for w in warnings]
        return {**result, **outcome}


def _redact(text, secrets):
    for secret in secrets:
        text = text.replace(secret, "********")
    return text


def _redact_all(value, secrets):
    """Tokens never leave in a result, whatever path an error message took."""
    if not secrets:
        return value
    if isinstance(value, str):
        return _redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redact_all(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_all(v, secrets) for v in value]
    return value

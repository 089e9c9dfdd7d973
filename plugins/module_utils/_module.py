# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Common argspec, option rules, client factory and error helpers for modules. Internal; may change in any release."""

from __future__ import annotations

import copy
import json
import math
import os
import re
from typing import TYPE_CHECKING

from ansible.module_utils import basic as _basic
from ansible.module_utils.basic import env_fallback, missing_required_lib
from ansible.module_utils.errors import NoLogError
from ansible_collections.neonops.storage.plugins.module_utils._client import (
    HAS_REQUESTS,
    MAX_RETRIES,
    MAX_TIMEOUT,
    REQUESTS_IMPORT_ERROR,
    NeonAPIError,
    NeonClient,
    check_ca_path,
    check_retries,
    check_timeout,
)
from ansible_collections.neonops.storage.plugins.module_utils._echo import cut, echo
from ansible_collections.neonops.storage.plugins.module_utils._ids import NODE_ID_MAX

NEON_CONNECTION_SPEC = {
    "api_url": {"type": "str", "required": True, "fallback": (env_fallback, ["NEONOPS_API_URL"])},
    "api_token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["NEONOPS_API_TOKEN"])},
    "validate_certs": {"type": "bool", "default": True, "fallback": (env_fallback, ["NEONOPS_VALIDATE_CERTS"])},
    "ca_path": {"type": "path", "fallback": (env_fallback, ["NEONOPS_CA_PATH"])},
    "timeout": {"type": "float", "default": 30.0, "fallback": (env_fallback, ["NEONOPS_TIMEOUT"])},
    "retries": {"type": "int", "default": 3},
}

U32_MAX = 0xFFFFFFFF
MAX_WAIT = 7 * 86400.0  # seconds: the longest wait_timeout
MAX_WAIT_MS = 3_600_000  # milliseconds: the longest flush_ms or wait_ms (one server-side wait)


class Range:
    """Bounds of a numeric option (both ends included unless ``above`` is set: then the value must exceed it)."""

    def __init__(self, low, high, unit="", above=None):
        self.low, self.high, self.unit, self.above = low, high, unit, above

    def problem(self, value, integer: bool) -> str | None:
        unit = f" {self.unit}" if self.unit else ""
        if integer:
            if isinstance(value, bool):
                return f"must be an integer, got the boolean {value}"
            if not isinstance(value, int):
                return f"must be an integer, got {echo(value)}"
            if not self.low <= value <= self.high:
                return f"must be an integer from {self.low} to {self.high}{unit}, got {echo(value)}"
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"must be a finite number{unit}, got {echo(value)}"
        if self.above is not None and not self.above < value <= self.high:
            return f"must be more than {self.above:g} and at most {self.high:g}{unit}, got {echo(value)}"
        if self.above is None and not self.low <= value <= self.high:
            return f"must be from {self.low:g} to {self.high:g}{unit}, got {echo(value)}"
        return None


# Bounds of every numeric option, by option name: a name means the same thing in every module (one rule).
# An integer option never takes a boolean (YAML `true` is an int to Python).
NUMBER_LIMITS = {
    "timeout": Range(0, MAX_TIMEOUT, "seconds", above=0),
    "retries": Range(0, MAX_RETRIES),
    "wait_timeout": Range(0, MAX_WAIT, "seconds"),
    "poll_interval": Range(0, 3600, "seconds"),
    "flush_ms": Range(0, MAX_WAIT_MS, "milliseconds"),
    "wait_ms": Range(0, MAX_WAIT_MS, "milliseconds"),
    "generation": Range(0, U32_MAX),  # a u32 (libs/utils/src/generation.rs in neondatabase/neon)
    "node_id": Range(0, NODE_ID_MAX),
    "shard_number": Range(0, 255),  # u8 (libs/utils/src/shard.rs)
    "shard_count": Range(0, 255),
    "shard_stripe_size": Range(0, U32_MAX, "pages"),  # u32
    "pg_version": Range(14, 99),  # a Postgres major version; Neon supports 14 and later
    # A node's registration with the storage controller (NodeRegisterRequest): TCP ports.
    "listen_http_port": Range(1, 65535, "(a TCP port)"),
    "listen_https_port": Range(1, 65535, "(a TCP port)"),
    "listen_pg_port": Range(1, 65535, "(a TCP port)"),
    "listen_grpc_port": Range(1, 65535, "(a TCP port)"),
    # pageserver_disk_plan: disk use in percent of the file system, and a count of tenant moves
    "target_pct": Range(0, 100, "percent", above=0),
    "destination_max_pct": Range(0, 100, "percent", above=0),
    "max_tenants": Range(1, 10_000),
}
DEFAULT_INT_LIMIT = Range(0, (1 << 63) - 1)
DEFAULT_FLOAT_LIMIT = Range(0, 1e9)

# Sizes of string, list and free-form dict options: input can be megabytes long, and nothing of that size is sent.
STRING_LIMITS = {
    "api_token": 65536,
    "source_api_token": 65536,
    "safekeeper_api_token": 65536,
    # amazon.aws's credentials (the S3 modules): an STS session token can be several KiB.
    "session_token": 65536,
    "secret_key": 65536,
    "access_key": 65536,
}
DEFAULT_STRING_LIMIT = 4096
LIST_LIMITS: dict[str, int] = {}
DEFAULT_LIST_LIMIT = 1024
DICT_LIMITS = {"spec": 4 << 20, "compute_ctl_config": 1 << 20}  # characters of the option as JSON
DEFAULT_DICT_LIMIT = 65536
MAX_MESSAGE = 2000  # characters of a failure message


# A number given as text: ansible-core's conversion would also take "80\n", " 80", "8_0" or "\u0668\u0660" (Python's
# int()/float() accept surrounding whitespace, underscores and any Unicode digit). ASCII only, nothing around it.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf|infinity)", re.IGNORECASE)


def number_text_problem(field: str, value, kind: str) -> str | None:
    """What is wrong with ``value`` as given (before conversion) for an int or float option, or None."""
    if not isinstance(value, str):
        return None
    pattern = _INT_TEXT if kind == "int" else _FLOAT_TEXT
    if pattern.fullmatch(value):
        return None
    what = "an integer" if kind == "int" else "a number"
    return f"{field}: must be {what} written in ASCII digits without spaces, got {echo(value)}"


def raw_numbers_problem(raw: dict, argument_spec: dict, prefix: str = "") -> str | None:
    """The first int or float option that was given as text other than plain ASCII digits (see above), or None.

    ``raw`` is the parameters as given, before conversion. Suboptions are checked too (named by their path, as
    ``items[0].node_id``), and so is an environment fallback the option was not given over.
    """
    for name, spec in argument_spec.items():
        kind = spec.get("type")
        given = [alias for alias in (name, *spec.get("aliases", ())) if alias in raw]
        for alias in given:
            field, value = prefix + alias, raw[alias]
            if kind in ("int", "float"):
                problem = number_text_problem(field, value, kind)
            else:
                problem = _suboption_numbers_problem(field, value, spec.get("options"))
            if problem:
                return problem
        if not given and kind in ("int", "float"):
            variable = _env_fallback_variable(spec)
            if variable:
                problem = number_text_problem(f"{prefix}{name} (from {variable})", os.environ[variable], kind)
                if problem:
                    return problem
    return None


def _suboption_numbers_problem(field: str, value, options: dict | None) -> str | None:
    if not options:
        return None
    if isinstance(value, dict):
        return raw_numbers_problem(value, options, f"{field}.")
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                problem = raw_numbers_problem(item, options, f"{field}[{index}].")
                if problem:
                    return problem
    return None


def _env_fallback_variable(spec: dict) -> str | None:
    """The environment variable an ``env_fallback`` option takes its value from now (ansible-core takes the first
    one set), or None."""
    fallback = spec.get("fallback") or ()
    if not fallback or fallback[0] is not env_fallback:
        return None
    names = fallback[1] if len(fallback) > 1 and isinstance(fallback[1], (list, tuple)) else fallback[1:]
    return next((variable for variable in names if isinstance(variable, str) and variable in os.environ), None)


def neon_argument_spec(**module_options) -> dict:
    """The connection options plus the module's own."""
    spec = copy.deepcopy(NEON_CONNECTION_SPEC)
    spec.update(module_options)
    return spec


def _leaf(field: str) -> str:
    """The option name a limit is looked up by: ``pageservers[0].node_id`` -> ``node_id``."""
    return field.rsplit(".", 1)[-1].split("[", 1)[0]


def free_form_problem(value, limit):
    """NUL characters, non-finite numbers and size of a free-form dict or list option."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return "contains a NUL character"
                pending.append(inner)
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            return "contains a NUL character"
    try:
        size = len(json.dumps(value, allow_nan=False, default=str))
    except ValueError:
        return "contains a number that is not finite (NaN or infinity), which JSON cannot carry"
    if size > limit:
        return f"is {size} characters as JSON, more than the {limit} allowed"
    return None


def option_problem(field: str, value, spec: dict, limits: dict | None = None) -> str | None:
    """What is wrong with one option's (already type-converted) value, as ``"<field>: <problem>"``, or None.

    Every integer refuses booleans and every number has bounds (``NUMBER_LIMITS``, by option name); strings,
    lists and free-form dicts have a maximum size and never carry a NUL character. Suboptions are checked too.
    """
    if value is None:
        return None
    kind = spec.get("type", "str")
    name = _leaf(field)
    if kind in ("int", "float"):
        limit = (limits or {}).get(name) or NUMBER_LIMITS.get(name)
        limit = limit or (DEFAULT_INT_LIMIT if kind == "int" else DEFAULT_FLOAT_LIMIT)
        problem = limit.problem(value, integer=kind == "int")
        return f"{field}: {problem}" if problem else None
    if kind in ("str", "path"):
        if not isinstance(value, str):
            return None
        if "\x00" in value:
            return f"{field}: contains a NUL character"
        limit = STRING_LIMITS.get(name, DEFAULT_STRING_LIMIT)
        if len(value) > limit:
            return f"{field}: is {len(value)} characters long, more than the {limit} allowed"
        return None
    if kind == "list" and isinstance(value, list):
        limit = LIST_LIMITS.get(name, DEFAULT_LIST_LIMIT)
        if len(value) > limit:
            return f"{field}: has {len(value)} entries, more than the {limit} allowed"
        element = {"type": spec.get("elements", "raw"), "options": spec.get("options")}
        for index, item in enumerate(value):
            problem = option_problem(f"{field}[{index}]", item, element, limits)
            if problem:
                return problem
        return None
    if kind == "dict" and isinstance(value, dict):
        if spec.get("options"):
            for sub, sub_spec in spec["options"].items():
                problem = option_problem(f"{field}.{sub}", value.get(sub), sub_spec, limits)
                if problem:
                    return problem
            return None
        problem = free_form_problem(value, DICT_LIMITS.get(name, DEFAULT_DICT_LIMIT))
        return f"{field}: {problem}" if problem else None
    if kind == "raw":
        problem = free_form_problem(value, DEFAULT_DICT_LIMIT)
        return f"{field}: {problem}" if problem else None
    return None


def options_problem(
    params: dict, argument_spec: dict, limits: dict | None = None, given_as: dict | None = None
) -> str | None:
    """The first problem among all options (see ``option_problem``), or None.

    ``given_as`` maps an option name to the alias the caller wrote it as; the message names that alias.
    """
    for name, spec in argument_spec.items():
        problem = option_problem(name, params.get(name), spec, limits)
        if problem:
            alias = (given_as or {}).get(name)
            if alias and problem.startswith(name):
                problem = f"{alias} (alias of {name}){problem[len(name) :]}"
            return problem
    return None


if TYPE_CHECKING:
    # What the mixin is combined with (neon_module); type checkers then see AnsibleModule's attributes.
    from ansible.module_utils.basic import AnsibleModule as _ModuleBase
else:
    _ModuleBase = object


class NeonModuleMixin(_ModuleBase):
    """The collection's rules for hostile input and for failures after a change, on top of AnsibleModule.

    - Every option is checked (``options_problem``) before the module runs, so before any request; an int or
      float option given as text must be plain ASCII digits (``raw_numbers_problem``).
    - A parameter with a NUL character is logged escaped (syslog and journald refuse it), so the check
      above names the field instead of failing with "Failed to log to syslog".
    - When ansible-core's own argument check fails with a no_log conversion error first (which names no
      option), the message is the first error that does.
    - A failure after a client made by ``client_from_module``/``client_for_url`` had a mutating request
      accepted reports ``changed: true`` and says which request was accepted.
    - ``msg`` is cut to a readable size.

    ``limits`` maps option names to ``Range`` where a module needs other bounds than ``NUMBER_LIMITS``.
    Build it with ``neon_module()``.
    """

    def __init__(self, argument_spec, limits=None, **kwargs):
        self.neon_clients = []
        self._neon_starting = True
        self._neon_raw: dict = {}
        super().__init__(argument_spec=argument_spec, **kwargs)
        self._neon_starting = False
        # ansible-core keeps the names as given next to the canonical ones: name an option as the caller wrote it.
        given_as = {name: alias for alias, name in self.aliases.items() if alias in self.params}
        problem = raw_numbers_problem(self._neon_raw, argument_spec)
        problem = problem or options_problem(self.params, argument_spec, limits, given_as)
        if problem:
            self.fail_json(msg=problem)

    def _load_params(self):
        super()._load_params()
        # The values as given: type conversion replaces them in self.params.
        # Suboptions are converted in place, so nested dicts and lists are copied (strings are shared, not copied).
        self._neon_raw = copy.deepcopy(dict(self.params or {}))

    def log(self, msg, log_args=None):
        if isinstance(msg, str):
            msg = msg.replace("\x00", "\\x00")
        if log_args:
            log_args = {key: str(value).replace("\x00", "\\x00") for key, value in log_args.items()}
        super().log(msg, log_args=log_args)

    def fail_json(self, msg, **kwargs):
        if self._neon_starting:
            msg = self._named_validation_message(msg)
        mutations = [m for client in self.neon_clients for m in client.mutations]
        if mutations and "changed" not in kwargs:
            kwargs["changed"] = True
            msg = f"{msg} (after the server accepted {mutations[-1]}, so something changed)"
        super().fail_json(msg=cut(msg, MAX_MESSAGE), **kwargs)

    def _named_validation_message(self, msg):
        result = getattr(self, "validation_result", None)
        errors = list(getattr(result, "errors", None) or [])
        if errors and isinstance(errors[0], NoLogError):
            for error in errors:
                if not isinstance(error, NoLogError):
                    return str(error)
        return msg


_MODULE_CLASSES: dict[type, type] = {}


def neon_module(argument_spec, limits=None, **kwargs):
    """An AnsibleModule with ``NeonModuleMixin``; every module builds its module object with this (the S3
    modules through ``_s3.aws_module``).

    The AnsibleModule class is looked up at each call, so tools that substitute their own (ansible-lint's
    args rule, ansible-test's validate-modules) see the module's argument spec as usual.
    """
    base = _basic.AnsibleModule
    cls = _MODULE_CLASSES.get(base)
    if cls is None:
        cls = _MODULE_CLASSES[base] = type("NeonModule", (NeonModuleMixin, base), {})
    return cls(argument_spec, limits=limits, **kwargs)


def client_from_module(module, url_option="api_url", token_option="api_token", error_key="msg") -> NeonClient:
    """Build the client from the module's connection options; fail_json on a bad URL or missing requests."""
    params = module.params
    return client_for_url(module, params.get(url_option), params.get(token_option), url_option, error_key)


def client_for_url(module, url, token=None, field="api_url", error_key="msg") -> NeonClient:
    """A client for another service URL (e.g. one of several safekeepers) with the module's TLS/timeout/retries."""
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    params = module.params
    validate_certs = params.get("validate_certs", True)
    try:
        if validate_certs:
            check_ca_path(params.get("ca_path"))
        timeout = check_timeout(params.get("timeout") if params.get("timeout") is not None else 30.0)
        retries = check_retries(params.get("retries") if params.get("retries") is not None else 3)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        client = NeonClient(
            url,
            token=token,
            validate_certs=validate_certs,
            ca_path=params.get("ca_path"),
            timeout=timeout,
            retries=retries,
            warn=module.warn,
            error_key=error_key,
        )
    except ValueError as exc:
        module.fail_json(msg=f"{field}: {exc}")
    if isinstance(getattr(module, "neon_clients", None), list):
        module.neon_clients.append(client)
    return client


UNKNOWN_ROUTE_REASON = (
    "the URL does not serve this API (HTTP 404 for the route itself, not the service's 'not found' for an object)"
)


def fail_api(module, exc: NeonAPIError, attempted: str, reason: str | None = None, **extra):
    """fail_json with what was attempted, the request and the server's message (the token is never part of it).

    ``reason`` is the module's reading of the error (e.g. "not attached on this pageserver"). A 404 that is
    not the service's own "not found" for an object gets ``UNKNOWN_ROUTE_REASON`` when no reason is given.
    """
    if reason is None and exc.unknown_route:
        reason = UNKNOWN_ROUTE_REASON
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
        if not text.startswith((f"{field}:", f"{field}.", f"{field}[")):
            text = f"{field}: {text}"
        module.fail_json(msg=text)

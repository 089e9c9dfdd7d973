# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""The tenant_migration role's variables and inventory, checked before a run starts. Internal; may change.

``role_vars_problem`` names the one variable that is wrong, with its value (cut when long) and the rule it
breaks, instead of Ansible's argument-spec failure, which prints every rule of the role. It is stricter than
Ansible's type conversion where that conversion hides a mistake: a boolean is not an integer, ``nan``, ``inf`` and
digits of other scripts are not numbers, a list is not a string. The types, choices and required variables come
from the role's ``meta/argument_specs.yml``; the bounds and formats are here. ``inventory_problem`` checks the
service URLs and node ids the run will use, so a bad inventory value is refused before the first request.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence

from ansible_collections.neonops.storage.plugins.module_utils._client import (
    MAX_RETRIES,
    MAX_TIMEOUT,
    check_ca_path,
    check_url,
)
from ansible_collections.neonops.storage.plugins.module_utils._echo import echo
from ansible_collections.neonops.storage.plugins.module_utils._ids import NODE_ID_MAX, validate_tenant_id
from ansible_collections.neonops.storage.plugins.module_utils._migration import MigrationError, normalize_shard_filter
from ansible_collections.neonops.storage.plugins.module_utils._module import free_form_problem
from ansible_collections.neonops.storage.plugins.module_utils._pageserver import validate_overrides

PREFIX = "tenant_migration_"

# Bounds of the engine's numeric settings (tenant_migration_step's ``settings``, the role's variables without the
# prefix): finite and within sane limits, as (lowest, highest).
SETTINGS_BOUNDS: dict[str, tuple[float, float]] = {
    "download_request_ms": (0, 3_600_000),
    "download_timeout": (0, 86_400),
    "flush_ms": (0, 3_600_000),
    "attach_timeout": (1, 86_400),
    "catchup_timeout": (0, 86_400),
    "catchup_poll_interval": (0.01, 60),
    "remote_lsn_timeout": (0, 86_400),
    "disk_headroom_ratio": (0, 100),
    "lock_stale_after": (1, 30 * 86_400),
    "source_grace": (0, 3_600),
}
# The role's other numbers: the connection options every module gets, the compute's wait and the S3 copy's width.
ROLE_BOUNDS: dict[str, tuple[float, float]] = {
    **{PREFIX + key: bounds for key, bounds in SETTINGS_BOUNDS.items()},
    PREFIX + "compute_timeout": (0, 7 * 86_400),
    PREFIX + "api_retries": (0, MAX_RETRIES),
    PREFIX + "s3_concurrency": (1, 64),  # as s3_tenant_copy's concurrency
}
# Numbers that must be more than their lowest bound: (exclusive lowest, highest).
ROLE_BOUNDS_ABOVE: dict[str, tuple[float, float]] = {PREFIX + "api_timeout": (0, MAX_TIMEOUT)}

MAX_STRING = 4096  # characters of a string variable (ids, names, paths, a restart command)
MAX_DICT_JSON = 65536  # characters of a dict variable as JSON
MAX_LIST = 1024  # entries of a list variable
# What a number given as text may look like: ASCII digits only (Python's int() and float() also take the digits
# of other scripts, "nan" and "inf").
_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
# Ansible's boolean spellings (ansible.module_utils.parsing.convert_bool).
_TRUE = {"yes", "on", "1", "true", "y", "t"}
_FALSE = {"no", "off", "0", "false", "n", "f", ""}
# Variables that name a pageserver may be its node id, a number.
_NODE_VARS = (PREFIX + "source", PREFIX + "destination")
# Inventory variables with a service URL, per group (docs/contracts.md section 4).
URL_GROUPS = ("pageservers", "safekeepers", "storage_controller", "computes")


def _kind(value) -> str:
    """The YAML/JSON name of a value's type (Ansible wraps lists and dicts in its own classes)."""
    for types, kind in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if isinstance(value, types):
            return kind
    if isinstance(value, Mapping):
        return "dict"
    if isinstance(value, Sequence):
        return "list"
    return type(value).__name__


def _str_problem(value) -> str | None:
    if "\x00" in value:
        return f"contains a NUL character: {echo(value)}"
    if len(value) > MAX_STRING:
        return f"is {len(value)} characters long, more than the {MAX_STRING} allowed: {echo(value)}"
    return None


def _number(name: str, value, kind: str):
    """``(number, problem)``: the value as an int or a float, or why it is not one."""
    integer = kind == "int"
    wanted = "an integer" if integer else "a number"
    if isinstance(value, bool):
        return None, f"must be {wanted}, got the boolean {str(value).lower()}"
    if isinstance(value, str):
        text = value.strip()
        if not (_INT_TEXT if integer else _FLOAT_TEXT).match(text):
            return None, f"must be {wanted} (ASCII digits), got {echo(value)}"
        value = int(text) if integer else float(text)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, f"must be a finite number, got {echo(value)}"
        if integer:
            if not value.is_integer():
                return None, f"must be an integer, got {echo(value)}"
            value = int(value)
    if not isinstance(value, (int, float)):
        return None, f"must be {wanted}, got {_kind(value)} {echo(value)}"
    return value, None


def _bounds_problem(name: str, number, given) -> str | None:
    """``number`` is ``given`` converted; the message shows what the operator wrote."""
    if name in ROLE_BOUNDS_ABOVE:
        low, high = ROLE_BOUNDS_ABOVE[name]
        if not low < number <= high:
            return f"must be more than {low:g} and at most {high:g}, got {echo(given)}"
        return None
    low, high = ROLE_BOUNDS.get(name, (0, 1 << 53))
    if not low <= number <= high:
        return f"must be from {low:g} to {high:g}, got {echo(given)}"
    return None


def _bool_problem(value) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return None
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return None
    return f"must be a boolean (true or false), got {echo(value)}"


def _dict_problem(value) -> str | None:
    if not isinstance(value, Mapping):
        return f"must be a dict (a mapping), got {_kind(value)} {echo(value)}"
    return free_form_problem(value, MAX_DICT_JSON)


def _list_problem(value, elements: str | None, choices=None) -> str | None:
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",")]  # Ansible's comma-separated list
    if isinstance(value, Mapping) or not isinstance(value, Sequence):
        return f"must be a list, got {_kind(value)} {echo(value)}"
    if len(value) > MAX_LIST:
        return f"has {len(value)} entries, more than the {MAX_LIST} allowed"
    for index, item in enumerate(value):
        if elements == "str":
            if not isinstance(item, str) or not item:
                return f"[{index}] must be a non-empty string, got {echo(item)}"
            problem = _str_problem(item)
            if problem:
                return f"[{index}] {problem}"
    return None


def option_problem(name: str, value, spec: dict) -> str | None:
    """What is wrong with one role variable for its argument spec entry, without the name; None when fine."""
    kind = spec.get("type", "str")
    if value is None:
        return "is required" if spec.get("required") else None
    if kind in ("str", "path"):
        if name in _NODE_VARS and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return f"must be a string, got {_kind(value)} {echo(value)}"
        problem = _str_problem(value)
        if problem:
            return problem
        if spec.get("required") and not value.strip():
            return "is required and must not be empty"
        if spec.get("choices") and value not in spec["choices"]:
            return f"must be one of {', '.join(spec['choices'])}, got {echo(value)}"
        return None
    if kind in ("int", "float"):
        number, problem = _number(name, value, kind)
        return problem or _bounds_problem(name, number, value)
    if kind == "bool":
        return _bool_problem(value)
    if kind == "dict":
        return _dict_problem(value)
    if kind == "list":
        return _list_problem(value, spec.get("elements"))
    return None


def _semantic_problem(name: str, value, values: dict) -> str | None:
    """Formats beyond the type: ids, shards, durations, paths that must exist."""
    try:
        if name == PREFIX + "tenant_id":
            validate_tenant_id(value)
        elif name == PREFIX + "shard" and value:
            tenant = str(values.get(PREFIX + "tenant_id") or "").lower()
            normalize_shard_filter(tenant, value)
        elif name == PREFIX + "suspend_overrides":
            validate_overrides(value, "overrides")
        elif name == PREFIX + "ca_path" and value:
            check_ca_path(value)
    except (ValueError, MigrationError) as exc:
        text = str(exc)
        # The helpers name their own field (tenant_id:, shard:, ...): the operator's name is the variable's.
        for field in ("tenant_id: ", "shard: ", "ca_path: "):
            if text.startswith(field):
                text = text[len(field) :]
        return text
    return None


def role_vars_problem(values: dict, argument_spec: dict) -> str | None:
    """The first problem among the role's variables as ``"<variable>: <problem>"``, or None.

    ``values`` maps the role's variable names (``tenant_migration_*``) to their values as the play sees them
    (unset ones absent); ``argument_spec`` is the ``options`` of the role's ``meta/argument_specs.yml``.
    """
    for name in sorted(values):
        if name.startswith(PREFIX) and name not in argument_spec:
            close = difflib.get_close_matches(name, list(argument_spec), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"{name}: not a variable of the tenant_migration role{hint}"
    for name, spec in argument_spec.items():
        value = values.get(name)
        problem = option_problem(name, value, spec)
        if problem is None and value is not None:
            problem = _semantic_problem(name, value, values)
        if problem:
            return f"{name}: {problem}"
    source, destination = values.get(PREFIX + "source"), values.get(PREFIX + "destination")
    if source is not None and str(source).strip() == str(destination).strip():
        return (
            f"{PREFIX}destination: {echo(destination)} is also the source ({PREFIX}source): a tenant moves "
            "between two different pageservers"
        )
    return None


def _node_id_problem(value) -> str | None:
    number, problem = _number("neon_node_id", value, "int")
    if problem:
        return problem
    if not 0 <= number <= NODE_ID_MAX:
        return f"must be from 0 to {NODE_ID_MAX}, got {echo(value)}"
    return None


def inventory_problem(hosts_by_group: dict, hostvars) -> str | None:
    """The first bad service URL or node id among the inventory hosts a run uses, naming host and variable.

    ``hosts_by_group`` maps a group name (``URL_GROUPS``) to its inventory hostnames; ``hostvars`` gives each
    host's variables. User information in a URL is masked in the message.
    """
    for group in URL_GROUPS:
        for host in hosts_by_group.get(group) or []:
            hv = hostvars[host]
            where = f"inventory host {host} (group {group})"
            if group == "pageservers":
                # What the engine needs of every pageserver (docs/contracts.md section 4).
                for var in ("neon_api_url", "neon_node_id", "neon_pg_addr"):
                    if hv.get(var) in (None, ""):
                        return f"{where}: {var}: required for every pageserver"
                problem = _node_id_problem(hv.get("neon_node_id"))
                if problem:
                    return f"{where}: neon_node_id: {problem}"
                try:
                    check_url(f"postgres://{hv.get('neon_pg_addr')}", schemes=("postgres",), example="host:port")
                except ValueError as exc:
                    return f"{where}: neon_pg_addr: {str(exc).replace('postgres://', '', 1)}"
            url = hv.get("neon_api_url")
            if url not in (None, ""):
                try:
                    check_url(url)
                except ValueError as exc:
                    return f"{where}: neon_api_url: {exc}"
    return None


def node_problem(values: dict, pageservers: list) -> str | None:
    """``tenant_migration_source``/``_destination`` must name a pageserver of the inventory (hostname or node id).

    ``pageservers`` are ``{"name", "node_id"}`` entries of group ``pageservers``.
    """
    for var in _NODE_VARS:
        wanted = str(values.get(var) if values.get(var) is not None else "").strip()
        if any(wanted in (p.get("name"), str(p.get("node_id"))) for p in pageservers):
            continue
        known = ", ".join(f"{p.get('name')} (node {p.get('node_id')})" for p in pageservers) or "none"
        return (
            f"{var}: {echo(values.get(var))} is neither an inventory hostname nor a node id of group pageservers: "
            f"{known}"
        )
    return None

# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""compute_ctl wrappers and the pure helpers around a compute's pageserver connection.

Internal to neonops.storage; may change in any release. compute_ctl answers errors as ``{"error": ...}``,
so build its client with ``error_key="error"``.
"""

from __future__ import annotations

import copy
import json
import re

from ansible_collections.neonops.storage.plugins.module_utils._client import hostname_problem
from ansible_collections.neonops.storage.plugins.module_utils._echo import echo
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_node_id

CONFIGURABLE_STATUSES = ("empty", "running")
# Statuses from which a compute never returns to running on its own.
TERMINAL_STATUSES = ("failed", "termination_pending_fast", "termination_pending_immediate", "terminated")

CONNSTRING_GUC = "neon.pageserver_connstring"
STRIPE_SIZE_GUC = "neon.stripe_size"

MAX_SHARD_COUNT = 255
MAX_STRIPE_SIZE = 2**32 - 1  # ShardStripeSize is a u32 count of 8 KiB pages
PREFER_PROTOCOLS = ("libpq", "grpc")

_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
_URL_TAIL = r"://(?P<user>[^@/:\s,]+)@(?P<host>" + _HOST + r"):(?P<port>[0-9]{1,5})/?"
# Used with fullmatch(): "$" would also match before a trailing newline. re.ASCII keeps \s to ASCII spaces.
LIBPQ_URL_RE = re.compile(r"postgres(?:ql)?" + _URL_TAIL, re.ASCII)
GRPC_URL_RE = re.compile(r"grpc" + _URL_TAIL, re.ASCII)
MAX_URL_LENGTH = 2048

SECRET_SPEC_KEYS = ("storage_auth_token", "encrypted_password", "password")
REDACTED = "********"


# ---------------------------------------------------------------------------------------------------------
# API wrappers


def _status_problem(data):
    if not isinstance(data.get("status"), str):
        return f"status: expected a compute status text, got {echo(data.get('status'))}"
    return None


def status(client) -> dict:
    """``GET /status`` → ComputeStatusResponse."""
    return client.get("/status", returns=dict, check=_status_problem).data


def configure(client, spec: dict, compute_ctl_config: dict, timeout: float | None = None) -> dict:
    """``POST /configure``; blocks server-side until the compute is running again (or failed)."""
    body = {"spec": spec, "compute_ctl_config": compute_ctl_config}
    return client.post("/configure", json=body, timeout=timeout).data


# ---------------------------------------------------------------------------------------------------------
# Validation


def _shown_url(url) -> str:
    """The URL for a message, with a password (``user:password@``) masked."""
    if isinstance(url, str):
        url = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:********@", url, count=1)
    return echo(url)


def _validate_url(url, pattern, field, example):
    match = pattern.fullmatch(url) if isinstance(url, str) and len(url) <= MAX_URL_LENGTH else None
    if not match or not url.isascii():
        raise ValueError(f"{field}: {_shown_url(url)} is not a valid URL (expected {example}, without a password)")
    host = match.group("host")
    problem = hostname_problem(host[1:-1] if host.startswith("[") else host)
    if problem:
        raise ValueError(f"{field}: {_shown_url(url)} is not a valid URL: {problem}")
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"{field}: {_shown_url(url)} has port {port} outside 1..65535")
    return url.rstrip("/")


def validate_libpq_url(url, field="libpq_url") -> str:
    return _validate_url(url, LIBPQ_URL_RE, field, "postgres://user@host:port or postgresql://user@host:port")


def validate_grpc_url(url, field="grpc_url") -> str:
    return _validate_url(url, GRPC_URL_RE, field, "grpc://user@host:port")


def validate_shard_count(value, field="shard_count") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SHARD_COUNT:
        raise ValueError(f"{field}: {echo(value)} is not a valid shard count (0 for unsharded, or 1..255)")
    return value


def validate_stripe_size(value, field="shard_stripe_size") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_STRIPE_SIZE:
        raise ValueError(f"{field}: {echo(value)} is not a valid stripe size (1..{MAX_STRIPE_SIZE} pages of 8 KiB)")
    return value


def _ascii_int(text):
    """An integer from ASCII digits only (``int()`` also takes other scripts' digits), else None."""
    text = str(text).strip()
    return int(text) if text and text.isascii() and text.isdigit() else None


def shard_index(shard_number: int, shard_count: int) -> str:
    """ShardIndex text ``NNCC`` (``"0000"`` for unsharded)."""
    return f"{shard_number:02x}{shard_count:02x}"


# ---------------------------------------------------------------------------------------------------------
# Connection info (ComputeSpec.pageserver_connection_info and its legacy forms)


def build_connection_info(pageservers: list, shard_count: int, stripe_size: int | None, prefer_protocol="libpq"):
    """Validate the per-shard pageservers and return a ``pageserver_connection_info`` dict.

    ``pageservers`` is one entry per shard, in shard order: ``{"node_id", "libpq_url", "grpc_url"}``.
    """
    validate_shard_count(shard_count)
    shards_expected = max(shard_count, 1)
    if len(pageservers) != shards_expected:
        raise ValueError(
            f"pageservers: {len(pageservers)} entries given, but shard_count {shard_count} needs exactly "
            f"{shards_expected} (one per shard, in shard order)"
        )
    if shard_count == 0:
        if stripe_size is not None:
            raise ValueError(
                f"shard_stripe_size: must be unset for an unsharded tenant (shard_count 0), got {stripe_size}"
            )
    elif stripe_size is None:
        raise ValueError(f"shard_stripe_size: required for a sharded tenant (shard_count {shard_count})")
    else:
        validate_stripe_size(stripe_size)
    if prefer_protocol not in PREFER_PROTOCOLS:
        raise ValueError(f"prefer_protocol: {echo(prefer_protocol)} is not one of {', '.join(PREFER_PROTOCOLS)}")
    shards = {}
    for number, entry in enumerate(pageservers):
        where = f"pageservers[{number}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a dict with libpq_url (and node_id, grpc_url), got {echo(entry)}")
        node_id = entry.get("node_id")
        if node_id is not None:
            validate_node_id(node_id, f"{where}.node_id")
        grpc_url = entry.get("grpc_url")
        if prefer_protocol == "grpc" and not grpc_url:
            raise ValueError(f"{where}.grpc_url: required when prefer_protocol is grpc")
        shards[shard_index(number, shard_count)] = {
            "pageservers": [
                {
                    "id": node_id,
                    "libpq_url": validate_libpq_url(entry.get("libpq_url"), f"{where}.libpq_url"),
                    "grpc_url": validate_grpc_url(grpc_url, f"{where}.grpc_url") if grpc_url else None,
                }
            ]
        }
    return {
        "shard_count": shard_count,
        "stripe_size": stripe_size if shard_count else None,
        "shards": shards,
        "prefer_protocol": prefer_protocol,
    }


def _shard_sort_key(index: str):
    return int(index[:2], 16), index


def connstring_from_connection_info(info: dict) -> str:
    """The libpq connstring compute_ctl derives: the first pageserver of each shard, in shard order."""
    urls = []
    for index in sorted(info.get("shards") or {}, key=_shard_sort_key):
        servers = info["shards"][index].get("pageservers") or []
        urls.append((servers[0].get("libpq_url") or "") if servers else "")
    return ",".join(urls)


def normalize_connstring(value) -> str | None:
    if value is None:
        return None
    return ",".join(part.strip() for part in str(value).split(",") if part.strip())


def _settings_guc(spec: dict, name: str):
    for setting in (spec.get("cluster") or {}).get("settings") or []:
        if isinstance(setting, dict) and setting.get("name") == name:
            return setting
    return None


def spec_connection(spec: dict) -> dict:
    """Read the pageserver connection from a ComputeSpec, preferring the newest form present.

    Returns ``{"connstring", "stripe_size", "shard_count", "source"}``; ``source`` names the spec field
    used, or is ``None`` when the spec names no pageserver.
    """
    info = spec.get("pageserver_connection_info")
    if info:
        return {
            "connstring": normalize_connstring(connstring_from_connection_info(info)),
            "stripe_size": info.get("stripe_size"),
            "shard_count": info.get("shard_count"),
            "source": "pageserver_connection_info",
        }
    if spec.get("pageserver_connstring"):
        connstring = normalize_connstring(spec["pageserver_connstring"])
        return {
            "connstring": connstring,
            "stripe_size": spec.get("shard_stripe_size"),
            "shard_count": None,
            "source": "pageserver_connstring",
        }
    setting = _settings_guc(spec, CONNSTRING_GUC)
    if setting and setting.get("value"):
        stripe = _settings_guc(spec, STRIPE_SIZE_GUC)
        return {
            "connstring": normalize_connstring(setting["value"]),
            "stripe_size": _ascii_int(stripe.get("value", "")) if stripe else None,
            "shard_count": None,
            "source": "cluster.settings",
        }
    return {"connstring": None, "stripe_size": None, "shard_count": None, "source": None}


def apply_connection_info(spec: dict, info: dict) -> dict:
    """Return a copy of ``spec`` pointing at ``info``; legacy fields present in ``spec`` are kept consistent."""
    new_spec = copy.deepcopy(spec)
    new_spec["pageserver_connection_info"] = copy.deepcopy(info)
    connstring = connstring_from_connection_info(info)
    if "pageserver_connstring" in new_spec:
        new_spec["pageserver_connstring"] = connstring
    if "shard_stripe_size" in new_spec:
        new_spec["shard_stripe_size"] = info["stripe_size"]
    setting = _settings_guc(new_spec, CONNSTRING_GUC)
    if setting is not None:
        setting["value"] = connstring
    stripe_setting = _settings_guc(new_spec, STRIPE_SIZE_GUC)
    if stripe_setting is not None and info["stripe_size"] is not None:
        stripe_setting["value"] = str(info["stripe_size"])
    return new_spec


def redact_spec(value):
    """Copy of a spec with credentials (storage token, role passwords) masked, for results and logs."""
    if isinstance(value, dict):
        return {
            key: (REDACTED if key in SECRET_SPEC_KEYS and item is not None else redact_spec(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_spec(item) for item in value]
    return value


def spec_secrets(value) -> set:
    """The credential strings in a spec, so a module can add them to its no_log values."""
    found = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in SECRET_SPEC_KEYS and isinstance(item, str) and item:
                found.add(item)
            else:
                found |= spec_secrets(item)
    elif isinstance(value, list):
        for item in value:
            found |= spec_secrets(item)
    return found


# ---------------------------------------------------------------------------------------------------------
# Files on the compute host


def parse_postgresql_conf(text: str) -> dict:
    """Parse postgresql.conf text into ``{lowercase name: value}``; a later line wins, as in Postgres."""
    settings = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_.\-]*)\s*=?\s*(.*)", line)
        if not match:
            continue
        name, rest = match.group(1).lower(), match.group(2)
        settings[name] = _conf_value(rest)
    return settings


def _conf_value(rest: str) -> str:
    if rest.startswith("'"):
        out = []
        i = 1
        while i < len(rest):
            char = rest[i]
            if char == "'":
                if rest[i + 1 : i + 2] == "'":  # '' is an escaped quote
                    out.append("'")
                    i += 2
                    continue
                break
            if char == "\\" and i + 1 < len(rest):
                out.append(rest[i + 1])
                i += 2
                continue
            out.append(char)
            i += 1
        return "".join(out)
    return rest.split("#", 1)[0].strip()


def conf_connection(settings: dict) -> dict:
    """The pageserver connection as compute_ctl wrote it into postgresql.conf."""
    stripe = settings.get(STRIPE_SIZE_GUC)
    return {
        "connstring": normalize_connstring(settings.get(CONNSTRING_GUC)),
        "stripe_size": _ascii_int(stripe) if stripe is not None else None,
        "source": "postgresql.conf",
    }


def load_spec_document(text: str, path: str = "spec") -> tuple[dict, dict | None, bool]:
    """Parse a spec file: a bare ComputeSpec, or a ``{"spec", "compute_ctl_config"}`` wrapper.

    Returns ``(spec, compute_ctl_config or None, wrapped)``.
    """
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(document).__name__}")
    if isinstance(document.get("spec"), dict) and "format_version" not in document:
        return document["spec"], document.get("compute_ctl_config"), True
    return document, None, False


def dump_spec_document(original_text: str, spec: dict) -> str:
    """Serialize ``spec`` in the same shape (bare or wrapped) as ``original_text``."""
    document = json.loads(original_text)
    if isinstance(document.get("spec"), dict) and "format_version" not in document:
        document["spec"] = spec
    else:
        document = spec
    return json.dumps(document, indent=2) + "\n"

# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""EC2 decisions for the pageserver_instance role and the aws_ec2 inventory. Internal; may change in any release.

Validation of the instance request (before any AWS call), the data volume's block device mapping, the tags the
inventory reads, the choice between launching and adopting, and the inventory-contract host variables
(docs/contracts.md section 4), built by the same rules as inventories/neon.aws_ec2.yml composes them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeGuard

from ansible_collections.neonops.storage.plugins.module_utils._client import hostname_problem
from ansible_collections.neonops.storage.plugins.module_utils._echo import echo
from ansible_collections.neonops.storage.plugins.module_utils._ids import NODE_ID_MAX

PREFIX = "pageserver_instance_"

# EBS volume limits per type (AWS EBS User Guide, "Amazon EBS volume types"): size in GiB, iops, throughput in
# MiB/s, the largest iops per GiB of size, and whether iops/throughput may be set at all.
VOLUME_TYPES: dict[str, dict[str, Any]] = {
    "gp3": {"size": (1, 16384), "iops": (3000, 16000), "throughput": (125, 1000), "iops_per_gib": 500},
    "gp2": {"size": (1, 16384)},
    "io1": {"size": (4, 16384), "iops": (100, 64000), "iops_per_gib": 50, "iops_required": True},
    "io2": {"size": (4, 65536), "iops": (100, 256000), "iops_per_gib": 1000, "iops_required": True},
    "st1": {"size": (125, 16384)},
    "sc1": {"size": (125, 16384)},
    "standard": {"size": (1, 1024)},
}
# gp3: throughput may be at most 0.25 MiB/s per provisioned IOPS.
GP3_THROUGHPUT_PER_IOPS = 0.25

# Upstream defaults of each service's ports (pageserver/src/config.rs, safekeeper/src/lib.rs, compute_tools,
# storage_controller/src/main.rs in neondatabase/neon); the inventory uses the same ones.
DEFAULT_PORTS: dict[str, dict[str, int | None]] = {
    "pageserver": {"http": 9898, "pg": 64000},
    "safekeeper": {"http": 7676, "pg": 5454},
    "compute": {"http": 3080, "pg": 55433},
    "storage_controller": {"http": 1234, "pg": None},
}
DEFAULT_S3_PREFIX = "pageserver/"
DEFAULT_PGDATA = "/var/db/postgres/compute/pgdata"
DEFAULT_SPEC_PATH = "/var/db/postgres/compute/spec.json"

# Tags the role owns; user tags may not override them.
ROLE_TAG = "neon_role"
RESERVED_TAGS = {
    "Name",
    ROLE_TAG,
    "neon_node_id",
    "neon_fleet",
    "neon_availability_zone",
    "neon_http_port",
    "neon_pg_port",
    "neon_api_scheme",
    "neon_s3_prefix",
    "neon_host",
}
# Tags are readable by anyone who may describe instances: credentials belong in a vault, never in a tag.
_SECRET_TAG_KEY = re.compile(r"(?i)token|secret|password|passwd|private[-_]?key|credential")
# Instance states an instance can come back from; terminated ones are gone.
LIVE_STATES = ["pending", "running", "stopping", "stopped"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
_IMAGE_ID = re.compile(r"ami-[0-9a-f]{8,17}")
_INSTANCE_TYPE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_AZ = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}[a-z]")
_DEVICE = re.compile(r"/dev/(sd[f-p]|xvd[f-p])")
_S3_PREFIX = re.compile(r"[A-Za-z0-9!_.*'()/-]{0,512}")
_SECURITY_GROUP = re.compile(r"sg-[0-9a-f]{8,17}")


def _is_int(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


_INT_FIELDS = ("node_id", "data_volume_size", "data_volume_iops", "data_volume_throughput", "http_port", "pg_port")


def _as_int(value):
    """Extra vars (-e name=500) arrive as strings: take decimal digits as the integer they spell."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


class _Errors(list):
    def add(self, var: str, value, problem: str) -> None:
        self.append(f"{PREFIX}{var}: {echo(value)} {problem}")


def _check_pattern(errors: _Errors, params: dict, var: str, pattern: re.Pattern, what: str, optional=False):
    value = params.get(var)
    if optional and value in (None, ""):
        return
    if not isinstance(value, str) or not pattern.fullmatch(value):
        errors.add(var, value, f"is not {what}")


def _check_port(errors: _Errors, params: dict, var: str) -> None:
    value = params.get(var)
    if not _is_int(value) or not 1 <= value <= 65535:
        errors.add(var, value, "is not a TCP port (1..65535)")


def validate_volume(errors: _Errors, volume: dict) -> dict:
    """The data volume's EBS settings, checked against the type's limits; the ``ebs`` part of a block device."""
    vtype, size = volume.get("type"), volume.get("size")
    iops, throughput = volume.get("iops") or 0, volume.get("throughput") or 0
    limits = VOLUME_TYPES.get(vtype) if isinstance(vtype, str) else None
    if limits is None:
        errors.add("data_volume_type", vtype, f"is not an EBS volume type ({', '.join(VOLUME_TYPES)})")
        return {}
    low, high = limits["size"]
    if not _is_int(size) or not low <= size <= high:
        errors.add("data_volume_size", size, f"is outside {low}..{high} GiB for {vtype}")
    for var, value in (("data_volume_iops", iops), ("data_volume_throughput", throughput)):
        if not _is_int(value) or value < 0:
            errors.add(var, value, "is not a non-negative integer (0 = the type's default)")
            return {}
    ebs: dict = {"volume_type": vtype, "volume_size": size, "delete_on_termination": False}
    if "iops" not in limits and iops:
        errors.add("data_volume_iops", iops, f"cannot be set for {vtype} (only gp3, io1 and io2 take iops)")
    elif "iops" in limits:
        if not iops and limits.get("iops_required"):
            errors.add("data_volume_iops", iops, f"is required for {vtype}")
        elif iops:
            low, high = limits["iops"]
            if not low <= iops <= high:
                errors.add("data_volume_iops", iops, f"is outside {low}..{high} for {vtype}")
            elif _is_int(size) and iops > size * limits["iops_per_gib"]:
                errors.add(
                    "data_volume_iops",
                    iops,
                    f"is above {limits['iops_per_gib']} iops per GiB for {vtype} ({size * limits['iops_per_gib']}"
                    f" for {size} GiB)",
                )
        if iops:
            ebs["iops"] = iops
    if "throughput" not in limits and throughput:
        errors.add("data_volume_throughput", throughput, f"cannot be set for {vtype} (only gp3 takes throughput)")
    elif "throughput" in limits and throughput:
        low, high = limits["throughput"]
        effective_iops = iops or limits["iops"][0]
        if not low <= throughput <= high:
            errors.add("data_volume_throughput", throughput, f"is outside {low}..{high} MiB/s for {vtype}")
        elif throughput > effective_iops * GP3_THROUGHPUT_PER_IOPS:
            errors.add(
                "data_volume_throughput",
                throughput,
                f"is above {GP3_THROUGHPUT_PER_IOPS} MiB/s per iops ({int(effective_iops * GP3_THROUGHPUT_PER_IOPS)}"
                f" for {effective_iops} iops)",
            )
        ebs["throughput"] = throughput
    if not isinstance(volume.get("encrypted"), bool):
        errors.add("data_volume_encrypted", volume.get("encrypted"), "is not a boolean")
    else:
        ebs["encrypted"] = volume["encrypted"]
    if volume.get("kms_key_id"):
        ebs["kms_key_id"] = volume["kms_key_id"]
    return ebs


def _user_tags(errors: _Errors, tags) -> dict:
    if not isinstance(tags, dict):
        errors.add("tags", tags, "is not a dictionary of tag names to values")
        return {}
    out = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            errors.add("tags", key, "is not a tag key (1..128 characters, not starting with aws:)")
        elif key in RESERVED_TAGS:
            errors.add("tags", key, "is set by the role from its own variables; remove it from the user tags")
        elif _SECRET_TAG_KEY.search(key):
            errors.add("tags", key, "looks like a credential: tags are readable by anyone; use the vault")
        elif not isinstance(value, (str, int)) or isinstance(value, bool) or len(str(value)) > 256:
            errors.add("tags", {key: value}, "is not a tag value (a string of up to 256 characters)")
        else:
            out[key] = str(value)
    return out


def _host_tag_problem(host) -> str | None:
    """Why ``host`` cannot be the ``neon_host`` tag, or None. The inventory builds ``<scheme>://<host>:<port>`` and
    ``<host>:<port>`` of it, so an IPv6 address goes in brackets (as a URL's host does, RFC 3986 section 3.2.2)."""
    if not isinstance(host, str):
        return "is not a host name or address"
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        return None if ":" in inner and hostname_problem(inner) is None else "is not an IPv6 address in brackets"
    if ":" in host:
        return f"is not a host name or address (an IPv6 address goes in brackets, as [{host}])"
    problem = hostname_problem(host) if host else "is empty"
    return f"is not a host name or address ({problem})" if problem else None


def plan(params: dict) -> dict:
    """Validate the role's variables (names without the ``pageserver_instance_`` prefix) before any AWS call.

    Returns ``errors`` (messages naming the variable and its value; empty when valid) and, when valid, what the
    launch needs: the instance tags, the filters that find this node's instance, the data volume's block device
    mapping and its tags.
    """
    params = {**params, **{k: _as_int(params.get(k)) for k in _INT_FIELDS}}
    errors = _Errors()
    _check_pattern(errors, params, "name", _NAME, "a host name (letters, digits, '.', '_', '-'; at most 63)")
    _check_pattern(errors, params, "fleet", _NAME, "a fleet name (letters, digits, '.', '_', '-'; at most 63)")
    node_id = params.get("node_id")
    if not _is_int(node_id) or not 1 <= node_id <= NODE_ID_MAX:
        errors.add("node_id", node_id, "is not a node id (an integer from 1 to 2^64-1)")
    _check_pattern(errors, params, "region", _REGION, "an AWS region (for example us-east-1)")
    _check_pattern(errors, params, "subnet_id", _SUBNET_ID, "a subnet id (subnet-<hex>)")
    _check_pattern(
        errors, params, "availability_zone", _AZ, "an availability zone (for example us-east-1a)", optional=True
    )
    image_id, image_name = params.get("image_id") or "", params.get("image_name") or ""
    if bool(image_id) == bool(image_name):
        errors.add("image_id", image_id, "and pageserver_instance_image_name: set exactly one of them")
    else:
        _check_pattern(errors, params, "image_id", _IMAGE_ID, "an AMI id (ami-<hex>)", optional=True)
    _check_pattern(errors, params, "instance_type", _INSTANCE_TYPE, "an instance type (for example m6i.xlarge)")
    for group in params.get("security_group_ids") or []:
        if not isinstance(group, str) or not _SECURITY_GROUP.fullmatch(group):
            errors.add("security_group_ids", group, "is not a security group id (sg-<hex>)")
    _check_pattern(errors, params, "data_volume_device", _DEVICE, "a data device name (/dev/sdf../dev/sdp)")
    _check_port(errors, params, "http_port")
    _check_port(errors, params, "pg_port")
    if params.get("api_scheme") not in ("http", "https"):
        errors.add("api_scheme", params.get("api_scheme"), "is not http or https")
    prefix = params.get("s3_prefix")
    if not isinstance(prefix, str) or not _S3_PREFIX.fullmatch(prefix) or prefix.startswith("/") or ".." in prefix:
        errors.add("s3_prefix", prefix, "is not an S3 key prefix (no leading '/', no '..')")
    ebs = validate_volume(
        errors,
        {
            "type": params.get("data_volume_type"),
            "size": params.get("data_volume_size"),
            "iops": params.get("data_volume_iops"),
            "throughput": params.get("data_volume_throughput"),
            "encrypted": params.get("data_volume_encrypted", True),
            "kms_key_id": params.get("data_volume_kms_key_id"),
        },
    )
    host = params.get("host") or ""
    host_problem = _host_tag_problem(host) if host else None
    if host_problem:
        errors.add("host", host, host_problem)
    user_tags = _user_tags(errors, params.get("tags") or {})
    if errors:
        return {"errors": list(errors)}
    selector = {"neon_fleet": params["fleet"], ROLE_TAG: "pageserver", "neon_node_id": str(node_id)}
    tags = {
        **user_tags,
        "Name": params["name"],
        **selector,
        "neon_http_port": str(params["http_port"]),
        "neon_pg_port": str(params["pg_port"]),
        "neon_api_scheme": params["api_scheme"],
        "neon_s3_prefix": prefix,
        **({"neon_host": host} if host else {}),
    }
    return {
        "errors": [],
        # The variables as checked (digits given as text are integers here); decide() and record() take these.
        "params": params,
        "tags": tags,
        # ec2_instance and ec2_instance_info find this node's instance by these, whatever its name or subnet.
        "filters": {**{f"tag:{k}": v for k, v in selector.items()}, "instance-state-name": LIVE_STATES},
        "fleet_filters": {"tag:neon_fleet": params["fleet"], f"tag:{ROLE_TAG}": "pageserver"},
        "block_device": {"device_name": params["data_volume_device"], "ebs": ebs},
        "volume_tags": {
            **user_tags,
            "Name": f"{params['name']}-data",
            "neon_fleet": params["fleet"],
            "neon_node_id": str(node_id),
            "neon_volume": "pageserver-data",
        },
    }


def _tags(instance: dict) -> dict:
    tags = instance.get("tags") or {}
    if isinstance(tags, list):  # boto3 shape
        tags = {t["Key"]: t["Value"] for t in tags}
    return tags


def decide(request: dict, params: dict, subnets: list, images: list, fleet_instances: list) -> dict:
    """Launch or adopt, from what AWS answered: the subnet, the AMI (when launching) and the fleet's pageservers.

    ``fleet_instances`` are ec2_instance_info results (snake_case) of the fleet's live pageserver instances.
    Returns ``errors`` (empty when the request can go on), ``action`` (launch or adopt), ``instance_id`` of the
    adopted instance, the ``availability_zone`` (the subnet's) and ``image_id``.
    """
    errors = _Errors()
    node_id = str(params["node_id"])
    region = params["region"]
    if not subnets:
        errors.add("subnet_id", params["subnet_id"], f"does not exist in region {region}")
        return {"errors": list(errors)}
    zone = subnets[0]["availability_zone"]
    if params.get("availability_zone") and params["availability_zone"] != zone:
        errors.add(
            "availability_zone",
            params["availability_zone"],
            f"is not the availability zone of {params['subnet_id']} ({zone})",
        )
    mine = [i for i in fleet_instances if _tags(i).get("neon_node_id") == node_id]
    for other in fleet_instances:
        if other not in mine and _tags(other).get("Name") == params["name"]:
            errors.add(
                "name",
                params["name"],
                f"is already the Name of {other['instance_id']}, pageserver node "
                f"{_tags(other).get('neon_node_id')} of fleet {params['fleet']}",
            )
    if len(mine) > 1:
        errors.add(
            "node_id",
            params["node_id"],
            f"is tagged on several instances of fleet {params['fleet']}: "
            f"{', '.join(sorted(i['instance_id'] for i in mine))}; keep one",
        )
    if len(mine) == 1:
        found = mine[0]
        if found.get("subnet_id") != params["subnet_id"]:
            errors.add(
                "subnet_id",
                params["subnet_id"],
                f"differs from the subnet of the existing instance of node {node_id}, {found['instance_id']} "
                f"({found.get('subnet_id')}); an instance cannot move subnets",
            )
        if errors:
            return {"errors": list(errors)}
        return {
            "errors": [],
            "tags": {**request["tags"], "neon_availability_zone": zone},
            "action": "adopt",
            "instance_id": found["instance_id"],
            "availability_zone": zone,
            "image_id": found.get("image_id", ""),
        }
    image_id = ""
    if not images:
        which = params.get("image_id") or params.get("image_name")
        var = "image_id" if params.get("image_id") else "image_name"
        errors.add(var, which, f"matches no AMI in region {region}")
    else:
        newest = max(images, key=lambda i: i.get("creation_date") or "")
        image_id = newest["image_id"]
    if errors:
        return {"errors": list(errors)}
    return {
        "errors": [],
        "tags": {**request["tags"], "neon_availability_zone": zone},
        "action": "launch",
        "instance_id": "",
        "availability_zone": zone,
        "image_id": image_id,
    }


def data_volume_of(instance: dict, device_name: str) -> str:
    """The EBS volume id attached to ``instance`` (ec2_instance/ec2_instance_info shape) at ``device_name``."""
    for mapping in instance.get("block_device_mappings") or []:
        if mapping.get("device_name") == device_name:
            return (mapping.get("ebs") or {}).get("volume_id") or ""
    return ""


def contract_host_vars(role: str, tags: dict, private_ip: str, placement_zone: str) -> dict:
    """An instance's inventory-contract variables (docs/contracts.md section 4) from its tags.

    The same rules as the ``compose`` of inventories/neon.aws_ec2.yml: ``neon_host`` (else the private IP),
    ``neon_http_port``/``neon_pg_port`` (else upstream defaults), ``neon_api_scheme`` (else http),
    ``neon_availability_zone`` (else the instance's placement).
    """
    # An IPv6 neon_host, bracketed or not: ssh takes it without brackets, URLs and host:port need them.
    host = (tags.get("neon_host") or private_ip).replace("[", "").replace("]", "")
    url_host = f"[{host}]" if ":" in host else host
    ports = DEFAULT_PORTS[role]
    http_port = tags.get("neon_http_port") or ports["http"]
    pg_port = tags.get("neon_pg_port") or ports["pg"]
    scheme = tags.get("neon_api_scheme") or "http"
    out: dict = {"ansible_host": host, "neon_api_url": f"{scheme}://{url_host}:{http_port}"}
    if role in ("pageserver", "safekeeper"):
        out["neon_node_id"] = int(tags.get("neon_node_id") or 0)
        out["neon_pg_addr"] = f"{url_host}:{pg_port}"
        out["neon_availability_zone"] = tags.get("neon_availability_zone") or placement_zone
    if role == "pageserver":
        out["neon_s3_prefix"] = tags.get("neon_s3_prefix", DEFAULT_S3_PREFIX)
    if role == "compute":
        out["neon_compute_id"] = tags.get("neon_compute_id", "")
        out["neon_tenant_id"] = tags.get("neon_tenant_id", "")
        out["neon_timeline_id"] = tags.get("neon_timeline_id", "")
        out["neon_pgdata"] = tags.get("neon_pgdata") or DEFAULT_PGDATA
        out["neon_spec_path"] = tags.get("neon_spec_path") or DEFAULT_SPEC_PATH
    return out


def volume_drift(ebs: dict, volume: dict) -> list:
    """How an existing data volume (ec2_vol's ``volume``) differs from the request; the role reports, never resizes."""
    if not volume:
        return []
    drift = []
    checks = [
        ("size", "volume_size", " GiB"),
        ("type", "volume_type", ""),
        ("iops", "iops", ""),
        ("throughput", "throughput", " MiB/s"),
    ]
    for have_key, want_key, unit in checks:
        want, have = ebs.get(want_key), volume.get(have_key)
        if want and have is not None and str(want) != str(have):
            drift.append(f"{have_key} {have}{unit}, requested {want}{unit}")
    return drift


def record(
    request: dict, params: dict, decision: dict, instance: dict | None, volume_id: str, volume: dict | None = None
) -> dict:
    """The role's output: what a playbook needs to configure the new pageserver and find it in the inventory.

    ``instance`` is None in check mode when the instance would be launched.
    """
    instance = instance or {}
    volume_id = volume_id or data_volume_of(instance, request["block_device"]["device_name"])
    tags = {**_tags(instance), **decision["tags"]}
    private_ip = instance.get("private_ip_address") or ""
    zone = (instance.get("placement") or {}).get("availability_zone") or decision["availability_zone"]
    out = {
        "name": params["name"],
        "instance_id": instance.get("instance_id") or "",
        "private_ip": private_ip,
        "availability_zone": zone,
        "region": params["region"],
        "node_id": params["node_id"],
        "data_volume_id": volume_id,
        "data_device_name": request["block_device"]["device_name"],
        "data_volume_drift": volume_drift(request["block_device"]["ebs"], volume or {}),
        "created": decision["action"] == "launch",
        "instance_state": (instance.get("state") or {}).get("name") or "",
        "fleet": params["fleet"],
        "tags": tags,
    }
    out["host_vars"] = (
        {
            **contract_host_vars("pageserver", tags, private_ip, zone),
            "ansible_python_interpreter": params["python_interpreter"],
        }
        if out["instance_id"]
        else {}
    )
    return out


# Codes AWS answers RunInstances/CreateVolume with when a limit or the capacity is the cause (EC2 API reference,
# "Error codes").
_LIMIT_CODES = {
    "InstanceLimitExceeded": "the account's instance limit",
    "VcpuLimitExceeded": "the account's vCPU quota for this instance family",
    "InsufficientInstanceCapacity": "AWS capacity for this instance type in this availability zone",
    "VolumeLimitExceeded": "the account's EBS storage quota",
    "MaxIOPSLimitExceeded": "the account's provisioned IOPS quota",
    "InsufficientVolumeCapacity": "AWS EBS capacity in this availability zone",
    "InstanceCreditLimitExceeded": "the account's burstable instance credit limit",
}


def launch_error(result: dict, params: dict) -> str:
    """A clear message for a failed launch or volume call (an amazon.aws module's failed result)."""
    error = result.get("error") or {}
    code = error.get("code") or ""
    aws_message = error.get("message") or result.get("msg") or "unknown error"
    where = f"{params.get('instance_type')} in {params.get('subnet_id')} ({params.get('region')})"
    if code in _LIMIT_CODES:
        return (
            f"pageserver_instance: launching {params.get('name')} ({where}) hit {_LIMIT_CODES[code]} ({code}): "
            f"{aws_message}. Nothing was launched; raise the quota (Service Quotas) or choose another instance "
            "type or subnet."
        )
    if code.startswith("InvalidAMIID"):
        return f"pageserver_instance: the AMI is unusable in {params.get('region')} ({code}): {aws_message}"
    if code.startswith("InvalidSubnet"):
        return f"pageserver_instance_subnet_id: {echo(params.get('subnet_id'))} is unusable ({code}): {aws_message}"
    return f"pageserver_instance: AWS refused {params.get('name')} ({where}): {code or 'error'}: {aws_message}"

"""DIR/inventory.yml for a neonsim fleet, in the shape of contracts §4 (same as the EC2 dynamic inventory)."""

from __future__ import annotations

from pathlib import Path

import yaml

from neonsim import _tls
from neonsim._durable import write_durably

TOKEN_VARS = {
    "neon_pageserver_api_token": "pageserver",
    "neon_safekeeper_api_token": "safekeeper",
    "neon_storcon_api_token": "storcon",
    "neon_compute_api_token": "compute",
}


def _local(host_vars: dict) -> dict:
    return {
        **host_vars,
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    }


def build_inventory(fleet: dict, tokens: dict | None = None) -> dict:
    s3 = fleet["s3"]
    all_vars = {
        "neon_s3_endpoint_url": s3["endpoint_url"],
        "neon_s3_bucket": s3["bucket"],
        "neon_s3_region": s3["region"],
        # moto's keys (any pair works); on AWS leave these out and let boto3 find the instance role's.
        "neon_s3_access_key": s3.get("access_key", "testing"),
        "neon_s3_secret_key": s3.get("secret_key", "testing"),
        "neonsim_dir": fleet["dir"],
    }
    if tokens:
        all_vars.update({var: tokens[service] for var, service in TOKEN_VARS.items()})
    if _tls.enabled(fleet):
        # What the API modules' `ca_path` needs to trust the nodes' certificates (contracts §4).
        all_vars["neon_ca_path"] = _tls.ca_path(fleet)
    pageservers = {
        ps["name"]: _local(
            {
                "neon_node_id": ps["node_id"],
                "neon_api_url": _tls.api_url(fleet, ps),
                "neon_pg_addr": f"127.0.0.1:{ps['pg_port']}",
                "neon_availability_zone": ps["az"],
                "neon_s3_prefix": ps["prefix_in_bucket"],
            }
        )
        for ps in fleet.get("pageservers") or []
    }
    safekeepers = {
        sk["name"]: _local(
            {
                "neon_node_id": sk["node_id"],
                "neon_api_url": _tls.api_url(fleet, sk),
                "neon_pg_addr": f"127.0.0.1:{sk['pg_port']}",
                "neon_availability_zone": sk["az"],
            }
        )
        for sk in fleet.get("safekeepers") or []
    }
    computes = {
        c["name"]: _local(
            {
                "neon_api_url": _tls.api_url(fleet, c),
                "neon_compute_id": c["compute_id"],
                "neon_tenant_id": c["tenant_id"],
                "neon_timeline_id": c["timeline_id"],
                "neon_pgdata": c["pgdata"],
                "neon_spec_path": c["spec_path"],
            }
        )
        for c in fleet.get("computes") or []
    }
    storcon = fleet.get("storage_controller")
    controllers = {storcon["name"]: _local({"neon_api_url": _tls.api_url(fleet, storcon)})} if storcon else {}
    return {
        "all": {
            "vars": all_vars,
            "hosts": {"localhost": _local({})},
            "children": {
                "pageservers": {"hosts": pageservers},
                "safekeepers": {"hosts": safekeepers},
                "computes": {"hosts": computes},
                "storage_controller": {"hosts": controllers},
            },
        }
    }


def write_inventory(fleet: dict, tokens: dict | None = None) -> Path:
    path = Path(fleet["dir"]) / "inventory.yml"
    text = "# Written by `python -m neonsim up`; contracts §4.\n" + yaml.safe_dump(
        build_inventory(fleet, tokens), sort_keys=False, default_flow_style=False
    )
    write_durably(path, text, mode=0o600 if tokens else None)
    return path

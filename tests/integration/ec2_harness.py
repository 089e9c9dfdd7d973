"""Helpers for the EC2 tests: a moto EC2 endpoint, the aws_ec2 inventory pointed at it, ansible runs.

`moto_ec2()` starts `moto_server` on a free 127.0.0.1 port (one process, every region) and stops it afterwards.
`inventory_file(...)` writes inventories/neon.aws_ec2.yml with the test's endpoint, regions and fleet filter;
`inventory_list(...)` runs `ansible-inventory --list` on it and returns plain data.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import migration_harness
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Contract variables per group (docs/contracts.md section 4) and the connection variables playbooks rely on.
CONTRACT_VARS = {
    "pageservers": ["neon_node_id", "neon_api_url", "neon_pg_addr", "neon_availability_zone", "neon_s3_prefix"],
    "safekeepers": ["neon_node_id", "neon_api_url", "neon_pg_addr", "neon_availability_zone"],
    "storage_controller": ["neon_api_url"],
    "computes": [
        "neon_api_url",
        "neon_compute_id",
        "neon_tenant_id",
        "neon_timeline_id",
        "neon_pgdata",
        "neon_spec_path",
    ],
}
# Every host: remote storage, the neonsim dir, tokens and CA (absent here) and how Ansible reaches the host.
ALL_VARS = [
    "neon_s3_endpoint_url",
    "neon_s3_bucket",
    "neon_s3_region",
    "neonsim_dir",
    "neon_pageserver_api_token",
    "neon_safekeeper_api_token",
    "neon_storcon_api_token",
    "neon_compute_api_token",
    "neon_ca_path",
    "ansible_connection",
    "ansible_python_interpreter",
]


def contract_view(listing: dict) -> dict:
    """group -> host -> the contract's variables of that host (absent ones as None), from `ansible-inventory --list`."""
    hostvars = listing["_meta"]["hostvars"]
    return {
        group: {
            host: {var: hostvars.get(host, {}).get(var) for var in [*names, *ALL_VARS]}
            for host in group_hosts(listing, group)
        }
        for group, names in CONTRACT_VARS.items()
    }


TEST_AMI = {
    "ami_id": "ami-0a1b2c3d4e5f60718",
    "state": "available",
    "public": True,
    "owner_id": "123456789012",
    "image_location": "neonops/pageserver-test",
    "sriov": "simple",
    "root_device_type": "ebs",
    "root_device_name": "/dev/xvda",
    "description": "neonops.storage test image",
    "image_type": "machine",
    "platform": None,
    "architecture": "x86_64",
    "name": "neon-pageserver-test",
    "virtualization_type": "hvm",
    "hypervisor": "xen",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_ec2(log_dir: Path):
    port = _free_port()
    # One AMI instead of moto's ~1300 per region: loading those made DescribeImages time out on a loaded machine.
    amis = log_dir / "amis.json"
    amis.write_text(json.dumps([TEST_AMI]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["MOTO_AMIS_PATH"] = str(amis)
    log = open(log_dir / "moto.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                requests.get(f"{url}/moto-api/", timeout=2)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"moto_server did not start: {(log_dir / 'moto.log').read_text()}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def ec2(endpoint: str, region: str):
    return boto3.client(
        "ec2",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def subnet(endpoint: str, region: str, zone_letter: str = "a") -> str:
    client = ec2(endpoint, region)
    vpc = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return client.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{region}{zone_letter}")[
        "Subnet"
    ]["SubnetId"]


def image(endpoint: str, region: str) -> str:
    return sorted(i["ImageId"] for i in ec2(endpoint, region).describe_images()["Images"])[0]


def fleet_state(endpoint: str, region: str, fleet: str) -> dict:
    """The fleet's live instances (id -> tags, subnet, data devices) and every volume of the region."""
    client = ec2(endpoint, region)
    reservations = client.describe_instances(
        Filters=[
            {"Name": "tag:neon_fleet", "Values": [fleet]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    instances = {
        i["InstanceId"]: {
            "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
            "subnet_id": i.get("SubnetId"),
            "private_ip": i.get("PrivateIpAddress"),
            "devices": {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings", [])},
        }
        for r in reservations
        for i in r["Instances"]
    }
    volumes = {
        v["VolumeId"]: {
            "size": v["Size"],
            "type": v["VolumeType"],
            "tags": {t["Key"]: t["Value"] for t in v.get("Tags", [])},
        }
        for v in client.describe_volumes()["Volumes"]
    }
    return {"instances": instances, "volumes": volumes}


def ansible_env(tmp: Path) -> dict:
    """The migration tests' Ansible environment, with moto's credentials instead of any AWS_* of this machine."""
    env = {k: v for k, v in migration_harness.ansible_env(tmp).items() if not k.startswith("AWS_")}
    env.update(CREDENTIALS, ANSIBLE_DEPRECATION_WARNINGS="0")
    return env


def run(cmd: list[str], tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=tmp, env=ansible_env(tmp), capture_output=True, text=True, timeout=timeout)


def inventory_file(directory: Path, endpoint: str, regions: list[str], fleet: str, group_vars: dict) -> Path:
    """inventories/neon.aws_ec2.yml as shipped, pointed at moto, with group_vars/<group>.yml beside it."""
    config = yaml.safe_load((REPO / "inventories" / "neon.aws_ec2.yml").read_text())
    # Credentials in the file: ansible-playbook runs started by other helpers (migration_harness) pass no AWS_*.
    config.update(endpoint_url=endpoint, regions=regions, aws_access_key_id="testing", aws_secret_access_key="testing")
    config["filters"]["tag:neon_fleet"] = fleet
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{fleet}.aws_ec2.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (directory / "group_vars").mkdir(exist_ok=True)
    for group, variables in group_vars.items():
        (directory / "group_vars" / f"{group}.yml").write_text(yaml.safe_dump(variables))
    return path


def _plain(value):
    """ansible-inventory --list marks strings from the plugin as {"__ansible_unsafe": "..."}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def inventory_list(path: Path, tmp: Path) -> dict:
    proc = run([str(BIN / "ansible-inventory"), "-i", str(path), "--list"], tmp)
    assert proc.returncode == 0, proc.stderr
    return _plain(json.loads(proc.stdout))


def group_hosts(listing: dict, group: str) -> list[str]:
    """Hosts of a group in `ansible-inventory --list` output (children included)."""
    entry = listing.get(group) or {}
    hosts = list(entry.get("hosts") or [])
    for child in entry.get("children") or []:
        hosts += group_hosts(listing, child)
    return sorted(hosts)

"""The EC2 inventory end to end: a neonsim fleet's nodes as instances in moto, in two regions, tagged with the
fleet's 127.0.0.1 ports. inventories/neon.aws_ec2.yml must give the same groups and contract variables as neonsim's
own inventory, and neonops.storage.migrate_tenant run with it must move a tenant under workload with no failed
read and no lost write."""

from __future__ import annotations

import os

import pytest
from ec2_harness import contract_view, ec2, inventory_file, inventory_list, moto_ec2
from migration_harness import (
    locations,
    migrate,
    plain_tenants,
    tenant_id,
    topology,
    verdict,
    wait_for_writes_then_pause,
)

pytestmark = pytest.mark.neonsim

# ps3 and sk3 (az-b) live in the second region: the move's destination is found only by listing both.
REGION_OF = {"ps3": "us-west-2", "sk3": "us-west-2"}
DEFAULT_REGION = "us-east-1"


def node_tags(sim, role: str, entry: dict) -> dict:
    """What the pageserver_instance role (pageservers) or an operator (other roles) tags a node's instance with,
    pointed at the node's 127.0.0.1 ports."""
    tags = {"Name": entry["name"], "neon_role": role, "neon_host": "127.0.0.1", "neon_http_port": entry["http_port"]}
    if role in ("pageserver", "safekeeper"):
        tags.update(neon_node_id=entry["node_id"], neon_pg_port=entry["pg_port"], neon_availability_zone=entry["az"])
    if role == "pageserver":
        tags["neon_s3_prefix"] = entry["prefix_in_bucket"]
    if role == "compute":
        tags.update(
            neon_compute_id=entry["compute_id"],
            neon_tenant_id=entry["tenant_id"],
            neon_timeline_id=entry["timeline_id"],
            neon_pgdata=entry["pgdata"],
            neon_spec_path=entry["spec_path"],
        )
    return tags


def launch_fleet_instances(sim, endpoint: str, fleet_name: str) -> dict:
    nodes = [("pageserver", e) for e in sim.fleet["pageservers"]]
    nodes += [("safekeeper", e) for e in sim.fleet["safekeepers"]]
    nodes += [("compute", e) for e in sim.fleet["computes"]]
    nodes.append(("storage_controller", sim.fleet["storage_controller"]))
    placed = {}
    for role, entry in nodes:
        region = REGION_OF.get(entry["name"], DEFAULT_REGION)
        launch_tagged_instance(ec2(endpoint, region), {**node_tags(sim, role, entry), "neon_fleet": fleet_name})
        placed[entry["name"]] = region
    return placed


def launch_tagged_instance(client, tags: dict) -> None:
    """One instance of the test AMI with these tags (as the inventory's filters and compose read them)."""
    image = sorted(i["ImageId"] for i in client.describe_images()["Images"])[0]
    client.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="m5.large",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": str(v)} for k, v in tags.items()]}
        ],
    )


class InventoryFleet:
    """The neonsim fleet as migration_harness sees it, but with the aws_ec2 inventory."""

    def __init__(self, sim, inventory_path):
        self._sim = sim
        self.inventory_path = inventory_path

    def __getattr__(self, name):
        return getattr(self._sim, name)


@pytest.fixture(scope="module")
def setup(neonsim_fleet_module, tmp_path_factory):
    tenants, computes = plain_tenants("ec2")
    sim = neonsim_fleet_module(topology(tenants, computes))
    wait_for_writes_then_pause(sim)
    tmp = tmp_path_factory.mktemp("ec2-inventory")
    fleet_name = f"sim-{os.getpid()}"
    with moto_ec2(tmp) as endpoint:
        placed = launch_fleet_instances(sim, endpoint, fleet_name)
        s3 = sim.fleet["s3"]
        # What neonsim's inventory sets on every host and in `all`, for the test fleet (docs/contracts.md section 4).
        group_vars = {
            "all": {
                "neon_s3_endpoint_url": s3["endpoint_url"],
                "neon_s3_bucket": s3["bucket"],
                "neon_s3_region": s3["region"],
                "neonsim_dir": sim.fleet["dir"],
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            }
        }
        path = inventory_file(tmp / "inventory", endpoint, ["us-east-1", "us-west-2"], fleet_name, group_vars)
        yield {"sim": sim, "tmp": tmp, "path": path, "placed": placed, "endpoint": endpoint}


def test_aws_ec2_inventory_equals_neonsim_inventory(setup):
    sim, tmp = setup["sim"], setup["tmp"]
    assert set(setup["placed"].values()) == {"us-east-1", "us-west-2"}

    from_ec2 = contract_view(inventory_list(setup["path"], tmp))
    from_neonsim = contract_view(inventory_list(sim.inventory_path, tmp))

    assert from_ec2 == from_neonsim
    # Not equal by both being empty: the groups are the fleet's nodes and the variables its real addresses.
    assert {group: sorted(hosts) for group, hosts in from_ec2.items()} == {
        "pageservers": ["ps1", "ps2", "ps3"],
        "safekeepers": ["sk1", "sk2", "sk3"],
        "storage_controller": ["storcon"],
        "computes": ["c-ec2"],
    }
    ps3 = sim.entry("ps3")
    # Tokens and the CA path stay absent (auth and TLS are off), as in neonsim's inventory.
    expected = dict.fromkeys(from_ec2["pageservers"]["ps3"])
    expected.update(
        neon_node_id=ps3["node_id"],
        neon_api_url=f"http://127.0.0.1:{ps3['http_port']}",
        neon_pg_addr=f"127.0.0.1:{ps3['pg_port']}",
        neon_availability_zone="az-b",
        neon_s3_prefix=ps3["prefix_in_bucket"],
        neon_s3_endpoint_url=sim.fleet["s3"]["endpoint_url"],
        neon_s3_bucket=sim.fleet["s3"]["bucket"],
        neon_s3_region=sim.fleet["s3"]["region"],
        neonsim_dir=sim.fleet["dir"],
        ansible_connection="local",
        ansible_python_interpreter="{{ ansible_playbook_python }}",
    )
    assert from_ec2["pageservers"]["ps3"] == expected
    assert from_ec2["computes"]["c-ec2"]["neon_tenant_id"] == tenant_id(sim, "ec2")


def test_an_ipv6_host_tag_gives_ssh_a_bare_address_and_the_urls_a_bracketed_one(setup):
    """neon_host as an operator may write it for an IPv6 fleet, bracketed or not (the pageserver_instance role writes
    it bracketed): ssh takes no brackets; a URL and a host:port need them."""
    fleet_name = f"ipv6-{os.getpid()}"
    client = ec2(setup["endpoint"], DEFAULT_REGION)
    for name, host in (("ps7", "[fd00::7]"), ("ps8", "fd00::8"), ("ps9", "ps9.storage.internal")):
        tags = {"Name": name, "neon_role": "pageserver", "neon_node_id": name[2:], "neon_host": host}
        launch_tagged_instance(client, {**tags, "neon_fleet": fleet_name})
    path = inventory_file(setup["tmp"] / "ipv6", setup["endpoint"], [DEFAULT_REGION], fleet_name, {})
    hostvars = inventory_list(path, setup["tmp"])["_meta"]["hostvars"]
    addresses = {
        name: (hostvars[name]["ansible_host"], hostvars[name]["neon_api_url"], hostvars[name]["neon_pg_addr"])
        for name in ("ps7", "ps8", "ps9")
    }
    assert addresses == {
        "ps7": ("fd00::7", "http://[fd00::7]:9898", "[fd00::7]:64000"),
        "ps8": ("fd00::8", "http://[fd00::8]:9898", "[fd00::8]:64000"),
        "ps9": ("ps9.storage.internal", "http://ps9.storage.internal:9898", "ps9.storage.internal:64000"),
    }


def test_migrate_tenant_with_the_aws_ec2_inventory(setup, report_dir):
    sim = setup["sim"]
    tid = tenant_id(sim, "ec2")

    run = migrate(InventoryFleet(sim, setup["path"]), tid, "ps1", "ps3", report_dir)

    assert run.rc == 0, run
    result = verdict(sim, "c-ec2")
    assert result["during"]["writes_acked"] > 0
    assert result["during"]["reads_failed"] == 0, result["during"]
    assert result["verified"]["lost_writes"] == 0, result["verified"]
    assert locations(sim, "ps3")[tid]["mode"] == "AttachedSingle"
    assert run.report["outcome"] == "migrated"
    print(
        f"ec2 inventory move ps1 -> ps3: {result['during']['writes_acked']} writes acked, "
        f"{result['during']['reads_ok']} reads ok, {result['during']['reads_failed']} failed, "
        f"{result['verified']['lost_writes']} lost"
    )

"""The pageserver_instance role against a moto EC2 endpoint: one instance with its data volume and tags, a rerun
changes nothing, check mode launches nothing, bad input fails clearly with nothing created, and the host the role
adds carries the same contract variables as the aws_ec2 inventory (inventories/neon.aws_ec2.yml) composes."""

from __future__ import annotations

import json
import re

import pytest
from ec2_harness import (
    BIN,
    CONTRACT_VARS,
    REPO,
    ec2,
    fleet_state,
    image,
    inventory_file,
    inventory_list,
    moto_ec2,
    run,
    subnet,
)

REGION = "us-east-1"
PLAYBOOK = REPO / "tests" / "integration" / "playbooks" / "pageserver_instance.yml"


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("moto")
    with moto_ec2(tmp) as endpoint:
        yield {"endpoint": endpoint, "subnet": subnet(endpoint, REGION, "b"), "image": image(endpoint, REGION)}


def role_vars(aws, fleet: str, **overrides) -> dict:
    return {
        "pageserver_instance_name": "ps4",
        "pageserver_instance_node_id": 4,
        "pageserver_instance_fleet": fleet,
        "pageserver_instance_subnet_id": aws["subnet"],
        "pageserver_instance_image_id": aws["image"],
        "pageserver_instance_instance_type": "m5.large",
        "pageserver_instance_data_volume_size": 1000,
        "pageserver_instance_data_volume_iops": 6000,
        "pageserver_instance_data_volume_throughput": 500,
        "pageserver_instance_region": REGION,
        "pageserver_instance_endpoint_url": aws["endpoint"],
        "pageserver_instance_tags": {"team": "storage"},
        **overrides,
    }


def run_role(tmp, variables: dict, check: bool = False):
    tmp.mkdir(parents=True, exist_ok=True)
    record_path = tmp / f"record-{len(list(tmp.glob('record-*')))}.json"
    cmd = [
        str(BIN / "ansible-playbook"),
        str(PLAYBOOK),
        "-e",
        json.dumps({**variables, "record_path": str(record_path)}),
    ]
    proc = run(cmd + (["--check"] if check else []), tmp)
    output = proc.stdout + proc.stderr
    result = json.loads(record_path.read_text()) if record_path.exists() else None
    return proc.returncode, output, result


def changed(output: str) -> int:
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", output).group(1))


@pytest.fixture(scope="module")
def launched(aws, tmp_path_factory):
    """Check mode, then the launch, then a rerun, of one pageserver of fleet `launch`."""
    tmp = tmp_path_factory.mktemp("launch")
    variables = role_vars(aws, "launch")
    before = fleet_state(aws["endpoint"], REGION, "launch")
    check = run_role(tmp, variables, check=True)
    after_check = fleet_state(aws["endpoint"], REGION, "launch")
    first = run_role(tmp, variables)
    after_first = fleet_state(aws["endpoint"], REGION, "launch")
    rerun = run_role(tmp, variables)
    after_rerun = fleet_state(aws["endpoint"], REGION, "launch")
    return {
        "tmp": tmp,
        "before": before,
        "check": check,
        "after_check": after_check,
        "first": first,
        "after_first": after_first,
        "rerun": rerun,
        "after_rerun": after_rerun,
    }


def test_check_mode_launches_nothing(launched):
    rc, output, result = launched["check"]
    assert rc == 0, output
    assert launched["after_check"] == launched["before"]
    assert launched["before"]["instances"] == {}
    record = result["record"]
    assert record["created"] is True and record["instance_id"] == ""
    assert result["groups"]["pageservers"] == []


def test_launches_one_instance_with_its_data_volume_and_tags(launched, aws):
    rc, output, result = launched["first"]
    assert rc == 0, output
    instances = launched["after_first"]["instances"]
    assert len(instances) == 1, instances
    ((instance_id, instance),) = instances.items()
    assert instance["subnet_id"] == aws["subnet"]
    assert instance["tags"] == {
        "Name": "ps4",
        "neon_role": "pageserver",
        "neon_node_id": "4",
        "neon_fleet": "launch",
        "neon_availability_zone": "us-east-1b",
        "neon_http_port": "9898",
        "neon_pg_port": "64000",
        "neon_api_scheme": "http",
        "neon_s3_prefix": "pageserver/",
        "team": "storage",
    }
    data_volume_id = instance["devices"]["/dev/sdf"]
    volume = launched["after_first"]["volumes"][data_volume_id]
    # moto ignores iops and throughput (it reports gp3's 3000 and no throughput); size and type are checked here,
    # the iops/throughput of the block device mapping in the unit tests.
    assert (volume["size"], volume["type"]) == (1000, "gp3")
    assert volume["tags"]["Name"] == "ps4-data" and volume["tags"]["neon_volume"] == "pageserver-data"
    assert volume["tags"]["neon_node_id"] == "4" and volume["tags"]["neon_fleet"] == "launch"
    record = result["record"]
    assert {k: record[k] for k in ("name", "instance_id", "private_ip", "availability_zone", "region", "node_id")} == {
        "name": "ps4",
        "instance_id": instance_id,
        "private_ip": instance["private_ip"],
        "availability_zone": "us-east-1b",
        "region": REGION,
        "node_id": 4,
    }
    assert (record["data_volume_id"], record["data_device_name"], record["created"]) == (
        data_volume_id,
        "/dev/sdf",
        True,
    )
    assert result["groups"] == {"pageservers": ["ps4"], "pageserver_instance_new": ["ps4"]}


def test_rerun_changes_nothing_and_adopts(launched):
    rc, output, result = launched["rerun"]
    assert rc == 0, output
    assert changed(output) == 0, output
    assert launched["after_rerun"] == launched["after_first"]
    record, first = result["record"], launched["first"][2]["record"]
    assert record["created"] is False
    assert record["instance_id"] == first["instance_id"] and record["data_volume_id"] == first["data_volume_id"]


def test_added_host_has_the_variables_the_aws_ec2_inventory_composes(launched, aws):
    """The role's add_host and inventories/neon.aws_ec2.yml build the same contract variables from the same tags."""
    tmp = launched["tmp"]
    path = inventory_file(tmp / "inventory", aws["endpoint"], [REGION], "launch", {})
    (tmp / "inventory" / "group_vars" / "all.yml").write_text(
        (REPO / "inventories/group_vars/all/main.yml").read_text()
    )
    listing = inventory_list(path, tmp)
    from_inventory = listing["_meta"]["hostvars"]["ps4"]
    from_role = launched["first"][2]["host_vars"]
    names = [*CONTRACT_VARS["pageservers"], "ansible_host", "ansible_python_interpreter"]
    assert {n: from_inventory.get(n) for n in names} == {n: from_role.get(n) for n in names}
    assert from_role["neon_api_url"] == f"http://{from_role['ansible_host']}:9898"
    assert listing["pageservers"]["hosts"] == ["ps4"]


@pytest.mark.parametrize(
    ("overrides", "message", "reaches_aws"),
    [
        pytest.param(
            {"pageserver_instance_subnet_id": "subnet-0123456789abcdef0"},
            "pageserver_instance_subnet_id: 'subnet-0123456789abcdef0' does not exist in region us-east-1",
            True,
            id="unknown-subnet",
        ),
        pytest.param(
            {"pageserver_instance_image_id": "ami-0123456789abcdef0"},
            "pageserver_instance_image_id: 'ami-0123456789abcdef0' matches no AMI in region us-east-1",
            True,
            id="unknown-ami",
        ),
        pytest.param(
            {"pageserver_instance_data_volume_size": 0},
            "pageserver_instance_data_volume_size: 0 is outside 1..16384 GiB for gp3",
            False,
            id="volume-size-0",
        ),
        pytest.param(
            {"pageserver_instance_data_volume_iops": 20000},
            "pageserver_instance_data_volume_iops: 20000 is outside 3000..16000 for gp3",
            False,
            id="iops-above-gp3-limit",
        ),
        pytest.param(
            {"pageserver_instance_data_volume_type": "gp2", "pageserver_instance_data_volume_throughput": 0},
            "pageserver_instance_data_volume_iops: 6000 cannot be set for gp2",
            False,
            id="iops-on-gp2",
        ),
    ],
)
def test_bad_input_fails_clearly_and_creates_nothing(aws, tmp_path, overrides, message, reaches_aws):
    fleet = "bad"
    variables = role_vars(aws, fleet, **overrides)
    if not reaches_aws:
        # Validation comes before any AWS call: an endpoint that answers nothing must not matter.
        variables["pageserver_instance_endpoint_url"] = "http://127.0.0.1:9"
    volumes_before = fleet_state(aws["endpoint"], REGION, fleet)["volumes"]

    rc, output, _ = run_role(tmp_path, variables)

    assert rc != 0, output
    assert message in output, output
    state = fleet_state(aws["endpoint"], REGION, fleet)
    assert state["instances"] == {}
    assert state["volumes"] == volumes_before


def test_adopts_an_instance_without_data_volume_and_attaches_one(aws, tmp_path):
    """An instance launched by hand (tagged with the node, no data disk) is adopted, not duplicated; the role
    creates the data volume and attaches it at the device."""
    fleet = "adopt"
    client = ec2(aws["endpoint"], REGION)
    tags = {"Name": "ps5", "neon_role": "pageserver", "neon_node_id": "5", "neon_fleet": fleet}
    (existing,) = client.run_instances(
        ImageId=aws["image"],
        MinCount=1,
        MaxCount=1,
        InstanceType="m5.large",
        SubnetId=aws["subnet"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["Instances"]

    rc, output, result = run_role(
        tmp_path, role_vars(aws, fleet, pageserver_instance_name="ps5", pageserver_instance_node_id=5)
    )

    assert rc == 0, output
    state = fleet_state(aws["endpoint"], REGION, fleet)
    assert list(state["instances"]) == [existing["InstanceId"]]
    instance = state["instances"][existing["InstanceId"]]
    assert instance["tags"]["neon_availability_zone"] == "us-east-1b" and instance["tags"]["team"] == "storage"
    volume = state["volumes"][instance["devices"]["/dev/sdf"]]
    assert (volume["size"], volume["type"], volume["tags"]["Name"]) == (1000, "gp3", "ps5-data")
    record = result["record"]
    assert record["created"] is False and record["data_volume_id"] == instance["devices"]["/dev/sdf"]

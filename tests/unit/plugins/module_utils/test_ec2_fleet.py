"""Decisions of the pageserver_instance role and the EC2 inventory's host variables (module_utils/_ec2_fleet.py)."""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.module_utils import _ec2_fleet as fleet

SUBNET = "subnet-0a1b2c3d4e5f60718"
VALID = {
    "name": "ps4",
    "node_id": 4,
    "fleet": "prod",
    "region": "us-east-1",
    "subnet_id": SUBNET,
    "availability_zone": "",
    "image_id": "ami-0123456789abcdef0",
    "image_name": "",
    "instance_type": "m6i.2xlarge",
    "security_group_ids": ["sg-0123456789abcdef0"],
    "tags": {"team": "storage"},
    "data_volume_size": 1000,
    "data_volume_type": "gp3",
    "data_volume_iops": 6000,
    "data_volume_throughput": 500,
    "data_volume_device": "/dev/sdf",
    "data_volume_encrypted": True,
    "data_volume_kms_key_id": "",
    "http_port": 9898,
    "pg_port": 64000,
    "api_scheme": "http",
    "s3_prefix": "pageserver/",
    "python_interpreter": "/usr/bin/python3",
}


def errors(**overrides) -> list[str]:
    return fleet.plan({**VALID, **overrides})["errors"]


def test_valid_request_builds_tags_filters_and_block_device():
    request = fleet.plan(VALID)
    assert request["errors"] == []
    assert request["tags"] == {
        "team": "storage",
        "Name": "ps4",
        "neon_fleet": "prod",
        "neon_role": "pageserver",
        "neon_node_id": "4",
        "neon_http_port": "9898",
        "neon_pg_port": "64000",
        "neon_api_scheme": "http",
        "neon_s3_prefix": "pageserver/",
    }
    assert request["filters"] == {
        "tag:neon_fleet": "prod",
        "tag:neon_role": "pageserver",
        "tag:neon_node_id": "4",
        "instance-state-name": ["pending", "running", "stopping", "stopped"],
    }
    assert request["block_device"] == {
        "device_name": "/dev/sdf",
        "ebs": {
            "volume_type": "gp3",
            "volume_size": 1000,
            "delete_on_termination": False,
            "iops": 6000,
            "throughput": 500,
            "encrypted": True,
        },
    }
    assert request["volume_tags"]["Name"] == "ps4-data"


def test_extra_vars_given_as_text_are_integers():
    request = fleet.plan({**VALID, "node_id": "4", "data_volume_size": "1000", "data_volume_iops": "0"})
    assert request["errors"] == []
    assert request["params"]["node_id"] == 4
    assert request["block_device"]["ebs"]["volume_size"] == 1000
    assert "iops" not in request["block_device"]["ebs"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data_volume_size": 0}, "pageserver_instance_data_volume_size: 0 is outside 1..16384 GiB for gp3"),
        ({"data_volume_size": 16385}, "pageserver_instance_data_volume_size: 16385 is outside 1..16384 GiB for gp3"),
        (
            {"data_volume_type": "st1", "data_volume_size": 100, "data_volume_iops": 0, "data_volume_throughput": 0},
            "pageserver_instance_data_volume_size: 100 is outside 125..16384 GiB for st1",
        ),
        ({"data_volume_iops": 16001}, "pageserver_instance_data_volume_iops: 16001 is outside 3000..16000 for gp3"),
        ({"data_volume_iops": 2999}, "pageserver_instance_data_volume_iops: 2999 is outside 3000..16000 for gp3"),
        (
            {"data_volume_size": 10, "data_volume_iops": 6000, "data_volume_throughput": 0},
            "pageserver_instance_data_volume_iops: 6000 is above 500 iops per GiB for gp3 (5000 for 10 GiB)",
        ),
        (
            {"data_volume_throughput": 1001},
            "pageserver_instance_data_volume_throughput: 1001 is outside 125..1000 MiB/s for gp3",
        ),
        (
            {"data_volume_iops": 0, "data_volume_throughput": 1000},
            "pageserver_instance_data_volume_throughput: 1000 is above 0.25 MiB/s per iops (750 for 3000 iops)",
        ),
        (
            {"data_volume_type": "gp2", "data_volume_throughput": 0},
            "pageserver_instance_data_volume_iops: 6000 cannot be set for gp2",
        ),
        (
            {"data_volume_type": "gp2", "data_volume_iops": 0},
            "pageserver_instance_data_volume_throughput: 500 cannot be set for gp2",
        ),
        (
            {"data_volume_type": "io2", "data_volume_iops": 0, "data_volume_throughput": 0},
            "pageserver_instance_data_volume_iops: 0 is required for io2",
        ),
        (
            {"data_volume_type": "io1", "data_volume_iops": 64001, "data_volume_throughput": 0},
            "pageserver_instance_data_volume_iops: 64001 is outside 100..64000 for io1",
        ),
        (
            {"data_volume_type": "io1", "data_volume_size": 100, "data_volume_iops": 6000, "data_volume_throughput": 0},
            "pageserver_instance_data_volume_iops: 6000 is above 50 iops per GiB for io1 (5000 for 100 GiB)",
        ),
        ({"data_volume_type": "gp4"}, "pageserver_instance_data_volume_type: 'gp4' is not an EBS volume type"),
        ({"node_id": 0}, "pageserver_instance_node_id: 0 is not a node id"),
        ({"node_id": True}, "pageserver_instance_node_id: True is not a node id"),
        ({"node_id": 1 << 64}, "pageserver_instance_node_id: 18446744073709551616 is not a node id"),
        ({"name": "ps 4; rm"}, "pageserver_instance_name: 'ps 4; rm' is not a host name"),
        ({"fleet": ""}, "pageserver_instance_fleet: '' is not a fleet name"),
        ({"subnet_id": "sn-1"}, "pageserver_instance_subnet_id: 'sn-1' is not a subnet id"),
        ({"region": "mars"}, "pageserver_instance_region: 'mars' is not an AWS region"),
        (
            {"availability_zone": "us-east-1"},
            "pageserver_instance_availability_zone: 'us-east-1' is not an availability",
        ),
        ({"image_id": ""}, "pageserver_instance_image_id: '' and pageserver_instance_image_name: set exactly one"),
        (
            {"image_name": "neon-*"},
            "pageserver_instance_image_id: 'ami-0123456789abcdef0' and pageserver_instance_image",
        ),
        ({"image_id": "ami-XYZ"}, "pageserver_instance_image_id: 'ami-XYZ' is not an AMI id"),
        ({"instance_type": "large"}, "pageserver_instance_instance_type: 'large' is not an instance type"),
        ({"security_group_ids": ["default"]}, "pageserver_instance_security_group_ids: 'default' is not a security"),
        (
            {"data_volume_device": "/dev/sda1"},
            "pageserver_instance_data_volume_device: '/dev/sda1' is not a data device",
        ),
        ({"http_port": 0}, "pageserver_instance_http_port: 0 is not a TCP port"),
        ({"pg_port": 70000}, "pageserver_instance_pg_port: 70000 is not a TCP port"),
        ({"api_scheme": "ftp"}, "pageserver_instance_api_scheme: 'ftp' is not http or https"),
        ({"s3_prefix": "../other/"}, "pageserver_instance_s3_prefix: '../other/' is not an S3 key prefix"),
        ({"host": "fd00::4"}, "pageserver_instance_host: 'fd00::4' is not a host name or address (an IPv6 address"),
        ({"host": "[10.0.0.1]"}, "pageserver_instance_host: '[10.0.0.1]' is not an IPv6 address in brackets"),
        ({"host": "ps4.example.com:9898"}, "pageserver_instance_host: 'ps4.example.com:9898' is not a host name"),
        ({"host": "ps 4"}, "pageserver_instance_host: 'ps 4' is not a host name or address (the host name may"),
        ({"tags": {"neon_host": "x"}}, "pageserver_instance_tags: 'neon_host' is set by the role"),
        ({"tags": {"neon_node_id": "5"}}, "pageserver_instance_tags: 'neon_node_id' is set by the role"),
        ({"tags": {"Name": "x"}}, "pageserver_instance_tags: 'Name' is set by the role"),
        ({"tags": {"aws:cloudformation": "x"}}, "pageserver_instance_tags: 'aws:cloudformation' is not a tag key"),
        ({"tags": {"api_token": "x"}}, "pageserver_instance_tags: 'api_token' looks like a credential"),
        ({"tags": {"team": "x" * 257}}, "is not a tag value"),
        ({"tags": ["team"]}, "pageserver_instance_tags: ['team'] is not a dictionary"),
    ],
)
def test_bad_input_is_named_with_its_value(overrides, message):
    found = errors(**overrides)
    assert any(message in e for e in found), found


@pytest.mark.parametrize("host", ["ps4.storage.internal", "10.213.78.2", "[fd00::4]"])
def test_host_is_tagged_and_makes_the_contract_addresses(host):
    request = fleet.plan({**VALID, "host": host})
    assert request["errors"] == []
    assert request["tags"]["neon_host"] == host
    composed = fleet.contract_host_vars("pageserver", request["tags"], "10.0.1.7", "us-east-1b")
    assert composed["ansible_host"] == host.strip("[]")  # ssh takes no brackets
    assert composed["neon_api_url"] == f"http://{host}:9898"
    assert composed["neon_pg_addr"] == f"{host}:64000"


@pytest.mark.parametrize("tag", ["fd00::4", "[fd00::4]"])
def test_an_ipv6_host_tag_set_by_hand_bracketed_or_not(tag):
    composed = fleet.contract_host_vars("pageserver", {"neon_host": tag, "neon_node_id": "4"}, "10.0.1.7", "az")
    assert composed["ansible_host"] == "fd00::4"
    assert composed["neon_api_url"] == "http://[fd00::4]:9898"
    assert composed["neon_pg_addr"] == "[fd00::4]:64000"


def test_no_host_no_tag():
    assert "neon_host" not in fleet.plan({**VALID, "host": ""})["tags"]


def test_every_problem_is_reported_at_once():
    found = errors(data_volume_size=0, data_volume_iops=20000, node_id=-1)
    assert len(found) == 3, found


def test_gp3_defaults_leave_iops_and_throughput_to_aws():
    request = fleet.plan({**VALID, "data_volume_iops": 0, "data_volume_throughput": 0})
    assert request["block_device"]["ebs"] == {
        "volume_type": "gp3",
        "volume_size": 1000,
        "delete_on_termination": False,
        "encrypted": True,
    }


def instance(instance_id="i-1", node_id="4", name="ps4", subnet=SUBNET, **extra):
    return {
        "instance_id": instance_id,
        "subnet_id": subnet,
        "image_id": "ami-0123456789abcdef0",
        "tags": {"Name": name, "neon_node_id": node_id, "neon_fleet": "prod", "neon_role": "pageserver"},
        **extra,
    }


SUBNETS = [{"subnet_id": SUBNET, "availability_zone": "us-east-1b"}]
IMAGES = [
    {"image_id": "ami-00000000000000001", "creation_date": "2026-01-01T00:00:00.000Z"},
    {"image_id": "ami-00000000000000002", "creation_date": "2026-06-01T00:00:00.000Z"},
]


def decide(subnets=None, images=None, instances=(), **overrides):
    request = fleet.plan({**VALID, **overrides})
    subnets = SUBNETS if subnets is None else subnets
    images = IMAGES if images is None else images
    return fleet.decide(request, request["params"], list(subnets), list(images), list(instances))


def test_launches_from_the_newest_image_in_the_subnets_zone():
    decision = decide(instances=[instance("i-9", node_id="3", name="ps3")])
    assert decision["errors"] == []
    assert decision["action"] == "launch"
    assert decision["image_id"] == "ami-00000000000000002"
    assert decision["availability_zone"] == "us-east-1b"
    assert decision["tags"]["neon_availability_zone"] == "us-east-1b"


def test_adopts_the_instance_tagged_with_the_node_id_even_without_the_ami():
    decision = decide(images=[], instances=[instance("i-4")])
    assert decision["errors"] == [] and decision["action"] == "adopt" and decision["instance_id"] == "i-4"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subnets": []}, f"pageserver_instance_subnet_id: '{SUBNET}' does not exist in region us-east-1"),
        ({"images": []}, "pageserver_instance_image_id: 'ami-0123456789abcdef0' matches no AMI in region us-east-1"),
        (
            {"images": [], "image_id": "", "image_name": "neon-ps-*"},
            "pageserver_instance_image_name: 'neon-ps-*' matches no AMI",
        ),
        ({"availability_zone": "us-east-1a"}, "is not the availability zone of"),
        ({"instances": [instance("i-1"), instance("i-2")]}, "pageserver_instance_node_id: 4 is tagged on several"),
        (
            {"instances": [instance("i-3", node_id="3", name="ps4")]},
            "pageserver_instance_name: 'ps4' is already the Name",
        ),
        ({"instances": [instance("i-4", subnet="subnet-0ffffffffffffffff")]}, "an instance cannot move subnets"),
    ],
)
def test_refusals_name_the_variable(kwargs, message):
    decision = decide(**kwargs)
    assert any(message in e for e in decision["errors"]), decision["errors"]
    assert "action" not in decision


def test_record_and_host_vars_from_the_launched_instance():
    request = fleet.plan(VALID)
    decision = decide()
    launched = instance(
        "i-4",
        private_ip_address="10.0.1.5",
        placement={"availability_zone": "us-east-1b"},
        state={"name": "running"},
        block_device_mappings=[{"device_name": "/dev/sdf", "ebs": {"volume_id": "vol-1"}}],
    )
    record = fleet.record(request, request["params"], decision, launched, "")
    assert record["instance_id"] == "i-4" and record["data_volume_id"] == "vol-1" and record["created"] is True
    assert record["host_vars"] == {
        "ansible_host": "10.0.1.5",
        "neon_api_url": "http://10.0.1.5:9898",
        "neon_node_id": 4,
        "neon_pg_addr": "10.0.1.5:64000",
        "neon_availability_zone": "us-east-1b",
        "neon_s3_prefix": "pageserver/",
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def test_record_in_check_mode_before_a_launch_has_no_host():
    request = fleet.plan(VALID)
    record = fleet.record(request, request["params"], decide(), None, "")
    assert record["instance_id"] == "" and record["created"] is True and record["host_vars"] == {}
    assert record["availability_zone"] == "us-east-1b"


def test_volume_drift_reports_what_differs():
    ebs = fleet.plan(VALID)["block_device"]["ebs"]
    assert fleet.volume_drift(ebs, {"size": 1000, "type": "gp3", "iops": 6000, "throughput": 500}) == []
    assert fleet.volume_drift(ebs, {"size": 500, "type": "gp2", "iops": 6000, "throughput": None}) == [
        "size 500 GiB, requested 1000 GiB",
        "type gp2, requested gp3",
    ]


@pytest.mark.parametrize(
    ("role", "tags", "expected"),
    [
        (
            "safekeeper",
            {"neon_node_id": "101", "neon_host": "127.0.0.1", "neon_http_port": "5001", "neon_pg_port": "5002"},
            {
                "ansible_host": "127.0.0.1",
                "neon_api_url": "http://127.0.0.1:5001",
                "neon_node_id": 101,
                "neon_pg_addr": "127.0.0.1:5002",
                "neon_availability_zone": "us-east-1a",
            },
        ),
        (
            "storage_controller",
            {"neon_api_scheme": "https"},
            {"ansible_host": "10.0.0.9", "neon_api_url": "https://10.0.0.9:1234"},
        ),
        (
            "compute",
            {"neon_compute_id": "c1", "neon_tenant_id": "t", "neon_timeline_id": "l"},
            {
                "ansible_host": "10.0.0.9",
                "neon_api_url": "http://10.0.0.9:3080",
                "neon_compute_id": "c1",
                "neon_tenant_id": "t",
                "neon_timeline_id": "l",
                "neon_pgdata": "/var/db/postgres/compute/pgdata",
                "neon_spec_path": "/var/db/postgres/compute/spec.json",
            },
        ),
    ],
)
def test_contract_host_vars_per_role(role, tags, expected):
    assert fleet.contract_host_vars(role, tags, "10.0.0.9", "us-east-1a") == expected


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("InstanceLimitExceeded", "hit the account's instance limit (InstanceLimitExceeded)"),
        ("VcpuLimitExceeded", "hit the account's vCPU quota for this instance family (VcpuLimitExceeded)"),
        ("InsufficientInstanceCapacity", "hit AWS capacity for this instance type"),
        ("VolumeLimitExceeded", "hit the account's EBS storage quota (VolumeLimitExceeded)"),
        ("InvalidAMIID.NotFound", "the AMI is unusable in us-east-1 (InvalidAMIID.NotFound)"),
        ("InvalidSubnetID.NotFound", f"pageserver_instance_subnet_id: '{SUBNET}' is unusable"),
        ("Unsupported", "AWS refused ps4 (m6i.2xlarge in"),
    ],
)
def test_launch_error_names_the_limit(code, message):
    result = {"failed": True, "msg": "Failed to create new EC2 instance", "error": {"code": code, "message": "no"}}
    text = fleet.launch_error(result, VALID)
    assert message in text, text
    assert "no" in text

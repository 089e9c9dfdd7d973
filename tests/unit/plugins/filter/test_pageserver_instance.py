from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.neonops.storage.plugins.filter.pageserver_instance import FilterModule

FILTERS = FilterModule().filters()


def test_filters_are_exported():
    assert set(FILTERS) == {
        "pageserver_instance_plan",
        "pageserver_instance_decide",
        "pageserver_instance_record",
        "pageserver_instance_data_volume",
        "pageserver_instance_launch_error",
    }


def test_plan_refuses_what_is_not_a_dictionary():
    with pytest.raises(AnsibleFilterError, match="expected a dictionary, got list"):
        FILTERS["pageserver_instance_plan"](["name"])


def test_data_volume_reads_the_block_device_mappings():
    instance = {"block_device_mappings": [{"device_name": "/dev/sdf", "ebs": {"volume_id": "vol-1"}}]}
    assert FILTERS["pageserver_instance_data_volume"](instance, "/dev/sdf") == "vol-1"
    assert FILTERS["pageserver_instance_data_volume"](instance, "/dev/sdg") == ""
    assert FILTERS["pageserver_instance_data_volume"]({}, "/dev/sdf") == ""

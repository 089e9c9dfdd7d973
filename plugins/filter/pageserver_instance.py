# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Filters for the pageserver_instance role: its variables and AWS's answers in, the role's decisions out.

The decisions live in module_utils/_ec2_fleet.py (unit-tested); these filters adapt Ansible data to them.
Documented in the sidecar .yml files.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.neonops.storage.plugins.module_utils import _ec2_fleet


def _dict(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise AnsibleFilterError(f"{what}: expected a dictionary, got {type(value).__name__}")
    return dict(value)


def pageserver_instance_plan(params):
    """Validate the role's variables; ``errors`` lists every problem, naming the variable and its value."""
    return _ec2_fleet.plan(_dict(params, "pageserver_instance_plan"))


def pageserver_instance_decide(request, params, subnets, images, instances):
    """Launch or adopt, from the subnet, AMI and fleet instances AWS described."""
    return _ec2_fleet.decide(
        _dict(request, "pageserver_instance_decide"),
        _dict(params, "pageserver_instance_decide"),
        list(subnets or []),
        list(images or []),
        list(instances or []),
    )


def pageserver_instance_record(request, params, decision, instance=None, volume_id="", volume=None):
    """The role's output record, with the inventory-contract host variables of the instance."""
    return _ec2_fleet.record(
        _dict(request, "pageserver_instance_record"),
        _dict(params, "pageserver_instance_record"),
        _dict(decision, "pageserver_instance_record"),
        dict(instance) if instance else None,
        volume_id or "",
        dict(volume) if volume else None,
    )


def pageserver_instance_data_volume(instance, device_name):
    """The id of the EBS volume attached at ``device_name``, or an empty string."""
    return _ec2_fleet.data_volume_of(_dict(instance or {}, "pageserver_instance_data_volume"), device_name)


def pageserver_instance_launch_error(result, params):
    """A clear message for a failed amazon.aws launch or volume call (quota, capacity, AMI, subnet)."""
    return _ec2_fleet.launch_error(_dict(result, "pageserver_instance_launch_error"), _dict(params, "params"))


class FilterModule:
    def filters(self):
        return {
            "pageserver_instance_plan": pageserver_instance_plan,
            "pageserver_instance_decide": pageserver_instance_decide,
            "pageserver_instance_record": pageserver_instance_record,
            "pageserver_instance_data_volume": pageserver_instance_data_volume,
            "pageserver_instance_launch_error": pageserver_instance_launch_error,
        }

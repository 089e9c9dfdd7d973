# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Filters for the provision_pageserver playbook's report (each pageserver's disk use before and after the moves)
and the pageserver role's record of its data volume's headroom.

The report and the headroom are built in module_utils/_disk_plan.py (unit-tested); these filters only adapt the
playbook's registered results to it. Documented in the sidecar .yml files.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.neonops.storage.plugins.module_utils import _disk_plan


def disk_report(before, after, run_id, plan=None, moves=None, node=None, failure=None):
    """The report dictionary from the disk use before and after (``pageserver_disk_plan``'s ``disk``)."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        raise AnsibleFilterError("disk_report: before and after must be the disk dictionaries of pageserver_disk_plan")
    failure = dict(failure) if failure else None
    return _disk_plan.build_report(
        str(run_id), dict(before), dict(after), plan, list(moves or []), dict(node or {}), failure
    )


def disk_report_markdown(report):
    """The report as Markdown."""
    if not isinstance(report, dict):
        raise AnsibleFilterError("disk_report_markdown: expected the dictionary of disk_report")
    return _disk_plan.render_markdown(report)


def pageserver_disk_headroom(df_output, mount, max_usage_pct, min_avail_bytes):
    """The data volume's size and headroom (the pageserver role's record of it)."""
    try:
        return _disk_plan.data_volume_headroom(df_output, str(mount), max_usage_pct, min_avail_bytes)
    except ValueError as exc:
        raise AnsibleFilterError(f"pageserver_disk_headroom: {exc}") from None


class FilterModule:
    def filters(self):
        return {
            "disk_report": disk_report,
            "disk_report_markdown": disk_report_markdown,
            "pageserver_disk_headroom": pageserver_disk_headroom,
        }

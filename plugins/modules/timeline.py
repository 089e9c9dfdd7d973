#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: timeline
short_description: Create or delete a timeline of a tenant shard on a Neon pageserver
version_added: 0.1.0
description:
  - Declarative timeline on one pageserver. Reads the timeline with
    C(GET /v1/tenant/{tenant_shard_id}/timeline/{timeline_id}) first and sends nothing when it is already as declared.
  - With O(state=present), a missing timeline is created with C(POST /v1/tenant/{tenant_shard_id}/timeline)
    as a branch of O(ancestor_timeline_id) when that is given, otherwise as a new root timeline (bootstrap).
  - An existing timeline is compared with the declaration instead of being taken as success. Its ancestor
    must be O(ancestor_timeline_id) (no ancestor when that is omitted), and its branch point must be
    O(ancestor_start_lsn) when that is given. On a difference the module fails and names each differing field.
    The pageserver answers HTTP 409 for the same case when the timeline appears between the read and
    the create, and the module then fails the same way.
  - HTTP 429 (the same timeline is being created right now) and 503 (ancestor or tenant not active yet) are
    retried with backoff until O(wait_timeout) expires. The create request is idempotent for identical
    parameters, so a retry cannot make a second timeline.
  - With O(state=absent), the module sends C(DELETE), which the pageserver answers with 202 and completes
    in the background, then polls the timeline until it is gone (HTTP 404) or O(wait_timeout) expires.
    HTTP 409 (a deletion is already running) is waited for the same way. A timeline with child branches
    cannot be deleted; the module fails with the pageserver's message (HTTP 412).
  - The pageserver also answers 404 when the tenant shard is not attached there. O(state=absent) then reports
    the timeline as absent, so point O(api_url) at the pageserver where the shard is attached.
  - Under a storage controller, create and delete timelines through the controller's C(/v1/) routes (same
    paths) so that every shard gets them; this module talks to whatever O(api_url) names.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - Only reads the timeline and reports whether it would be created or deleted. A mismatch with an
        existing timeline fails in check mode too.
  diff_mode:
    support: full
    details:
      - Before and after are the timeline's C(timeline_id), C(ancestor_timeline_id), C(ancestor_lsn) and
        C(pg_version); V({}) stands for no timeline.
  idempotent:
    support: full
options:
  tenant_shard_id:
    description:
      - The tenant shard, V(<tenant_id>) for an unsharded tenant or V(<tenant_id>-NNCC) for shard NN of CC.
    type: str
    required: true
  timeline_id:
    description:
      - The timeline id (32 hexadecimal characters). For a new timeline, you choose it.
    type: str
    required: true
  state:
    description:
      - V(present) creates the timeline when it is missing and checks an existing one against the declaration.
      - V(absent) deletes it and waits until it is gone.
    type: str
    choices: [present, absent]
    default: present
  ancestor_timeline_id:
    description:
      - The parent timeline of a branch. Omit it for a root timeline.
      - An existing timeline with a different parent, or with a parent when this is omitted, is a mismatch
        and makes the module fail.
      - Ignored when O(state=absent).
    type: str
  ancestor_start_lsn:
    description:
      - The branch point as LSN text C(X/Y) (hexadecimal, for example V(0/16960E8)). Only with O(ancestor_timeline_id).
      - When omitted, the pageserver branches at the ancestor's last record LSN, and the branch point of an
        existing timeline is not compared.
      - It must not be below the ancestor's GC cutoff (C(min_readable_lsn)); the pageserver refuses such a
        branch with HTTP 406.
      - Ignored when O(state=absent).
    type: str
  pg_version:
    description:
      - Postgres major version of a new root timeline, for example V(16). When omitted, the pageserver's
        default applies.
      - A branch inherits its ancestor's version; the pageserver ignores this option for branches, and so does the
        comparison with an existing branch.
      - Ignored when O(state=absent).
      - From 14 to 99; a boolean is refused.
    type: int
  wait_timeout:
    description:
      - Seconds to keep retrying a create answered with HTTP 429 or 503, and to wait for a deletion to finish.
      - From 0 to 604800 (7 days).
    type: float
    default: 120
notes:
  - The token needs the C(pageserverapi) scope (or the C(tenant) scope for this tenant).
seealso:
  - module: neonops.storage.tenant_info
  - module: neonops.storage.timeline_catchup
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Branch a timeline off main at a given LSN
  neonops.storage.timeline:
    api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    api_token: "{{ neon_pageserver_api_token | default(omit) }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    timeline_id: 3a7c2b6e1d0f4c8a9b5e6d7f8a9b0c1d
    ancestor_timeline_id: de200bd42b49cc1814412c7e592dd6e9
    ancestor_start_lsn: 0/16960E8
  register: branch

- name: Show where the branch starts
  ansible.builtin.debug:
    msg: "{{ branch.timeline.ancestor_lsn }} ({{ branch.timeline.ancestor_lsn_int }})"

- name: Delete the branch and wait until it is gone
  neonops.storage.timeline:
    api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    timeline_id: 3a7c2b6e1d0f4c8a9b5e6d7f8a9b0c1d
    state: absent
    wait_timeout: 300
"""

RETURN = r"""
timeline:
  description:
    - The timeline (TimelineInfo) as the pageserver reports it after the module ran, with C(<field>_int) next to
      every LSN field.
    - V(null) when the timeline is absent, and in check mode when it would be created.
  returned: always
  type: dict
  sample:
    tenant_id: 1f359dd625e519a1a4e8d7509690f6fc
    timeline_id: 3a7c2b6e1d0f4c8a9b5e6d7f8a9b0c1d
    ancestor_timeline_id: de200bd42b49cc1814412c7e592dd6e9
    ancestor_lsn: 0/16960E8
    ancestor_lsn_int: 23683304
    last_record_lsn: 0/16960E8
    last_record_lsn_int: 23683304
    pg_version: 16
    state: Active
diff:
  description:
    - C(before) and C(after), each with C(timeline_id), C(ancestor_timeline_id), C(ancestor_lsn) and C(pg_version),
      or V({}) for no timeline.
  returned: always
  type: dict
  sample:
    before: {}
    after:
      timeline_id: 3a7c2b6e1d0f4c8a9b5e6d7f8a9b0c1d
      ancestor_timeline_id: de200bd42b49cc1814412c7e592dd6e9
      ancestor_lsn: 0/16960E8
      pg_version: null
"""

import time

from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._ids import TenantShardId, validate_timeline_id
from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)
from ansible_collections.neonops.storage.plugins.module_utils._poll import PollTimeout, poll

CREATE_BUSY_STATUSES = (429, 503)


def _sleep(seconds):
    time.sleep(seconds)


def summary(info) -> dict:
    """The identifying fields of a timeline, for the diff; {} for no timeline."""
    if not info:
        return {}
    return {key: info.get(key) for key in ("timeline_id", "ancestor_timeline_id", "ancestor_lsn", "pg_version")}


class TimelineManager:
    def __init__(self, module, client, tsid: TenantShardId, timeline_id: str, ancestor_timeline_id, ancestor_lsn):
        self.module = module
        self.client = client
        self.tsid = tsid
        self.timeline_id = timeline_id
        self.ancestor_timeline_id = ancestor_timeline_id
        self.ancestor_lsn = ancestor_lsn
        self.pg_version = module.params["pg_version"]
        self.wait_timeout = module.params["wait_timeout"]
        self.deadline = time.monotonic() + self.wait_timeout
        self.name = f"{tsid}/{timeline_id}"

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, tenant_shard_id=str(self.tsid), timeline_id=self.timeline_id, **extra)

    def read(self):
        """The TimelineInfo, or None when the pageserver answers 404."""
        try:
            return ps.timeline(self.client, self.tsid, self.timeline_id)
        except NeonAPIError as exc:
            if exc.not_found:
                return None
            fail_api(self.module, exc, f"read timeline {self.name}")

    def mismatches(self, info) -> list:
        return ps.timeline_mismatches(info, self.ancestor_timeline_id, self.ancestor_lsn, self.pg_version)

    def fail_mismatch(self, info, differences):
        self.fail(
            f"timeline {self.name} exists with different parameters: {'; '.join(differences)}",
            differences=differences,
            timeline=ps.timeline_with_ints(info),
        )

    def wanted(self) -> dict:
        """The diff's 'after' for a timeline that will be created."""
        return {
            "timeline_id": self.timeline_id,
            "ancestor_timeline_id": self.ancestor_timeline_id,
            "ancestor_lsn": str(self.ancestor_lsn) if self.ancestor_lsn is not None else None,
            "pg_version": self.pg_version if self.ancestor_timeline_id is None else None,
        }

    def poll(self, probe, what, on_retry=None):
        """poll() within what is left of the one wait_timeout budget of this run."""
        return poll(probe, self.deadline - time.monotonic(), what, sleep=_sleep, on_retry=on_retry)

    def create(self) -> dict:
        attempted = f"create timeline {self.name}"

        def probe():
            try:
                return True, ps.create_timeline(
                    self.client,
                    self.tsid,
                    self.timeline_id,
                    ancestor_timeline_id=self.ancestor_timeline_id,
                    ancestor_start_lsn=self.ancestor_lsn,
                    pg_version=self.pg_version if self.ancestor_timeline_id is None else None,
                )
            except NeonAPIError as exc:
                if exc.status in CREATE_BUSY_STATUSES:
                    return False, exc
                if exc.status == 409:
                    self._fail_conflict(exc)
                fail_api(self.module, exc, attempted)

        def warn(exc, _attempt):
            self.module.warn(f"{exc}; retrying the creation of {self.name}")

        try:
            return self.poll(probe, attempted, on_retry=warn)
        except PollTimeout as exc:
            fail_api(self.module, exc.last, attempted)

    def _fail_conflict(self, exc):
        # The timeline appeared after the first read: read it again to name what differs.
        existing = self.read()
        differences = self.mismatches(existing) if existing else []
        if differences:
            self.fail_mismatch(existing, differences)
        fail_api(
            self.module,
            exc,
            f"create timeline {self.name}",
            reason="it exists with different parameters than "
            f"ancestor_timeline_id={self.ancestor_timeline_id}, ancestor_start_lsn={self.ancestor_lsn}, "
            f"pg_version={self.pg_version}",
        )

    def delete(self):
        try:
            ps.delete_timeline(self.client, self.tsid, self.timeline_id)
        except NeonAPIError as exc:
            # 409: another deletion is running; 404: it finished meanwhile. Either way, wait for the 404.
            # Anything else fails; 412 (child branches, or the tenant is missing) with the server's message.
            if not (exc.not_found or exc.status == 409):
                fail_api(self.module, exc, f"delete timeline {self.name}")

        def probe():
            remaining = self.read()
            return remaining is None, remaining

        try:
            self.poll(probe, f"deletion of timeline {self.name}")
        except PollTimeout as exc:
            self.fail(
                f"timeline {self.name} is still present {self.wait_timeout}s after its deletion started",
                timeline=ps.timeline_with_ints(exc.last),
            )


def argument_spec():
    return neon_argument_spec(
        tenant_shard_id={"type": "str", "required": True},
        timeline_id={"type": "str", "required": True},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ancestor_timeline_id={"type": "str"},
        ancestor_start_lsn={"type": "str"},
        pg_version={"type": "int"},
        wait_timeout={"type": "float", "default": 120.0},
    )


def main():
    module = neon_module(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    tsid = validate_or_fail(module, TenantShardId.parse, p["tenant_shard_id"], "tenant_shard_id")
    timeline_id = validate_or_fail(module, validate_timeline_id, p["timeline_id"], "timeline_id")
    ancestor_id = None
    if p["ancestor_timeline_id"] is not None:
        ancestor_id = validate_or_fail(
            module, validate_timeline_id, p["ancestor_timeline_id"], "ancestor_timeline_id", "ancestor_timeline_id"
        )
        if ancestor_id == timeline_id:
            module.fail_json(msg=f"ancestor_timeline_id: {ancestor_id} is the timeline itself")
    ancestor_lsn = None
    if p["ancestor_start_lsn"] is not None:
        ancestor_lsn = validate_or_fail(module, Lsn.parse, p["ancestor_start_lsn"], "ancestor_start_lsn")
        if ancestor_id is None:
            module.fail_json(
                msg=f"ancestor_start_lsn: {p['ancestor_start_lsn']!r} needs ancestor_timeline_id (a branch point "
                "of which timeline?)"
            )

    client = client_from_module(module)
    manager = TimelineManager(module, client, tsid, timeline_id, ancestor_id, ancestor_lsn)
    current = manager.read()
    result = {
        "changed": False,
        "timeline": ps.timeline_with_ints(current) if current else None,
        "diff": {"before": summary(current), "after": summary(current)},
    }

    if p["state"] == "absent":
        if current is None:
            module.exit_json(**result)
        result.update(changed=True, timeline=None)
        result["diff"]["after"] = {}
        if not module.check_mode:
            manager.delete()
        module.exit_json(**result)

    if current is not None:
        differences = manager.mismatches(current)
        if differences:
            manager.fail_mismatch(current, differences)
        module.exit_json(**result)

    result["changed"] = True
    result["diff"]["after"] = manager.wanted()
    if module.check_mode:
        module.exit_json(**result)
    created = manager.create()
    result["timeline"] = ps.timeline_with_ints(created) if created else None
    if created:
        result["diff"]["after"] = summary(created)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

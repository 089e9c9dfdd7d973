#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: secondary_download
short_description: Warm a Secondary tenant shard location by downloading its heatmap's layers
version_added: 0.1.0
description:
  - Drives C(POST /v1/tenant/{tenant_shard_id}/secondary/download?wait_ms=N) on the pageserver that holds a
    Secondary location, until the download is complete (HTTP 200 with as many layers downloaded as the heatmap
    lists) or O(wait_timeout) expires. Returns a snapshot of the progress after every call.
  - Fails clearly when no heatmap exists yet (HTTP 200 with C(heatmap_mtime=null)); upload one on the
    attached location first with M(neonops.storage.heatmap_upload).
  - In check mode it only reads C(GET /v1/tenant/{tenant_shard_id}/secondary/status).
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - Only reads the secondary status; reports a change when the download is not complete.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - When the location is already fully downloaded a run reports no change, but it still asks the pageserver
        for a download pass, which picks up a newer heatmap if there is one.
options:
  tenant_shard_id:
    description: The tenant shard id, V(<tenant_id>) or V(<tenant_id>-NNCC).
    type: str
    required: true
  wait_ms:
    description:
      - How long each download call waits on the pageserver before it answers with the progress so far (HTTP 202).
      - The HTTP read timeout of each call is raised to O(wait_ms) plus O(timeout).
      - From 0 to 3600000.
    type: int
    default: 10000
  wait_timeout:
    description:
      - Overall seconds to keep driving the download. From 0 to 604800 (7 days).
      - O(download_timeout) is its former name, kept as an alias.
    type: float
    default: 600
    aliases: [download_timeout]
  require_complete:
    description:
      - Fail when the download is not complete after O(wait_timeout). With V(false), return
        RV(complete=false) instead.
    type: bool
    default: true
seealso:
  - module: neonops.storage.heatmap_upload
  - module: neonops.storage.tenant_location
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Warm the secondary on the destination
  neonops.storage.secondary_download:
    api_url: "{{ hostvars['ps-2'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    wait_ms: 5000
    wait_timeout: 900
  register: warmup

- name: Report progress
  ansible.builtin.debug:
    msg: "{{ warmup.progress.bytes_downloaded }} of {{ warmup.progress.bytes_total }} bytes"
"""

RETURN = r"""
progress:
  description: The last SecondaryProgress the pageserver reported.
  returned: always
  type: dict
  sample:
    heatmap_mtime: "2024-02-21T10:02:59.000Z"
    layers_downloaded: 12
    layers_total: 12
    bytes_downloaded: 98304
    bytes_total: 98304
complete:
  description: Whether a heatmap exists and every layer it lists is downloaded.
  returned: always
  type: bool
snapshots:
  description:
    - Progress after each download call (at most 50; older ones are thinned out), each with C(elapsed)
      (seconds since the module started), C(status) (HTTP 200 or 202) and the SecondaryProgress fields.
  returned: always
  type: list
  elements: dict
  sample:
    - {elapsed: 10.0, status: 202, layers_downloaded: 5, layers_total: 12, bytes_downloaded: 40960,
       bytes_total: 98304, heatmap_mtime: "2024-02-21T10:02:59.000Z"}
"""

import time

from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._ids import TenantShardId
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)
from ansible_collections.neonops.storage.plugins.module_utils._poll import PollTimeout, poll

MAX_SNAPSHOTS = 50


def _sleep(seconds):
    time.sleep(seconds)


def is_complete(progress: dict) -> bool:
    downloaded, total = progress.get("layers_downloaded") or 0, progress.get("layers_total") or 0
    return bool(progress.get("heatmap_mtime")) and downloaded >= total


def add_snapshot(snapshots: list, snapshot: dict) -> None:
    """Append, thinning the older half when full so the first and the latest samples are always kept."""
    snapshots.append(snapshot)
    if len(snapshots) > MAX_SNAPSHOTS:
        older = snapshots[1:-1]
        snapshots[1:-1] = older[1::2]


def main():
    module = neon_module(
        argument_spec=neon_argument_spec(
            tenant_shard_id={"type": "str", "required": True},
            wait_ms={"type": "int", "default": 10000},
            wait_timeout={"type": "float", "default": 600.0, "aliases": ["download_timeout"]},
            require_complete={"type": "bool", "default": True},
        ),
        supports_check_mode=True,
    )
    p = module.params
    tsid = validate_or_fail(module, TenantShardId.parse, p["tenant_shard_id"], "tenant_shard_id")
    client = client_from_module(module)
    started = time.monotonic()
    deadline = started + p["wait_timeout"]
    not_secondary = "no Secondary location for this shard on this pageserver"

    try:
        initial = ps.secondary_status(client, tsid)
    except NeonAPIError as exc:
        fail_api(module, exc, f"read secondary status of {tsid}", reason=not_secondary if exc.not_found else None)
    if module.check_mode:
        module.exit_json(
            changed=not is_complete(initial), progress=initial, complete=is_complete(initial), snapshots=[]
        )

    snapshots = []
    http_timeout = client.timeout + p["wait_ms"] / 1000.0

    def probe():
        try:
            status, progress = ps.secondary_download(client, tsid, wait_ms=p["wait_ms"], timeout=http_timeout)
        except NeonAPIError as exc:
            reason = not_secondary if exc.not_found else None
            fail_api(module, exc, f"secondary download of {tsid}", reason=reason, snapshots=snapshots)
        add_snapshot(snapshots, {"elapsed": round(time.monotonic() - started, 3), "status": status, **progress})
        if status == 200 and not progress.get("heatmap_mtime"):
            module.fail_json(
                msg=f"no heatmap exists for {tsid}: nothing can be downloaded; upload one on the attached location "
                "first (neonops.storage.heatmap_upload)",
                progress=progress,
                snapshots=snapshots,
            )
        return status == 200 and is_complete(progress), progress

    try:
        # No pause between calls: each one waits on the pageserver for up to wait_ms.
        progress = poll(probe, deadline - time.monotonic(), f"secondary download of {tsid}", ceiling=0, sleep=_sleep)
    except PollTimeout as exc:
        progress = exc.last
        if p["require_complete"]:
            module.fail_json(
                msg=f"secondary download of {tsid} not complete after {p['wait_timeout']}s: "
                f"{progress.get('layers_downloaded')}/{progress.get('layers_total')} layers",
                progress=progress,
                snapshots=snapshots,
            )

    changed = (progress.get("bytes_downloaded"), progress.get("layers_downloaded"), progress.get("heatmap_mtime")) != (
        initial.get("bytes_downloaded"),
        initial.get("layers_downloaded"),
        initial.get("heatmap_mtime"),
    )
    module.exit_json(changed=changed, progress=progress, complete=is_complete(progress), snapshots=snapshots)


if __name__ == "__main__":
    main()

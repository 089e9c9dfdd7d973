#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: timeline_catchup
short_description: Wait until a tenant shard's timelines on a pageserver reach target LSNs
version_added: 0.1.0
description:
  - Polls C(GET /v1/tenant/{tenant_shard_id}/timeline) on the pageserver of O(api_url) until the
    C(last_record_lsn) of every timeline reaches its target LSN, or O(wait_timeout) expires.
  - "Targets come from one of: O(target_lsns) (explicit); the C(last_record_lsn) of the same shard on another
    pageserver (O(source_api_url), the storage controller's approach while writes continue); or the highest
    C(commit_lsn) that the safekeepers of O(safekeeper_urls) report (use this with the compute quiesced)."
  - Targets are read once, when the module starts.
  - A timeline that has a target but is missing on the destination fails the module (a branch that is not
    present there is a safety issue), unless O(ignore_missing=true).
  - Returns a compact history of lag samples.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.info_module
  - neonops.storage._attributes.action_group
options:
  tenant_shard_id:
    description: The tenant shard id on the destination (and the source), V(<tenant_id>) or V(<tenant_id>-NNCC).
    type: str
    required: true
  target_lsns:
    description: Explicit targets, timeline id to LSN (V(X/Y) text or an integer).
    type: dict
  source_api_url:
    description:
      - Management API URL of the pageserver to catch up with; each timeline's target is its C(last_record_lsn)
        there. The TLS, timeout and retries options apply to it too.
    type: str
  source_api_token:
    description: Bearer token for O(source_api_url).
    type: str
  safekeeper_urls:
    description:
      - HTTP API URLs of the timeline's safekeepers; each timeline's target is the highest C(commit_lsn) among
        those that know the timeline (C(GET /v1/tenant/{tenant_id}/timeline/{timeline_id})).
      - Without O(timelines), the timelines are those the destination lists; give O(timelines) to catch a
        timeline that is missing on the destination.
    type: list
    elements: str
  safekeeper_api_token:
    description: Bearer token for the safekeepers.
    type: str
  timelines:
    description:
      - Only wait for these timeline ids. By default every timeline with a target.
    type: list
    elements: str
  wait_timeout:
    description:
      - Seconds to wait before failing. From 0 to 604800 (7 days).
      - O(deadline) is its former name, kept as an alias.
    type: float
    default: 300
    aliases: [deadline]
  poll_interval:
    description:
      - The longest pause in seconds between polls of the destination; pauses start at 0.05 s and double up to it.
      - From 0 to 3600.
    type: float
    default: 1.0
  ignore_missing:
    description: Skip (with a warning) timelines that have a target but do not exist on the destination.
    type: bool
    default: false
seealso:
  - module: neonops.storage.tenant_info
  - module: neonops.storage.safekeeper_timeline_info
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Wait until the destination has ingested what the origin has
  neonops.storage.timeline_catchup:
    api_url: "{{ hostvars['ps-2'].neon_api_url }}"
    source_api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    wait_timeout: 600

- name: With the compute quiesced, wait for the safekeepers' commit LSN
  neonops.storage.timeline_catchup:
    api_url: "{{ hostvars['ps-2'].neon_api_url }}"
    safekeeper_urls: "{{ groups['safekeepers'] | map('extract', hostvars, 'neon_api_url') | list }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    timelines: [de200bd42b49cc1814412c7e592dd6e9]
"""

RETURN = r"""
targets:
  description: Target LSN per timeline id (upstream V(X/Y) text).
  returned: always
  type: dict
  sample: {"de200bd42b49cc1814412c7e592dd6e9": "0/16960E8"}
timelines:
  description:
    - Per timeline id, at the last poll, C(target_lsn), C(target_lsn_int), C(last_record_lsn),
      C(last_record_lsn_int) and C(lag_bytes).
  returned: always
  type: dict
reached:
  description: Whether every timeline reached its target.
  returned: always
  type: bool
missing:
  description: Timeline ids with a target that the destination does not have (only with O(ignore_missing=true)).
  returned: always
  type: list
  elements: str
history:
  description:
    - Lag samples, at most 50 (older ones are thinned out; the first and the latest are kept). Each has
      C(elapsed) (seconds since the module started), C(lag_bytes) (sum over timelines) and C(lagging)
      (number of timelines still behind).
  returned: always
  type: list
  elements: dict
  sample: [{"elapsed": 0.01, "lag_bytes": 4096, "lagging": 1}, {"elapsed": 1.02, "lag_bytes": 0, "lagging": 0}]
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

import time

from ansible_collections.neonops.storage.plugins.module_utils import _pageserver as ps
from ansible_collections.neonops.storage.plugins.module_utils import _safekeeper as sk
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._ids import TenantShardId, validate_timeline_id
from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    client_for_url,
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
    validate_or_fail,
)
from ansible_collections.neonops.storage.plugins.module_utils._poll import PollTimeout, poll

MAX_HISTORY = 50


def _sleep(seconds):
    time.sleep(seconds)


def add_sample(history: list, sample: dict) -> None:
    """Append, thinning the older samples when full; the first and the latest are always kept."""
    history.append(sample)
    if len(history) > MAX_HISTORY:
        history[1:-1] = history[1:-1][1::2]


class Catchup:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.tsid = validate_or_fail(module, TenantShardId.parse, self.p["tenant_shard_id"], "tenant_shard_id")
        self.only = None
        if self.p["timelines"] is not None:
            self.only = [
                validate_or_fail(module, validate_timeline_id, t, "timelines", "timelines") for t in self.p["timelines"]
            ]
        self.explicit = None
        if self.p["target_lsns"] is not None:
            self.explicit = {}
            for timeline_id, lsn in self.p["target_lsns"].items():
                timeline_id = validate_or_fail(module, validate_timeline_id, timeline_id, "target_lsns", "target_lsns")
                self.explicit[timeline_id] = validate_or_fail(module, Lsn.parse, lsn, f"target_lsns.{timeline_id}")
        self.dest = client_from_module(module)
        self.source = None
        if self.p["source_api_url"] is not None:
            self.source = client_from_module(module, "source_api_url", "source_api_token")
        self.safekeepers = [
            client_for_url(module, url, self.p["safekeeper_api_token"], f"safekeeper_urls[{i}]")
            for i, url in enumerate(self.p["safekeeper_urls"] or [])
        ]

    def read_destination(self) -> dict | None:
        """Destination timelines by id; None while the shard is activating (503)."""
        try:
            return {t["timeline_id"]: t for t in ps.timelines(self.dest, self.tsid)}
        except NeonAPIError as exc:
            if exc.status == 503:
                return None
            reason = "the shard is not attached on the destination pageserver" if exc.not_found else None
            fail_api(self.module, exc, f"read timelines of {self.tsid} on the destination", reason=reason)

    def targets(self) -> dict:
        if self.explicit is not None:
            targets = dict(self.explicit)
        elif self.source is not None:
            try:
                source_timelines = ps.timelines(self.source, self.tsid)
            except NeonAPIError as exc:
                fail_api(self.module, exc, f"read timelines of {self.tsid} on the source pageserver")
            targets = {t["timeline_id"]: Lsn.parse(t["last_record_lsn"]) for t in source_timelines}
        else:
            timeline_ids = self.only
            if timeline_ids is None:
                destination = self.read_destination() or {}
                timeline_ids = sorted(destination)
            targets = {tl: self.safekeeper_commit_lsn(tl) for tl in timeline_ids}
        if self.only is not None:
            unknown = [tl for tl in self.only if tl not in targets]
            if unknown:
                self.module.fail_json(msg=f"timelines: no target LSN for {', '.join(unknown)}", targets=_text(targets))
            targets = {tl: targets[tl] for tl in self.only}
        return targets

    def safekeeper_commit_lsn(self, timeline_id) -> Lsn:
        best = None
        errors = []
        for client in self.safekeepers:
            try:
                status = sk.timeline_status(client, self.tsid.tenant_id, timeline_id)
            except NeonAPIError as exc:
                errors.append(str(exc))
                if not exc.not_found:
                    self.module.warn(f"safekeeper did not answer for timeline {timeline_id}: {exc}")
                continue
            if status.get("commit_lsn") is None:
                errors.append(f"{client.base_url}: no commit_lsn for timeline {timeline_id}")
                continue
            lsn = Lsn.parse(status["commit_lsn"])
            best = lsn if best is None else max(best, lsn)
        if best is None:
            self.module.fail_json(
                msg=f"no safekeeper reported a commit_lsn for timeline {timeline_id} of tenant {self.tsid.tenant_id}",
                errors=errors,
            )
        return best


def _text(targets: dict) -> dict:
    return {tl: str(lsn) for tl, lsn in targets.items()}


def main():
    module = neon_module(
        argument_spec=neon_argument_spec(
            tenant_shard_id={"type": "str", "required": True},
            target_lsns={"type": "dict"},
            source_api_url={"type": "str"},
            source_api_token={"type": "str", "no_log": True},
            safekeeper_urls={"type": "list", "elements": "str"},
            safekeeper_api_token={"type": "str", "no_log": True},
            timelines={"type": "list", "elements": "str"},
            wait_timeout={"type": "float", "default": 300.0, "aliases": ["deadline"]},
            poll_interval={"type": "float", "default": 1.0},
            ignore_missing={"type": "bool", "default": False},
        ),
        mutually_exclusive=[("target_lsns", "source_api_url", "safekeeper_urls")],
        required_one_of=[("target_lsns", "source_api_url", "safekeeper_urls")],
        supports_check_mode=True,
    )
    catchup = Catchup(module)
    p = module.params
    started = time.monotonic()
    deadline = started + p["wait_timeout"]
    targets = catchup.targets()
    if not targets:
        module.fail_json(msg=f"no timelines to wait for: the target source lists none for {catchup.tsid}")
    history = []
    missing = []
    status = {}

    def probe():
        """(caught up, destination timelines or None while the shard answers 503)."""
        nonlocal status
        destination = catchup.read_destination()
        if destination is None:
            return False, None
        absent = [tl for tl in targets if tl not in destination]
        if absent and not p["ignore_missing"]:
            module.fail_json(
                msg=f"timelines missing on the destination for {catchup.tsid}: {', '.join(absent)}",
                missing=absent,
                targets=_text(targets),
            )
        for tl in absent:
            module.warn(f"timeline {tl} is missing on the destination; ignored (ignore_missing=true)")
            targets.pop(tl)
            missing.append(tl)
        status = {}
        for tl, target in targets.items():
            current = Lsn.parse(destination[tl]["last_record_lsn"])
            status[tl] = {
                "target_lsn": str(target),
                "target_lsn_int": int(target),
                "last_record_lsn": str(current),
                "last_record_lsn_int": int(current),
                "lag_bytes": max(0, int(target) - int(current)),
            }
        lagging = [s for s in status.values() if s["lag_bytes"] > 0]
        add_sample(
            history,
            {
                "elapsed": round(time.monotonic() - started, 3),
                "lag_bytes": sum(s["lag_bytes"] for s in lagging),
                "lagging": len(lagging),
            },
        )
        return not lagging, destination

    try:
        # poll_interval is the longest pause between polls (the engine's catch-up paces the same way).
        poll(
            probe,
            deadline - time.monotonic(),
            f"{catchup.tsid} caught up",
            ceiling=p["poll_interval"],
            sleep=_sleep,
        )
    except PollTimeout as exc:
        module.fail_json(
            msg=f"{catchup.tsid} did not catch up within {p['wait_timeout']}s"
            + ("" if exc.last is not None else " (the shard stayed unavailable: HTTP 503)"),
            targets=_text(targets),
            timelines=status,
            history=history,
            missing=missing,
            reached=False,
            elapsed=round(time.monotonic() - started, 3),
        )

    module.exit_json(
        changed=False,
        targets=_text(targets),
        timelines=status,
        reached=True,
        missing=missing,
        history=history,
        elapsed=round(time.monotonic() - started, 3),
    )


if __name__ == "__main__":
    main()

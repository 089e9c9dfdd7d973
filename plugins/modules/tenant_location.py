#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_location
short_description: Declare a tenant shard's location on a Neon pageserver (attached, secondary or detached)
version_added: 0.1.0
description:
  - Declarative C(PUT /v1/tenant/{tenant_shard_id}/location_config). Reads the current location config first
    and sends nothing when it already matches.
  - Refuses, before sending anything, a O(generation) lower than the one the slot holds, and any
    O(generation) with O(mode=Secondary).
  - After an attach it waits until the tenant is C(Active) (see O(wait_active)) and fails with the tenant's
    C(Broken) reason if activation fails.
  - HTTP 409 and 503 (another change of the same slot still running) are retried with backoff until
    O(wait_timeout) expires.
  - Under a storage controller, direct pageserver changes are reconciled away. Use this module on fleets
    (or tenants) the controller does not manage.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.action_group
attributes:
  check_mode:
    support: full
    details:
      - Only reads the current location config; reports the location that would be sent.
  diff_mode:
    support: full
    details:
      - Before and after are the whole location config; V({}) stands for no slot on this pageserver.
  idempotent:
    support: full
options:
  tenant_shard_id:
    description:
      - The tenant shard id, V(<tenant_id>) for an unsharded tenant or V(<tenant_id>-NNCC) for shard NN of CC.
      - Its shard number and count are the slot's O(shard_number) and O(shard_count).
    type: str
    required: true
  mode:
    description:
      - V(AttachedSingle) is the normal attached state; V(AttachedMulti) is for the destination during a
        migration (no GC, deletions held); V(AttachedStale) is for the origin being moved away from (no GC,
        no compaction).
      - V(Secondary) keeps a warm copy without serving; V(Detached) removes the local slot (S3 is never touched).
      - V(Detached) on a shard that has no slot here is unchanged (the pageserver's own 404 for the shard; a URL
        that answers 404 for the route itself fails).
    type: str
    required: true
    choices: [AttachedSingle, AttachedMulti, AttachedStale, Secondary, Detached]
  generation:
    description:
      - Attachment generation issued by the storage controller or your generation authority (u32).
      - Required for the C(Attached*) modes unless the slot is already attached, in which case the current
        generation is kept. Must be omitted for V(Secondary). Ignored for V(Detached).
      - A value lower than the slot's current generation is refused before sending.
      - From 0 to 4294967295; a boolean is refused.
    type: int
  secondary_conf:
    description:
      - Secondary settings. Only for O(mode=Secondary).
      - When omitted, an existing Secondary keeps its current settings; a new Secondary gets the pageserver's
        default (no background downloads).
    type: dict
    suboptions:
      warm:
        description: Download the heatmap's layers in the background on the heatmap's upload period.
        type: bool
        default: false
  shard_number:
    description:
      - Shard number. Must equal the one in O(tenant_shard_id) (0 for an unsharded tenant); defaults to it.
      - From 0 to 255.
    type: int
  shard_count:
    description:
      - Shard count (V(0) = unsharded). Must equal the one in O(tenant_shard_id); defaults to it.
      - From 0 to 255.
    type: int
  shard_stripe_size:
    description:
      - Stripe size in 8 KiB pages.
      - When omitted, the slot's current value is kept; a new slot gets V(0) for an unsharded tenant (the
        pageserver persists it and a later shard split uses it, so prefer passing the value the origin reports).
        A new slot of a sharded tenant requires it, because a wrong stripe size breaks key placement.
      - A value different from an existing slot's is refused (the pageserver would only log it).
      - From 0 to 4294967295.
    type: int
  tenant_conf:
    description:
      - The tenant-config overrides of the slot. The pageserver replaces the whole override set with this
        dict; it is not merged.
      - When omitted, the slot's current overrides are kept (so a suspension of GC or compaction is never
        dropped silently); a new slot gets none. Pass V({}) to clear all overrides.
      - Values of duration keys (C(gc_period), C(compaction_period), C(heatmap_period), ...) must be humantime
        strings such as V(0s), V(20 s), V(1h), V(7days) (ASCII digits, no surrounding spaces); they compare by value.
      - Keys are tenant config key names (lowercase letters, digits and C(_)). At most 64 KiB as JSON.
    type: dict
  flush_ms:
    description:
      - Sent as the C(flush_ms) query parameter. On a same-generation change to V(AttachedStale) the pageserver
        flushes layers and uploads within this many milliseconds; for any non-Detached mode it also forces a
        heatmap upload.
      - Only used when a change is sent. Keep it well below O(timeout).
      - From 0 to 3600000.
    type: int
  lazy:
    description: Attach lazily (activation queued behind the warm-up limit). Sent as the C(lazy) query parameter.
    type: bool
  wait_active:
    description:
      - After sending an C(Attached*) mode, poll C(GET /v1/tenant/{tenant_shard_id}) until C(state.slug) is
        C(Active). Fails with the reason if the tenant becomes C(Broken).
      - Defaults to V(true) for the C(Attached*) modes; ignored otherwise.
    type: bool
  wait_timeout:
    description:
      - Seconds to wait for activation and to keep retrying on HTTP 409/503 (and for a slot that is being
        reconfigured by someone else to settle).
      - From 0 to 604800 (7 days); checked, like every option, before the first request.
    type: float
    default: 120
seealso:
  - module: neonops.storage.tenant_info
  - module: neonops.storage.tenant_config
  - module: neonops.storage.tenant_generation
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Attach the destination in AttachedMulti with a new generation, keeping GC and compaction suspended
  neonops.storage.tenant_location:
    api_url: "{{ hostvars['ps-2'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    mode: AttachedMulti
    generation: "{{ new_generation }}"
    tenant_conf: {gc_period: "0s", compaction_period: "0s"}

- name: Move the origin to AttachedStale and flush within 10 s
  neonops.storage.tenant_location:
    api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    mode: AttachedStale
    flush_ms: 10000

- name: Leave a warm secondary on the origin
  neonops.storage.tenant_location:
    api_url: "{{ hostvars['ps-1'].neon_api_url }}"
    tenant_shard_id: 1f359dd625e519a1a4e8d7509690f6fc
    mode: Secondary
    secondary_conf: {warm: true}
"""

RETURN = r"""
location:
  description:
    - The location config after the change as the pageserver reports it (in check mode, the one that would
      be sent). V(null) for V(Detached).
  returned: always
  type: dict
  sample:
    mode: AttachedMulti
    generation: 4
    secondary_conf: null
    shard_number: 0
    shard_count: 0
    shard_stripe_size: 2048
    tenant_conf: {"gc_period": "0s", "compaction_period": "0s"}
previous_location:
  description: The location config before the module ran; V(null) when the pageserver had no slot.
  returned: always
  type: dict
tenant_state:
  description:
    - The tenant's C(state), for example C(slug=Active), after waiting for activation, or when the
      location was already right and the shard is attached. V(null) otherwise.
  returned: always
  type: dict
  sample: {"slug": "Active"}
diff:
  description: C(before) and C(after) location configs (V({}) when there is no slot).
  returned: always
  type: dict
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

BUSY_STATUSES = (409, 503)
_ABSENT = object()


def _sleep(seconds):
    time.sleep(seconds)


class LocationManager:
    def __init__(self, module, client, tsid: TenantShardId):
        self.module = module
        self.client = client
        self.tsid = tsid
        self.params = module.params
        self.deadline = time.monotonic() + self.params["wait_timeout"]

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, tenant_shard_id=str(self.tsid), **extra)

    def remaining(self) -> float:
        """Seconds left of the one wait_timeout budget shared by every wait of this run."""
        return self.deadline - time.monotonic()

    def poll(self, probe, what, on_retry=None):
        return poll(probe, self.remaining(), what, sleep=_sleep, on_retry=on_retry)

    def read_current(self):
        """The slot's LocationConfig, or _ABSENT; waits while someone else reconfigures the slot (null)."""

        def probe():
            try:
                current = ps.location_config(self.client, self.tsid)
            except NeonAPIError as exc:
                if exc.not_found:
                    return True, _ABSENT
                fail_api(self.module, exc, f"read location config of {self.tsid}")
            return current is not None, current

        try:
            return self.poll(probe, f"location config of {self.tsid}")
        except PollTimeout:
            self.fail(f"location of {self.tsid} is still being reconfigured after {self.params['wait_timeout']}s")

    def desired(self, current):
        p = self.params
        mode = p["mode"]
        if mode == "Detached":
            return None
        existing = current if current is not _ABSENT else None
        desired = {"mode": mode, "generation": None, "secondary_conf": None}
        if mode in ps.ATTACHED_MODES:
            desired["generation"] = self._generation(existing)
        elif existing and existing.get("mode") == "Secondary" and p["secondary_conf"] is None:
            desired["secondary_conf"] = existing.get("secondary_conf")
        else:
            desired["secondary_conf"] = p["secondary_conf"]
        desired["shard_number"] = self.tsid.shard_number
        desired["shard_count"] = self.tsid.shard_count
        desired["shard_stripe_size"] = self._stripe(existing)
        if p["tenant_conf"] is not None:
            desired["tenant_conf"] = dict(p["tenant_conf"])
        else:
            desired["tenant_conf"] = dict((existing or {}).get("tenant_conf") or {})
        return desired

    def _generation(self, existing):
        given = self.params["generation"]
        current = existing.get("generation") if existing else None
        if given is None:
            if existing and existing.get("mode") in ps.ATTACHED_MODES and current is not None:
                return current
            self.fail(f"generation is required to attach {self.tsid} (it has no attached generation here to keep)")
        if current is not None and given < current:
            self.fail(
                f"refusing generation {given} for {self.tsid}: lower than the current generation {current}",
                current_generation=current,
            )
        return given

    def _stripe(self, existing):
        given = self.params["shard_stripe_size"]
        current = existing.get("shard_stripe_size") if existing else None
        if given is None:
            if current is not None:
                return current
            if self.tsid.is_unsharded:
                return 0
            self.fail(f"shard_stripe_size is required to create a slot for the sharded tenant shard {self.tsid}")
        if current is not None and given != current:
            self.fail(
                f"refusing shard_stripe_size {given} for {self.tsid}: the slot has {current}; "
                "a shard identity change is not applied by the pageserver"
            )
        return given

    def put(self, desired_body):
        p = self.params
        timeout = self.client.timeout
        if p["flush_ms"]:
            timeout = max(timeout, p["flush_ms"] / 1000.0 + 10.0)
        attempted = f"set location of {self.tsid} to {desired_body['mode']}"

        def probe():
            try:
                return True, ps.put_location_config(
                    self.client, self.tsid, desired_body, flush_ms=p["flush_ms"], lazy=p["lazy"], timeout=timeout
                )
            except NeonAPIError as exc:
                if exc.status in BUSY_STATUSES:
                    return False, exc
                fail_api(self.module, exc, attempted)

        try:
            return self.poll(
                probe, attempted, on_retry=lambda exc, _: self.module.warn(f"{exc}; the slot is busy, retrying")
            )
        except PollTimeout as exc:
            fail_api(self.module, exc.last, attempted)

    def wait_active(self):
        seen = {"state": None}  # the last state read; an answer 404/409/503 (still activating) keeps it

        def probe():
            try:
                details = ps.tenant(self.client, self.tsid)
                seen["state"] = (details or {}).get("state") or {}
            except NeonAPIError as exc:
                if not (exc.not_found or exc.status in (409, 503)):
                    fail_api(self.module, exc, f"read state of {self.tsid} while waiting for it to become Active")
            state = seen["state"]
            if state and state.get("slug") == "Broken":
                data = state.get("data")
                reason = data.get("reason", "no reason given") if isinstance(data, dict) else data or "no reason given"
                self.fail(f"tenant shard {self.tsid} is Broken after attaching: {reason}", tenant_state=state)
            return bool(state) and state.get("slug") == "Active", state

        try:
            return self.poll(probe, f"tenant shard {self.tsid} Active")
        except PollTimeout as exc:
            self.fail(
                f"tenant shard {self.tsid} did not become Active within {self.params['wait_timeout']}s",
                tenant_state=exc.last,
            )


def location_matches(current, desired) -> bool:
    if current is _ABSENT or desired is None:
        return current is _ABSENT and desired is None
    if current.get("mode") != desired["mode"]:
        return False
    if desired["mode"] in ps.ATTACHED_MODES and current.get("generation") != desired["generation"]:
        return False
    if desired["mode"] == "Secondary" and _warm(current.get("secondary_conf")) != _warm(desired["secondary_conf"]):
        return False
    for key in ("shard_number", "shard_count", "shard_stripe_size"):
        if current.get(key) != desired[key]:
            return False
    return ps.overrides_equal(current.get("tenant_conf"), desired["tenant_conf"])


def _warm(secondary_conf) -> bool:
    return bool((secondary_conf or {}).get("warm", False))


def main():
    module = neon_module(
        argument_spec=neon_argument_spec(
            tenant_shard_id={"type": "str", "required": True},
            mode={"type": "str", "required": True, "choices": list(ps.LOCATION_MODES)},
            generation={"type": "int"},
            secondary_conf={"type": "dict", "options": {"warm": {"type": "bool", "default": False}}},
            shard_number={"type": "int"},
            shard_count={"type": "int"},
            shard_stripe_size={"type": "int"},
            tenant_conf={"type": "dict"},
            flush_ms={"type": "int"},
            lazy={"type": "bool"},
            wait_active={"type": "bool"},
            wait_timeout={"type": "float", "default": 120.0},
        ),
        supports_check_mode=True,
    )
    p = module.params
    tsid = validate_or_fail(module, TenantShardId.parse, p["tenant_shard_id"], "tenant_shard_id")
    mode = p["mode"]
    for field in ("shard_number", "shard_count"):
        if p[field] is not None and p[field] != getattr(tsid, field):
            module.fail_json(
                msg=f"{field}: {p[field]} does not match tenant_shard_id {tsid} ({field} {getattr(tsid, field)})"
            )
    # Numbers are bounded by neon_module() (generation u32, flush_ms, wait_timeout, ...) before this runs.
    if p["generation"] is not None and mode == "Secondary":
        module.fail_json(msg=f"generation: must be omitted for mode Secondary (got {p['generation']})")
    if p["secondary_conf"] is not None and mode != "Secondary":
        module.fail_json(msg=f"secondary_conf: only valid with mode Secondary (mode is {mode})")
    if p["tenant_conf"] is not None:
        validate_or_fail(module, ps.validate_overrides, p["tenant_conf"], "tenant_conf")

    client = client_from_module(module)
    manager = LocationManager(module, client, tsid)
    current = manager.read_current()
    desired = manager.desired(current)
    previous = None if current is _ABSENT else current
    wait_active = p["wait_active"] if p["wait_active"] is not None else mode in ps.ATTACHED_MODES
    wait_active = wait_active and mode in ps.ATTACHED_MODES
    result = {
        "changed": False,
        "previous_location": previous,
        "location": previous,
        "tenant_state": None,
        "diff": {"before": previous or {}, "after": desired or {}},
    }

    if location_matches(current, desired):
        result["diff"]["after"] = previous or {}
        if wait_active and not module.check_mode:
            result["tenant_state"] = manager.wait_active()
        module.exit_json(**result)

    result["changed"] = True
    if module.check_mode:
        result["location"] = desired
        module.exit_json(**result)

    body = desired if desired is not None else {"mode": "Detached", "generation": None, "tenant_conf": {}}
    if desired is None and previous is not None:
        for key in ("shard_number", "shard_count", "shard_stripe_size"):
            body[key] = previous.get(key, 0)
    manager.put(body)

    if wait_active:
        result["tenant_state"] = manager.wait_active()
    if desired is None:
        result["location"] = None
    else:
        after = manager.read_current()
        result["location"] = None if after is _ABSENT else after
    result["diff"]["after"] = result["location"] or {}
    module.exit_json(**result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: compute_pageserver
short_description: Point a compute at new pageservers through compute_ctl
version_added: 0.1.0
author: neonops.storage maintainers (@neonops)
description:
  - Repoints a compute to the pageserver(s) in O(pageservers) with compute_ctl's C(POST /configure).
    Postgres reloads its configuration; no restart is needed.
  - The request carries the compute's full spec (from O(spec) or O(spec_path)) with
    C(pageserver_connection_info) replaced (C(shard_count), C(stripe_size), one entry per shard keyed by
    its shard index C(NNCC), C(prefer_protocol)). Legacy fields the spec already has
    (C(pageserver_connstring), C(shard_stripe_size), the C(neon.pageserver_connstring) and
    C(neon.stripe_size) entries of C(cluster.settings)) are updated to agree with it.
  - compute_ctl answers HTTP 412 while the compute is being (re)configured; the module then retries until
    O(wait_timeout). Afterwards it waits until the compute reports C(running).
  - With O(pgdata), it then verifies that C(postgresql.conf) shows the new C(neon.pageserver_connstring)
    (and C(neon.stripe_size) for several shards). That file is also what decides whether the compute already
    points at the pageservers; without O(pgdata) the spec decides.
  - With O(spec_path), the updated spec is written back to that file (in the same shape as read), once
    compute_ctl has accepted it.
  - Nothing is sent when the compute already uses the requested pageservers. If only the spec file is
    stale, only the file is rewritten.
  - The files are read on the host the module runs on. Run it on the compute host (for example with
    C(delegate_to)) when O(pgdata) or O(spec_path) is set.
  - Order matters in a migration. Repoint the compute while the destination pageserver is attached
    (C(AttachedMulti)) and before the origin leaves an attached mode.
extends_documentation_fragment:
  - neonops.storage._connection
  - neonops.storage._attributes
  - neonops.storage._attributes.action_group
options:
  api_url:
    description:
      - Base URL of compute_ctl's external HTTP API, for example V(http://compute-1.internal:3080).
      - Checked before any request like every O(api_url) (C(http) or C(https), no user information, query or
        fragment, no whitespace, an ASCII host name with parts of 1 to 63 characters).
      - If not set, the value of the E(NEONOPS_API_URL) environment variable is used.
    type: str
    required: true
  spec:
    description:
      - The compute's current spec (ComputeSpec) as a dictionary. At most 4 MiB as JSON.
      - Exactly one of O(spec) and O(spec_path) is required.
    type: dict
  spec_path:
    description:
      - JSON file holding the compute's spec, either a bare ComputeSpec or an object with the keys C(spec)
        and C(compute_ctl_config) (the shape of compute_ctl's C(--config) file).
      - Rewritten with the updated spec after a successful configuration.
    type: path
  pageservers:
    description:
      - The pageserver for each shard, in shard order. One entry for an unsharded tenant.
    type: list
    elements: dict
    required: true
    suboptions:
      node_id:
        description:
          - The pageserver's node id (recorded in the spec; compute_ctl does not dial it).
          - From 0 to 18446744073709551615; a boolean is refused.
        type: int
      libpq_url:
        description: The pageserver's page service, V(postgres://user@host:port) or V(postgresql://user@host:port).
        type: str
        required: true
      grpc_url:
        description: The pageserver's gRPC service, V(grpc://user@host:port). Required with O(prefer_protocol=grpc).
        type: str
  shard_count:
    description:
      - V(0) for an unsharded tenant, or the number of shards (1 to 255). The tenant's shard count, not a choice.
      - Defaults to the spec's current shard count when it fits O(pageservers), else V(0) for one pageserver
        and the number of O(pageservers) otherwise.
    type: int
  shard_stripe_size:
    description:
      - Stripe size in 8 KiB pages (1 to 4294967295) of a sharded tenant. Must match the tenant's.
      - Defaults to the spec's current stripe size. Required for a sharded tenant whose spec has none.
      - Ignored for an unsharded tenant (O(shard_count=0)); upstream requires it unset there.
      - The name is the pageserver's location config field (as in M(neonops.storage.tenant_location));
        O(stripe_size) is its former name, kept as an alias.
    type: int
    aliases: [stripe_size]
  prefer_protocol:
    description: Protocol the compute prefers for pageserver reads. Defaults to the spec's, else V(libpq).
    type: str
    choices: [libpq, grpc]
  compute_ctl_config:
    description:
      - The C(compute_ctl_config) object compute_ctl requires in every C(/configure) request
        (C(jwks) with the keys compute_ctl accepts tokens from, optional C(tls)).
      - Defaults to the one in O(spec_path) when that file holds one. Required otherwise.
      - "For a compute that checks no tokens: V({\"jwks\": {\"keys\": []}})."
      - At most 1 MiB as JSON.
    type: dict
  skip_pg_catalog_updates:
    description:
      - Send C(skip_pg_catalog_updates=true) in the request so compute_ctl does not resync roles and databases
        for a pageserver-only change. The value stored in the spec file is left as it was.
    type: bool
    default: true
  pgdata:
    description: The compute's Postgres data directory. Its C(postgresql.conf) is read before and verified after.
    type: path
  wait_timeout:
    description:
      - Seconds to wait in total for a busy compute (HTTP 412) and for it to be C(running) again.
      - From 0 to 604800 (7 days).
    type: float
    default: 120
  poll_interval:
    description:
      - The longest pause in seconds between retries and status polls; pauses start at 0.05 s and double up to it.
      - From 0 to 3600.
    type: float
    default: 1
  apply:
    description:
      - V(configure) sends compute_ctl C(/configure) (and writes O(spec_path) when given).
      - V(spec_file) only writes the new connection into O(spec_path) and sends nothing to compute_ctl, for computes
        that are restarted to pick it up (the caller restarts them).
    type: str
    choices: [configure, spec_file]
    default: configure
    version_added: 0.2.0
attributes:
  check_mode:
    support: full
    details:
      - Check mode reads the status and the files and reports the planned connstring. It sends nothing
        and writes no file.
  diff_mode:
    support: full
    details:
      - The diff shows the connstring and stripe size before and after.
  idempotent:
    support: full
seealso:
  - module: neonops.storage.compute_info
  - module: neonops.storage.tenant_location
"""

EXAMPLES = r"""
- name: Point compute-1 at pageserver 2 (unsharded tenant)
  neonops.storage.compute_pageserver:
    api_url: "{{ hostvars['compute1'].neon_api_url }}"
    api_token: "{{ neon_compute_api_token | default(omit) }}"
    spec_path: "{{ hostvars['compute1'].neon_spec_path }}"
    pgdata: "{{ hostvars['compute1'].neon_pgdata }}"
    compute_ctl_config:
      jwks:
        keys: []
    pageservers:
      - node_id: 2
        libpq_url: "postgres://no_user@{{ hostvars['ps2'].neon_pg_addr }}"
  delegate_to: compute1

- name: A 2-shard tenant, one pageserver per shard in shard order (shard 0 first)
  neonops.storage.compute_pageserver:
    api_url: "{{ compute_url }}"
    spec_path: /var/lib/compute/spec.json
    compute_ctl_config: "{{ compute_ctl_config }}"
    shard_count: 2
    shard_stripe_size: 2048
    pageservers:
      - node_id: 1
        libpq_url: postgres://no_user@ps-1.internal:64000
      - node_id: 3
        libpq_url: postgres://no_user@ps-3.internal:64000
  check_mode: true
  register: planned

- name: Show the planned change
  ansible.builtin.debug:
    msg: "{{ planned.previous_connstring }} -> {{ planned.connstring }}"
"""

RETURN = r"""
previous_connstring:
  description: The connstring the compute used before (from C(postgresql.conf) with O(pgdata), else the spec).
  returned: success
  type: str
  sample: postgres://no_user@127.0.0.1:64000
connstring:
  description: The connstring the compute uses now (in check mode, the planned one).
  returned: success
  type: str
  sample: postgres://no_user@127.0.0.1:64001
previous_stripe_size:
  description: The stripe size before (V(null) when unsharded or not recorded).
  returned: success
  type: int
stripe_size:
  description: The stripe size now (V(null) when unsharded).
  returned: success
  type: int
shard_count:
  description: The shard count sent.
  returned: success
  type: int
  sample: 0
pageserver_connection_info:
  description: The C(pageserver_connection_info) sent (or planned).
  returned: success
  type: dict
status:
  description: The compute's status at the end (before any change in check mode).
  returned: success
  type: str
  sample: running
configured:
  description: Whether C(/configure) was sent.
  returned: success
  type: bool
spec_written:
  description: Whether O(spec_path) was rewritten.
  returned: success
  type: bool
busy_retries:
  description: How many times compute_ctl answered 412 (busy) before accepting.
  returned: success
  type: int
"""

import os
import tempfile
import time

from ansible_collections.neonops.storage.plugins.module_utils import _compute
from ansible_collections.neonops.storage.plugins.module_utils._client import NeonAPIError
from ansible_collections.neonops.storage.plugins.module_utils._module import (
    U32_MAX,
    Range,
    client_from_module,
    fail_api,
    neon_argument_spec,
    neon_module,
)
from ansible_collections.neonops.storage.plugins.module_utils._poll import PollTimeout, poll


def _sleep(seconds):
    time.sleep(seconds)


def argument_spec():
    return neon_argument_spec(
        spec={"type": "dict"},
        spec_path={"type": "path"},
        pageservers={
            "type": "list",
            "elements": "dict",
            "required": True,
            "options": {
                "node_id": {"type": "int"},
                "libpq_url": {"type": "str", "required": True},
                "grpc_url": {"type": "str"},
            },
        },
        shard_count={"type": "int"},
        shard_stripe_size={"type": "int", "aliases": ["stripe_size"]},
        prefer_protocol={"type": "str", "choices": list(_compute.PREFER_PROTOCOLS)},
        compute_ctl_config={"type": "dict"},
        skip_pg_catalog_updates={"type": "bool", "default": True},
        pgdata={"type": "path"},
        wait_timeout={"type": "float", "default": 120.0},
        poll_interval={"type": "float", "default": 1.0},
        apply={"type": "str", "choices": ["configure", "spec_file"], "default": "configure"},
    )


class ComputePageserver:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = client_from_module(module, error_key="error")
        self.deadline = time.monotonic() + self.params["wait_timeout"]
        self.spec_text = None
        self.file_config = None

    # -- reading -------------------------------------------------------------------------------------------

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, **extra)

    def read_text(self, path, option):
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read()
        except OSError as exc:
            self.fail(f"{option}: cannot read {path}: {exc.strerror or exc}")

    def load_spec(self) -> dict:
        if self.params["spec"] is not None:
            spec = self.params["spec"]
        else:
            path = self.params["spec_path"]
            self.spec_text = self.read_text(path, "spec_path")
            try:
                spec, self.file_config, _wrapped = _compute.load_spec_document(self.spec_text, path)
            except ValueError as exc:
                self.fail(f"spec_path: {exc}")
        # The spec carries the storage token and role passwords: keep them out of results and logs.
        self.module.no_log_values.update(_compute.spec_secrets(spec))
        return spec

    def conf_connection(self):
        path = os.path.join(self.params["pgdata"], "postgresql.conf")
        return _compute.conf_connection(_compute.parse_postgresql_conf(self.read_text(path, "pgdata")))

    def status(self, attempted):
        try:
            return _compute.status(self.client) or {}
        except NeonAPIError as exc:
            fail_api(self.module, exc, attempted)

    # -- planning ------------------------------------------------------------------------------------------

    def desired_connection_info(self, spec):
        params = self.params
        pageservers = params["pageservers"]
        current_info = spec.get("pageserver_connection_info") or {}
        current = _compute.spec_connection(spec)
        shard_count = params["shard_count"]
        if shard_count is None:
            spec_count = current_info.get("shard_count")
            if isinstance(spec_count, int) and max(spec_count, 1) == len(pageservers):
                shard_count = spec_count
            else:
                shard_count = 0 if len(pageservers) == 1 else len(pageservers)
        stripe_size = params["shard_stripe_size"]
        try:
            _compute.validate_shard_count(shard_count)
            if stripe_size is not None:
                _compute.validate_stripe_size(stripe_size)
            if shard_count == 0:
                stripe_size = None  # upstream requires null for unsharded tenants
            elif stripe_size is None:
                stripe_size = current["stripe_size"]
            prefer = params["prefer_protocol"] or current_info.get("prefer_protocol") or "libpq"
            return _compute.build_connection_info(pageservers, shard_count, stripe_size, prefer)
        except ValueError as exc:
            self.fail(str(exc))

    def compute_ctl_config(self):
        config = self.params["compute_ctl_config"] or self.file_config
        if config is None:
            self.fail(
                "compute_ctl_config: required by compute_ctl's /configure and not found in spec_path; pass it "
                "(for a compute that checks no tokens: {jwks: {keys: []}})"
            )
        return config

    # -- acting --------------------------------------------------------------------------------------------

    def remaining(self):
        return self.deadline - time.monotonic()

    def poll(self, probe, what):
        """poll() within what is left of the one wait_timeout budget; poll_interval is the longest pause."""
        return poll(probe, self.remaining(), what, ceiling=self.params["poll_interval"], sleep=_sleep)

    def configure(self, new_spec, config):
        """POST /configure, retrying while compute_ctl is busy (412); returns the number of 412 answers."""
        request_spec = dict(new_spec)
        if self.params["skip_pg_catalog_updates"]:
            request_spec["skip_pg_catalog_updates"] = True
        busy = 0
        attempted = "Configuring the compute with the new pageserver connection"

        def probe():
            nonlocal busy
            # /configure blocks until the compute is running again: give it the rest of the wait budget.
            timeout = max(self.remaining(), self.params["timeout"])
            try:
                _compute.configure(self.client, request_spec, config, timeout=timeout)
                return True, None
            except NeonAPIError as exc:
                if exc.status == 412:
                    busy += 1
                    return False, exc
                failed = attempted
                if exc.status is None:
                    failed += " (the compute may still apply it; check compute_info)"
                fail_api(self.module, exc, failed, busy_retries=busy)

        try:
            self.poll(probe, attempted)
        except PollTimeout as exc:
            # The last 412 is counted as an attempt, not as a retry.
            fail_api(
                self.module,
                exc.last,
                f"{attempted} (busy for {self.params['wait_timeout']:g}s, {busy} attempts)",
                busy_retries=busy - 1,
            )
        return busy

    def wait_running(self):
        attempted = "Waiting for the compute to be running after /configure"

        def probe():
            compute = self.status(attempted)
            state = compute.get("status")
            if state in _compute.TERMINAL_STATUSES:
                self.fail(
                    f"{attempted}: status is {state}: {compute.get('error') or 'no error given'}", compute=compute
                )
            return state == "running", compute

        try:
            return self.poll(probe, attempted)
        except PollTimeout as exc:
            compute = exc.last
            self.fail(
                f"{attempted}: still {compute.get('status')} after {self.params['wait_timeout']:g}s", compute=compute
            )

    def verify_conf(self, connstring, stripe_size, shards):
        """postgresql.conf must show the new connection; compute_ctl rewrites it before reporting running."""

        def probe():
            conf = self.conf_connection()
            return conf["connstring"] == connstring and (shards <= 1 or conf["stripe_size"] == stripe_size), conf

        try:
            self.poll(probe, "postgresql.conf shows the new connection")
        except PollTimeout as exc:
            conf = exc.last
            self.fail(
                f"Verifying {self.params['pgdata']}/postgresql.conf after /configure failed: it shows "
                f"neon.pageserver_connstring {conf['connstring']!r} and neon.stripe_size {conf['stripe_size']!r}, "
                f"expected {connstring!r} and {stripe_size!r}"
            )

    def write_spec(self, new_spec):
        path = self.params["spec_path"]
        text = _compute.dump_spec_document(self.spec_text, new_spec)
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".spec-", suffix=".json", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            self.fail(f"spec_path: cannot write {path}: {exc.strerror or exc}")
        self.module.atomic_move(tmp, path)  # keeps the file's mode and ownership

    # -- the module ----------------------------------------------------------------------------------------

    def run(self):
        spec = self.load_spec()
        info = self.desired_connection_info(spec)
        connstring = _compute.connstring_from_connection_info(info)
        shards = len(info["shards"])
        new_spec = _compute.apply_connection_info(spec, info)

        compute = self.status("Reading the compute status")
        spec_conn = _compute.spec_connection(spec)
        current = self.conf_connection() if self.params["pgdata"] else spec_conn
        applied = current["connstring"] == connstring and (shards <= 1 or current["stripe_size"] == info["stripe_size"])
        # postgresql.conf shows only libpq URLs, so a protocol switch is judged by the spec.
        protocol_same = (spec.get("pageserver_connection_info") or {}).get("prefer_protocol", "libpq") == info[
            "prefer_protocol"
        ]
        needs_configure = not (applied and protocol_same) and self.params["apply"] == "configure"
        needs_spec_write = self.params["spec_path"] is not None and new_spec != spec

        result = {
            "changed": needs_configure or needs_spec_write,
            "previous_connstring": current["connstring"],
            "previous_stripe_size": current["stripe_size"],
            "connstring": connstring,
            "stripe_size": info["stripe_size"],
            "shard_count": info["shard_count"],
            "pageserver_connection_info": info,
            "status": compute.get("status"),
            "configured": False,
            "spec_written": False,
            "busy_retries": 0,
        }
        if self.module._diff:
            result["diff"] = {
                "before": {"pageserver_connstring": current["connstring"], "stripe_size": current["stripe_size"]},
                "after": {"pageserver_connstring": connstring, "stripe_size": info["stripe_size"]},
            }
        config = None
        if needs_configure:
            config = self.compute_ctl_config()
            if compute.get("status") in _compute.TERMINAL_STATUSES:
                self.fail(
                    f"Configuring the compute is not possible: its status is {compute.get('status')} "
                    f"({compute.get('error') or 'no error given'}); compute_ctl accepts /configure only when "
                    "empty or running",
                    compute=compute,
                )
        if self.module.check_mode or not result["changed"]:
            self.module.exit_json(**result)

        if needs_configure:
            result["busy_retries"] = self.configure(new_spec, config)
            result["configured"] = True
            # compute_ctl now holds the new spec: record it before verifying, so the file matches the compute.
            if needs_spec_write:
                self.write_spec(new_spec)
                result["spec_written"] = True
            result["status"] = self.wait_running().get("status")
            if self.params["pgdata"]:
                self.verify_conf(connstring, info["stripe_size"], shards)
        elif needs_spec_write:
            self.write_spec(new_spec)
            result["spec_written"] = True
        self.module.exit_json(**result)


def main():
    module = neon_module(
        argument_spec=argument_spec(),
        required_one_of=[("spec", "spec_path")],
        required_if=[("apply", "spec_file", ("spec_path",))],
        mutually_exclusive=[("spec", "spec_path")],
        supports_check_mode=True,
        # A stripe of 0 pages places no key; compute_ctl's spec refuses it (the location config's 0 means unsharded).
        limits={"shard_stripe_size": Range(1, U32_MAX, "pages")},
    )
    ComputePageserver(module).run()


if __name__ == "__main__":
    main()

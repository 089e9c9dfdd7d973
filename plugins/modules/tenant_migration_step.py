#!/usr/bin/python
# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_migration_step
short_description: Run one phase of the tenant migration runbook (the engine of the tenant_migration role)
version_added: 0.2.0
description:
  - The C(neonops.storage.tenant_migration) role calls this module once per phase of the RFC 028 live migration
    (neondatabase/neon C(docs/rfcs/028-pageserver-migration.md)). Each call reads the fleet, acts and waits for
    that phase, so a move costs a handful of task invocations instead of one per request.
  - Use the role; this module is its engine and its options follow the role's variables. Every decision (each
    shard's stage, the lock, catch-up targets, the compute plan, the recovery) lives in unit-tested Python.
  - V(begin) resolves the nodes, takes the tenant's lock (C(<state_dir>/<tenant_id>.lock)), reads both
    pageservers, the storage controller and the safekeepers, refuses what must not be moved (destination draining,
    too little disk, a copy between different S3 locations that cannot be done, source unreachable with failover
    off), prints the plan (with what the S3 copy would take, read with LIST and HEAD requests only) and holds
    the storage controller away from the tenant (scheduling policy C(Stop)).
  - The later phases load the run from its report file C(<report_dir>/<run_id>.json), which every call updates, and
    persist the journal in the lock file before each change, so a rerun of an interrupted move resumes.
  - V(end) restores the controller's policy, writes the JSON and Markdown report and releases the lock.
  - The phases run on the Ansible controller (a controller-side action plugin runs the engine in the worker
    process, without starting a module), so every request goes from the controller and the lock and report files
    are the controller's.
extends_documentation_fragment:
  - neonops.storage._attributes
attributes:
  check_mode:
    support: partial
    details:
      - V(begin) only reads and returns the plan; it writes the report file but takes no lock. The other phases
        do nothing in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A rerun resumes from the stage each shard is found in; a finished move is reported as C(already_done).
  action_group:
    description: Use C(group/neonops.storage.neon) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - neonops.storage.neon
options:
  phase:
    description: The phase to run.
    type: str
    required: true
    choices: [begin, suspend, prewarm, stale, copy, attach, catchup, failover, finalize, verify, recover, end]
  tenant_id:
    description: The tenant to move (32 hexadecimal characters).
    type: str
    required: true
  run_id:
    description: This run's id; names the report file. Letters, digits, C(.), C(_) and C(-) only.
    type: str
    required: true
  state_dir:
    description: Directory of the per-tenant lock and journal files (absolute path on the controller).
    type: path
    required: true
  report_dir:
    description: Directory of the per-run reports (absolute path on the controller).
    type: path
    required: true
  pageserver_api_token:
    description: Bearer token for the pageservers' management API.
    type: str
  safekeeper_api_token:
    description: Bearer token for the safekeepers' HTTP API.
    type: str
  storcon_api_token:
    description: Bearer token for the storage controller (needs the C(admin) scope).
    type: str
  validate_certs:
    description:
      - Verify the servers' TLS certificates for C(https) URLs.
      - If not set, the value of the E(NEONOPS_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file (or directory) of CA certificates used to verify the servers when O(validate_certs=true).
      - If not set, the value of the E(NEONOPS_CA_PATH) environment variable is used.
    type: path
  timeout:
    description:
      - Timeout in seconds for each HTTP request (connect and read).
      - If not set, the value of the E(NEONOPS_TIMEOUT) environment variable is used.
    type: float
    default: 30
  retries:
    description:
      - How many times an idempotent request (C(GET), C(PUT)) is retried after a transport error or HTTP 408, 429,
        502, 503 or 504.
    type: int
    default: 3
  source:
    description: With O(phase=begin), the source pageserver, by inventory name or node id.
    type: str
  destination:
    description: With O(phase=begin), the destination pageserver, by inventory name or node id.
    type: str
  shard:
    description: With O(phase=begin), limit the move to one shard (C(NNCC) or C(<tenant_id>-NNCC)); empty for all.
    type: str
    default: ""
  pageservers:
    description:
      - With O(phase=begin), every pageserver of the inventory.
      - Each item has C(name), C(node_id), C(api_url), C(pg_addr) (host:port) and optionally C(s3_bucket) and
        C(s3_prefix).
    type: list
    elements: dict
  safekeeper_urls:
    description: With O(phase=begin), the safekeepers' API URLs.
    type: list
    elements: str
  storcon_url:
    description: With O(phase=begin), the storage controller's API URL.
    type: str
  computes:
    description:
      - With O(phase=begin), the computes of the inventory (C(name), C(api_url), C(tenant_id), C(spec_path),
        C(pgdata)); those of the tenant are cut over.
    type: list
    elements: dict
  owner:
    description: With O(phase=begin), who runs the move (C(host), C(pid), C(user)), recorded in the lock.
    type: dict
  started_s:
    description: With O(phase=begin), when the run started (seconds since the epoch); the report's total counts from it.
    type: float
  settings:
    description:
      - With O(phase=begin), the role's runbook settings (see C(ansible-doc -t role neonops.storage.tenant_migration)).
    type: dict
    suboptions:
      prewarm:
        description: Warm the destination as a Secondary before the generation bump.
        type: bool
        default: true
      download_request_ms:
        description: C(wait_ms) of each secondary download request.
        type: int
        default: 20000
      download_timeout:
        description: Seconds to warm the destination before cutting over.
        type: float
        default: 300
      download_require_complete:
        description: Fail when the warm-up deadline passes instead of proceeding cold.
        type: bool
        default: false
      compute_cutover:
        description: How computes move.
        type: str
        default: reconfigure
        choices: [reconfigure, restart]
      compute_restart_command:
        description: The restart command for O(settings.compute_cutover=restart).
        type: str
        default: ""
      source_final_mode:
        description: What the source keeps.
        type: str
        default: secondary
        choices: [secondary, detached]
      flush_ms:
        description: C(flush_ms) of the source's move to C(AttachedStale).
        type: int
        default: 10000
      attach_timeout:
        description: Seconds for each location change and activation.
        type: float
        default: 120
      catchup_timeout:
        description: Seconds for the destination to reach the catch-up targets.
        type: float
        default: 600
      catchup_poll_interval:
        description: Longest pause between catch-up polls, in seconds.
        type: float
        default: 0.5
      catchup_include_safekeepers:
        description: Also wait for the safekeepers' C(commit_lsn).
        type: bool
        default: true
      remote_lsn_timeout:
        description: Seconds for the destination to upload past the catch-up targets.
        type: float
        default: 120
      suspend_overrides:
        description: Overrides that suspend background work while two pageservers hold the tenant.
        type: dict
        default: {gc_period: "0s", compaction_period: "0s"}
      disk_headroom_ratio:
        description: The destination's free space must exceed the tenant's physical size times this.
        type: float
        default: 1.5
      refused_scheduling_policies:
        description: Destination scheduling policies on the storage controller that refuse the move.
        type: list
        elements: str
        default: [Draining, Deleting, PauseForRestart]
      rollback:
        description: Roll back to the source on a failure before cutover.
        type: bool
        default: true
      failover:
        description: Attach the destination alone when the source is unreachable.
        type: bool
        default: true
      source_grace:
        description:
          - Seconds a source that does not answer is given to answer again (a pageserver restarting after a crash)
            before the run treats it as unreachable, at the start and when it recovers from a failure.
        type: float
        default: 10
      missing_timeline_action:
        description: What to do with a branch created on the source during the move.
        type: str
        default: recreate
        choices: [recreate, fail]
      lock_stale_after:
        description: Seconds after which a lock's heartbeat counts as stale.
        type: float
        default: 1800
      lock_takeover:
        description: Take the lock over even while its holder's heartbeat is fresh.
        type: bool
        default: false
      rollback_destination_mode:
        description: What a rollback leaves on the destination.
        type: str
        default: detached
        choices: [detached, secondary]
  s3:
    description:
      - S3 access for a move between pageservers that keep tenants in different buckets or prefixes (inventory
        C(neon_s3_bucket), C(neon_s3_prefix)). V(copy) then copies the tenant's remote data to the destination's
        location with server-side copies (as M(neonops.storage.s3_tenant_copy) does), after the source went
        C(AttachedStale) and before the destination attaches, and copies the delta again before the computes move.
      - Give it to every phase (the role sets it in C(module_defaults)); the credentials are never written to the
        run's files. Unset credentials fall back to boto3's chain (environment, profile, instance role).
    type: dict
    suboptions:
      copy:
        description: Copy between different locations; V(false) refuses such a move in preflight.
        type: bool
        default: true
      endpoint_url:
        description: The S3 endpoint (empty on AWS).
        type: str
      region:
        description: The bucket's region.
        type: str
      access_key:
        description: AWS access key id.
        type: str
      secret_key:
        description: AWS secret access key.
        type: str
      session_token:
        description: AWS session token.
        type: str
      validate_certs:
        description: Verify the endpoint's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: PEM bundle to verify the endpoint with.
        type: path
      concurrency:
        description: Copies in flight at once (1 to 64).
        type: int
        default: 16
      multipart_threshold:
        description: Objects of this many bytes or more take a multipart copy (5 MiB to 5 GiB).
        type: int
        default: 67108864
      multipart_chunksize:
        description: Part size of a multipart copy (5 MiB to 5 GiB).
        type: int
        default: 67108864
  computes_switched:
    description: With O(phase=finalize) or O(phase=end), the computes the role switched (for the report).
    type: list
    elements: dict
  outcome:
    description: With O(phase=end), the run's outcome as the role saw it.
    type: str
  error:
    description: With O(phase=recover) or O(phase=end), the error the role caught.
    type: str
  failed_task:
    description: With O(phase=recover), the name of the task that failed.
    type: str
requirements:
  - requests
seealso:
  - name: The migration runbook
    description: docs/runbooks/migrate-tenant.md in the collection.
    link: https://github.com/neondatabase/neon/blob/main/docs/rfcs/028-pageserver-migration.md
author:
  - neonops.storage maintainers (@neonops)
"""

EXAMPLES = r"""
- name: Plan and prepare a move (the role passes every setting)
  neonops.storage.tenant_migration_step:
    phase: begin
    tenant_id: 3aa8fcc61f6d357410b7de754b1d9001
    run_id: 20261201T120000Z-3aa8fcc6-1a2b
    state_dir: /var/lib/neonops/state
    report_dir: /var/lib/neonops/reports
    source: ps1
    destination: ps2
    pageservers: "{{ groups['pageservers'] | neonops.storage.migration_nodes(hostvars) }}"
    storcon_url: http://storcon.internal:1234
  register: begin

- name: Suspend background operations on the source
  neonops.storage.tenant_migration_step:
    phase: suspend
    tenant_id: 3aa8fcc61f6d357410b7de754b1d9001
    run_id: 20261201T120000Z-3aa8fcc6-1a2b
    state_dir: /var/lib/neonops/state
    report_dir: /var/lib/neonops/reports
"""

RETURN = r"""
path:
  description: C(live), C(failover) or C(done) (nothing to move).
  returned: always
  type: str
stages:
  description: Each shard's stage when the run started (C(start), C(attach), C(catchup), C(finalize), C(done)).
  returned: always
  type: dict
plan:
  description: The plan, one line per request or check.
  returned: always
  type: list
  elements: str
generations:
  description: Per shard, the generation before and after the move (and C(rollback) after a rollback).
  returned: always
  type: dict
s3_copy:
  description:
    - C(null) when source and destination use the same bucket and prefix; else the copy's C(source) and
      C(destination) (C(bucket), C(prefix)) and, from preflight, C(estimate) (C(source), C(to_copy) and
      C(identical), each with objects and bytes; in check mode C(would_copy), the first keys).
  returned: always
  type: dict
compute_targets:
  description: What the computes must use after the move (shard count, stripe size, moved shards, destination).
  returned: after catchup, failover and recover
  type: dict
recovery:
  description: With O(phase=recover), C(none), C(rollback), C(failover) or C(forward).
  returned: when recovering
  type: str
outcome:
  description: The outcome known so far (C(planned), C(rolled_back), C(failover), C(rolled_forward), ...).
  returned: always
  type: str
run_warnings:
  description: Conditions the operator should know about (for example a source that could not be demoted).
  returned: always
  type: list
  elements: str
report_path:
  description: The run's JSON report.
  returned: always
  type: str
overhead_seconds:
  description: With O(phase=end), the run's total time minus the time spent waiting on downloads and catch-up.
  returned: with phase end
  type: float
"""

import re
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_tenant_id
from ansible_collections.neonops.storage.plugins.module_utils._migration import MigrationError
from ansible_collections.neonops.storage.plugins.module_utils._migration_args import SETTINGS_BOUNDS
from ansible_collections.neonops.storage.plugins.module_utils._migration_run import PHASES, MigrationRun
from ansible_collections.neonops.storage.plugins.module_utils._module import NEON_CONNECTION_SPEC, client_for_url

_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")

SETTINGS_SPEC = {
    "prewarm": {"type": "bool", "default": True},
    "download_request_ms": {"type": "int", "default": 20000},
    "download_timeout": {"type": "float", "default": 300.0},
    "download_require_complete": {"type": "bool", "default": False},
    "compute_cutover": {"type": "str", "default": "reconfigure", "choices": ["reconfigure", "restart"]},
    "compute_restart_command": {"type": "str", "default": ""},
    "source_final_mode": {"type": "str", "default": "secondary", "choices": ["secondary", "detached"]},
    "flush_ms": {"type": "int", "default": 10000},
    "attach_timeout": {"type": "float", "default": 120.0},
    "catchup_timeout": {"type": "float", "default": 600.0},
    "catchup_poll_interval": {"type": "float", "default": 0.5},
    "catchup_include_safekeepers": {"type": "bool", "default": True},
    "remote_lsn_timeout": {"type": "float", "default": 120.0},
    "suspend_overrides": {"type": "dict", "default": {"gc_period": "0s", "compaction_period": "0s"}},
    "disk_headroom_ratio": {"type": "float", "default": 1.5},
    "refused_scheduling_policies": {
        "type": "list",
        "elements": "str",
        "default": ["Draining", "Deleting", "PauseForRestart"],
    },
    "rollback": {"type": "bool", "default": True},
    "failover": {"type": "bool", "default": True},
    "source_grace": {"type": "float", "default": 10.0},
    "missing_timeline_action": {"type": "str", "default": "recreate", "choices": ["recreate", "fail"]},
    "lock_stale_after": {"type": "float", "default": 1800.0},
    "lock_takeover": {"type": "bool", "default": False},
    "rollback_destination_mode": {"type": "str", "default": "detached", "choices": ["detached", "secondary"]},
}
S3_SPEC = {
    "copy": {"type": "bool", "default": True},
    "endpoint_url": {"type": "str"},
    "region": {"type": "str"},
    "access_key": {"type": "str", "no_log": True},
    "secret_key": {"type": "str", "no_log": True},
    "session_token": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "default": True},
    "ca_bundle": {"type": "path"},
    "concurrency": {"type": "int", "default": 16},
    "multipart_threshold": {"type": "int", "default": 64 * 1024 * 1024},
    "multipart_chunksize": {"type": "int", "default": 64 * 1024 * 1024},
}
# Settings that are durations or sizes: finite and within sane bounds, checked before any request.
BOUNDS = SETTINGS_BOUNDS


def argument_spec():
    connection = {k: v for k, v in NEON_CONNECTION_SPEC.items() if k not in ("api_url", "api_token")}
    return {
        **connection,
        "phase": {"type": "str", "required": True, "choices": ["begin", *PHASES, "end"]},
        "tenant_id": {"type": "str", "required": True},
        "run_id": {"type": "str", "required": True},
        "state_dir": {"type": "path", "required": True},
        "report_dir": {"type": "path", "required": True},
        "pageserver_api_token": {"type": "str", "no_log": True},
        "safekeeper_api_token": {"type": "str", "no_log": True},
        "storcon_api_token": {"type": "str", "no_log": True},
        "source": {"type": "str"},
        "destination": {"type": "str"},
        "shard": {"type": "str", "default": ""},
        "pageservers": {"type": "list", "elements": "dict"},
        "safekeeper_urls": {"type": "list", "elements": "str"},
        "storcon_url": {"type": "str"},
        "computes": {"type": "list", "elements": "dict"},
        "owner": {"type": "dict"},
        "started_s": {"type": "float"},
        "settings": {"type": "dict", "options": SETTINGS_SPEC},
        "s3": {"type": "dict", "options": S3_SPEC},
        "computes_switched": {"type": "list", "elements": "dict"},
        "outcome": {"type": "str"},
        "error": {"type": "str"},
        "failed_task": {"type": "str"},
    }


def param_error(p) -> str | None:
    """What is wrong with the parameters, naming the option; None when they are fine. Checked before any request."""
    run_id = p.get("run_id") or ""
    if not _RUN_ID.match(run_id):
        return f"run_id: {run_id[:80]!r} must be 1-128 letters, digits, '.', '_' or '-'"
    # Every phase names its lock file <state_dir>/<tenant_id>.lock after it, not only begin.
    try:
        validate_tenant_id(p.get("tenant_id"))
    except ValueError as exc:
        return str(exc)
    s3 = p.get("s3") or {}
    if s3:
        if not 1 <= s3["concurrency"] <= 64:
            return f"s3.concurrency: {s3['concurrency']} is outside 1..64"
        for key in ("multipart_threshold", "multipart_chunksize"):
            if not 5 * 1024 * 1024 <= s3[key] <= 5 * 1024**3:
                return f"s3.{key}: {s3[key]} is outside {5 * 1024 * 1024}..{5 * 1024**3} bytes"
    if p["phase"] != "begin":
        return None
    for option in ("source", "destination", "storcon_url", "pageservers", "settings"):
        if p[option] in (None, "", []):
            return f"{option}: required with phase=begin"
    for key, (low, high) in BOUNDS.items():
        value = p["settings"][key]
        if not (low <= value <= high):  # also false for NaN
            return f"settings.{key}: {value!r} is outside {low}..{high}"
    return None


def run_phase(params, check_mode, clients, warn):
    """Run the phase; ``(failed, result)``. Shared by this module and its controller-side action plugin."""
    phase = params["phase"]
    if check_mode and phase != "begin":
        return False, {"changed": False, "msg": f"check mode: phase {phase} not run"}
    run = MigrationRun(params, clients, warn)
    try:
        if phase == "begin":
            result = run.begin(check_mode)
        elif phase == "end":
            result = run.end(params["outcome"], params["error"])
        else:
            result = run.step(phase)
    except MigrationError as exc:
        return True, {"msg": str(exc), "changed": run.changed, "phase": phase, **run.result()}
    except Exception as exc:  # a defect: report it, never half-silently
        return True, {
            "msg": f"phase {phase}: internal error {type(exc).__name__}: {exc}",
            "exception": traceback.format_exc(),
            "changed": run.changed,
        }
    return False, {"changed": run.changed, **result}


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    error = param_error(module.params)
    if error:
        module.fail_json(msg=error)

    def clients(url, token, field):
        return client_for_url(module, url, token, field)

    failed, result = run_phase(module.params, module.check_mode, clients, module.warn)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

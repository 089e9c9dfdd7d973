# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""What the tenant-migration runbook decides from observed state. Pure functions, no I/O.

Internal to neonops.storage; may change in any release. The executor (``_migration_run``) reads the fleet, hands
what it saw to these functions and acts on their answer, so every decision is unit-tested on its own: each shard's
stage (where an interrupted move resumes), the path (live, failover, nothing to do), the lock, the catch-up
targets, branches missing on the destination, the compute plan, the recovery after a failure and the report's
figures. The runbook follows RFC 028 (neondatabase/neon ``docs/rfcs/028-pageserver-migration.md``).
"""

from __future__ import annotations

import json
import re

from ansible_collections.neonops.storage.plugins.module_utils import _s3
from ansible_collections.neonops.storage.plugins.module_utils._ids import TenantShardId, validate_tenant_id
from ansible_collections.neonops.storage.plugins.module_utils._lsn import Lsn

ATTACHED_MODES = ("AttachedSingle", "AttachedMulti", "AttachedStale")

# Stages a shard can be found in, in the order a move passes them.
STAGES = ("start", "attach", "catchup", "finalize", "done")
# Phases whose time is spent waiting on data (downloads, WAL ingest), not on orchestration.
WAITING_PHASES = ("prewarm", "catchup")
# Outcomes after which the lock file is removed (nothing left for a rerun to finish).
FINISHED_OUTCOMES = ("migrated", "already_done", "failover", "rolled_back", "rolled_forward", "failed_preflight")

_SHARD_SUFFIX = re.compile(r"[0-9a-f]{4}\Z")


class MigrationError(Exception):
    """A refusal or failure the operator must read: the message names what was found and what to do."""


# ---- parameters --------------------------------------------------------------------------------------------


def normalize_shard_filter(tenant_id: str, value) -> str:
    """``""`` (every shard), ``"NNCC"`` or ``"<tenant_id>-NNCC"`` → ``""`` or ``"nncc"``."""
    if value in (None, ""):
        return ""
    text = str(value).lower()
    if len(text) == 37 and text[32] == "-":
        if text[:32] != tenant_id:
            raise MigrationError(f"shard: {value!r} names another tenant than tenant_id {tenant_id}")
        text = text[33:]
    if not _SHARD_SUFFIX.fullmatch(text):
        raise MigrationError(f"shard: invalid shard {value!r}: expected NNCC (hex) or <tenant_id>-NNCC")
    try:
        TenantShardId(tenant_id, int(text[:2], 16), int(text[2:], 16))
    except ValueError as exc:
        raise MigrationError(f"shard: invalid shard {value!r}: {exc}") from None
    return text


def resolve_node(nodes: list, wanted, field: str) -> dict:
    """A pageserver of the inventory by inventory name or by node id."""
    text = str(wanted).strip() if wanted is not None else ""
    if not text:
        raise MigrationError(f"{field}: required (an inventory hostname of group pageservers, or a node id)")
    for node in nodes:
        if node["name"] == text:
            return node
    for node in nodes:
        if str(node.get("node_id")) == text:
            return node
    names = ", ".join(f"{n['name']} (node {n.get('node_id')})" for n in nodes) or "none"
    raise MigrationError(
        f"{field}: {text!r} is neither an inventory hostname nor a node id of the pageservers: {names}"
    )


def identity_refusal(node: dict, answered_id, role: str) -> str | None:
    """A URL that answers as another node than the inventory says: a wrong api_url, not the pageserver meant."""
    if answered_id is None or str(answered_id) == str(node.get("node_id")):
        return None
    return (
        f"{role}: {node['name']} at {node.get('api_url')} answers as node {answered_id}, but the inventory gives it "
        f"node id {node.get('node_id')}; refusing to move a tenant to or from a pageserver it may not be"
    )


def remote_location(node: dict) -> tuple:
    """``(bucket, prefix)`` where a pageserver keeps its tenants (inventory ``neon_s3_bucket``, ``neon_s3_prefix``)."""
    return (node.get("s3_bucket") or "", _prefix(node.get("s3_prefix")))


def remote_copy(source: dict, destination: dict, s3: dict) -> dict | None:
    """Whether the move must copy the tenant's remote data, from where to where; ``None`` when both pageservers
    use the same bucket and prefix.

    An attach reads the tenant's index_part from the destination's own bucket and prefix (upstream
    ``pageserver/src/tenant/remote_timeline_client.rs``), so between different locations the engine copies the
    tenant there first. Refused, naming the inventory variable, when the copy cannot be done safely: a location
    that is unknown or not a valid prefix, the bucket root, one location inside the other's tenant tree, the copy
    switched off, or no S3 access configured.
    """
    src, dst = remote_location(source), remote_location(destination)
    if src == dst:
        return None
    where = (
        f"{source['name']} stores tenants in bucket {src[0] or '(unknown)'!r} under prefix {src[1] or '(none)'!r}, "
        f"{destination['name']} in bucket {dst[0] or '(unknown)'!r} under prefix {dst[1] or '(none)'!r}"
    )
    if not s3.get("copy", True):
        return _refuse_copy(where, "tenant_migration_s3_copy is false, so the move cannot copy the tenant's data")
    if not (s3.get("region") or s3.get("endpoint_url")):
        return _refuse_copy(
            where,
            "no S3 access is configured for the copy: set neon_s3_region (or tenant_migration_s3_region) and, "
            "off AWS, neon_s3_endpoint_url (or tenant_migration_s3_endpoint_url)",
        )
    out = {}
    for role, node, (bucket, prefix) in (("source", source, src), ("destination", destination, dst)):
        try:
            out[role] = {
                "bucket": _s3.validate_bucket(bucket, f"neon_s3_bucket of {node['name']}"),
                "prefix": _s3.validate_prefix(prefix, f"neon_s3_prefix of {node['name']}"),
            }
        except ValueError as exc:
            return _refuse_copy(where, str(exc))
    try:
        _s3.check_distinct(
            out["source"]["bucket"], out["source"]["prefix"], out["destination"]["bucket"], out["destination"]["prefix"]
        )
    except ValueError as exc:
        return _refuse_copy(where, str(exc))
    return out


def _refuse_copy(where: str, why: str):
    raise MigrationError(
        f"{where}: the destination attaches from its own location and would not find the tenant there unless the "
        f"move copies it, and that copy is refused: {why}"
    )


def _prefix(value) -> str:
    return (value or "").strip("/")


def copy_pass(stages: dict, attached_in_this_run: bool) -> str:
    """``initial`` (the source is stale, the destination not attached yet: copy everything) or ``delta`` (the
    destination is attached: copy what the source uploaded since, so the destination's location holds the
    source's newest index_part and layers before the computes move and the source is demoted).

    No pass after the destination's AttachedSingle: its compaction and GC run again by then and delete layers it
    inherited, which a later copy would put back."""
    if attached_in_this_run or (stages and all(s in ("catchup", "finalize", "done") for s in stages.values())):
        return "delta"
    return "initial"


def copy_selection(keys, prefix: str, tenant_id: str, moving: list, pass_kind: str) -> list:
    """The source keys the copy takes: every object of the tenant, except heatmaps that are not the moving
    shards' own (another shard's heatmap may belong to a pageserver that uses the destination location) and, in
    the delta pass, any heatmap (the destination attached by then and uploads its own). Every other key carries
    its generation or is immutable, so a copy never overwrites what another attachment wrote."""
    moving_shards = set(moving)
    out = []
    for key in keys:
        info = _s3.parse_key(key, prefix)
        if info is None or info["tenant_id"] != tenant_id:
            continue
        if info["kind"] == "heatmap" and (pass_kind == "delta" or info["tenant_shard_id"] not in moving_shards):
            continue
        out.append(key)
    return sorted(out)


def copy_round_verdict(result: dict) -> str:
    """After one round of copy and verification: ``done``, or ``again`` when the source changed under it (an
    index_part rewritten after the listing: a conditional copy refused, or a layer it references not listed)."""
    if result.get("source_changed") or result.get("mismatched") or result.get("missing_layers"):
        return "again"
    return "done"


# ---- lock ----------------------------------------------------------------------------------------------------


def lock_verdict(holder: dict, me: dict, now: float, holder_alive: bool | None, stale_after: float, takeover: bool):
    """``(free, reason)`` for a lock file's content ``holder`` ({} when there is none).

    ``holder_alive`` is whether the holder's process still runs (None when it ran on another host).
    """
    if not holder:
        return True, "no lock"
    if holder.get("released"):
        return True, "released by its last run"
    owner = holder.get("owner") or {}
    if owner.get("run_id") and owner.get("run_id") == me.get("run_id"):
        return True, "held by this run"
    if owner.get("host") == me.get("host") and holder_alive is False:
        return True, f"its process {owner.get('pid')} is gone"
    age = now - float(holder.get("heartbeat_s") or 0)
    if age > stale_after:
        return True, f"heartbeat {int(age)} s old (> {int(stale_after)} s)"
    if takeover:
        return True, "taken over on request"
    return False, f"held by {owner} in phase {holder.get('phase', '?')}, heartbeat {int(age)} s ago"


# ---- discovery -----------------------------------------------------------------------------------------------


def collect_shard_ids(tenant_id: str, shard_filter: str, *sources) -> list:
    """Every shard id of the tenant named in any of ``sources`` (iterables of tenant shard ids), sorted."""
    found = set()
    for source in sources:
        for tsid in source or ():
            text = str(tsid).lower()
            if text == tenant_id or (len(text) == 37 and text.startswith(tenant_id + "-")):
                found.add(text)
    if shard_filter:
        found = {t for t in found if t.endswith("-" + shard_filter)}
    return sorted(found)


def shard_stage(src_mode: str, dst_mode: str) -> str:
    """Where a shard's move stands, from both locations' modes; 'lost' when neither holds it attached.

    A shard of an unreachable source is taken from the storage controller's record of what that node held."""
    if dst_mode == "AttachedSingle":
        return "finalize" if src_mode in ATTACHED_MODES else "done"
    if dst_mode == "AttachedMulti":
        return "catchup"
    if src_mode == "AttachedStale":
        return "attach"
    if src_mode == "unreachable":
        return "attach"  # the source is gone: what is left is attaching the destination (failover)
    if src_mode in ATTACHED_MODES:
        return "start"
    return "lost"


def describe_shard(
    tsid: str,
    src_loc,
    dst_loc,
    src_reachable: bool,
    journal_shard: dict | None,
    suspend_overrides: dict,
    fallback_conf=None,
):
    """One shard's observed state, its originals (from the journal first) and its stage.

    ``fallback_conf`` (the storage controller's copy of the tenant config) stands in for the originals when neither
    the journal nor a location that holds them can be read, as in a failover from a dead source."""
    tsid_parsed = TenantShardId.parse(tsid)
    journal_shard = journal_shard or {}
    src_mode = src_loc["mode"] if src_loc else ("absent" if src_reachable else "unreachable")
    dst_mode = dst_loc["mode"] if dst_loc else "absent"
    if "orig_conf" in journal_shard:
        orig_conf = journal_shard["orig_conf"]
    elif src_loc and src_mode in ATTACHED_MODES:
        orig_conf = src_loc.get("tenant_conf") or {}
    elif dst_loc and dst_loc.get("mode") in ATTACHED_MODES:
        orig_conf = dst_loc.get("tenant_conf") or {}
    else:
        orig_conf = (dst_loc or {}).get("tenant_conf") or fallback_conf or {}
    stripe = (src_loc or {}).get("shard_stripe_size") or (dst_loc or {}).get("shard_stripe_size")
    if not stripe:
        stripe = journal_shard.get("stripe_size") or 0
    return {
        "tsid": tsid,
        "shard_number": tsid_parsed.shard_number,
        "shard_count": tsid_parsed.shard_count,
        "stripe_size": stripe,
        "src_mode": src_mode,
        "src_generation": (src_loc or {}).get("generation"),
        "dst_mode": dst_mode,
        "dst_generation": (dst_loc or {}).get("generation"),
        "orig_generation": journal_shard.get("orig_generation", (src_loc or {}).get("generation")),
        "orig_mode": journal_shard.get(
            "orig_mode", src_mode if src_mode in ("AttachedSingle", "AttachedMulti") else "AttachedSingle"
        ),
        "orig_conf": dict(orig_conf),
        "suspended_conf": {**orig_conf, **(suspend_overrides or {})},
        "stage": shard_stage(src_mode, dst_mode),
    }


def migration_path(shards: list, src_reachable: bool) -> str:
    if shards and all(s["stage"] == "done" for s in shards):
        return "done"
    return "live" if src_reachable else "failover"


def journal_for(previous: dict, source: str, destination: str) -> dict:
    """The durable journal of an earlier run, only when it moved the same tenant between the same nodes."""
    previous = previous or {}
    if previous.get("source") == source and previous.get("destination") == destination:
        return previous
    return {}


def shard_originals(shard: dict) -> dict:
    return {k: shard[k] for k in ("orig_conf", "orig_generation", "orig_mode", "stripe_size")}


def storcon_policy_to_restore(current: str, recorded: str) -> str:
    """The scheduling policy to give back at the end: Stop found now may be an interrupted run's own."""
    if current == "Stop" and recorded:
        return recorded
    return current


def generations_seen(journal_generations: dict, shards: list) -> dict:
    """Generations before/after per shard: the journal's, updated from destinations already attached."""
    generations = {k: dict(v) for k, v in (journal_generations or {}).items()}
    for s in shards:
        if s["dst_mode"] in ("AttachedMulti", "AttachedSingle"):
            entry = generations.setdefault(s["tsid"], {})
            entry.update({"before": s["orig_generation"], "after": s["dst_generation"]})
    return generations


# ---- preflight -----------------------------------------------------------------------------------------------


def headroom_refusal(free_bytes, physical_bytes: int, ratio: float, destination: str) -> str | None:
    needed = int(physical_bytes * ratio)
    if free_bytes is None or int(free_bytes) < needed:
        return (
            f"{destination} has {free_bytes if free_bytes is not None else 'unknown'} bytes free; the tenant needs "
            f"{physical_bytes} bytes x {ratio} = {needed}"
        )
    return None


def scheduling_refusal(node: dict | None, refused: list, destination: str) -> str | None:
    """A destination the storage controller is draining or removing must not receive tenants."""
    if not node:
        return None  # unknown to the controller: it does not schedule onto it
    policy = node.get("scheduling")
    if policy in refused:
        return (
            f"{destination} (node {node.get('id')}) has scheduling policy {policy} on the storage controller; "
            "it must not receive tenants"
        )
    return None


# ---- catch-up ------------------------------------------------------------------------------------------------


def catchup_targets(moving: list, timeline_ids: list, baseline: dict, safekeeper_commit: dict) -> dict:
    """``{tsid: {timeline_id: lsn_int}}``: the source's last_record_lsn after it went stale, raised to the
    safekeepers' commit_lsn (read at the same time) when that is known."""
    targets = {}
    for tsid in moving:
        shard_baseline = baseline.get(tsid, {})
        targets[tsid] = {
            tl: max(int(shard_baseline.get(tl, 0)), int(safekeeper_commit.get(tl, 0))) for tl in timeline_ids
        }
    return targets


def lagging(targets: dict, reached: dict) -> dict:
    """``{timeline_id: bytes behind}`` for timelines below their target; a missing timeline lags by all of it."""
    return {tl: lsn - int(reached.get(tl, -1)) for tl, lsn in targets.items() if int(reached.get(tl, -1)) < lsn}


def missing_timelines(src_by_shard: dict, dst_by_shard: dict, shard_numbers: dict) -> list:
    """Timelines the source has and the destination lacks, per shard: branches created during the move."""
    missing = []
    for tsid, timelines in src_by_shard.items():
        have = {t["timeline_id"] for t in dst_by_shard.get(tsid, [])}
        for t in timelines:
            if t["timeline_id"] not in have:
                missing.append(
                    {
                        "tsid": tsid,
                        "shard_number": shard_numbers.get(tsid, 0),
                        "timeline_id": t["timeline_id"],
                        "ancestor_timeline_id": t.get("ancestor_timeline_id"),
                        "ancestor_lsn": t.get("ancestor_lsn"),
                        "pg_version": t.get("pg_version"),
                    }
                )
    # Shard 0 first: upstream creates a timeline on shard zero before the others.
    return sorted(missing, key=lambda m: (m["shard_number"], m["timeline_id"]))


def creation_order(missing: list) -> list:
    """Missing timelines ordered so an ancestor that is itself missing is created before its branches."""
    ordered, pending = [], list(missing)
    known_missing = {(m["tsid"], m["timeline_id"]) for m in missing}
    created = set()
    while pending:
        progressed = False
        for m in list(pending):
            parent = (m["tsid"], m["ancestor_timeline_id"])
            if parent not in known_missing or parent in created:
                ordered.append(m)
                created.add((m["tsid"], m["timeline_id"]))
                pending.remove(m)
                progressed = True
        if not progressed:  # a cycle cannot happen upstream; keep the rest in their order
            ordered.extend(pending)
            break
    return ordered


# ---- computes ------------------------------------------------------------------------------------------------


def tenant_computes(computes: list | None, tenant_id: str) -> list:
    return [c for c in computes or [] if str(c.get("tenant_id") or "").lower() == tenant_id]


def compute_pageservers(current_connstring, shard_count: int, moved: list, destination: dict, addr_to_id: dict):
    """``(pageservers, needs_switch)`` for one compute: the destination for every moved shard number, the current
    pageserver for the others (by its address in ``current_connstring``, one URL per shard)."""
    current = [u.strip() for u in (current_connstring or "").split(",")] if current_connstring else []
    plan = []
    for number in range(max(int(shard_count), 1)):
        if number in moved:
            plan.append({"node_id": destination["node_id"], "libpq_url": destination["libpq_url"]})
            continue
        url = current[number] if number < len(current) else ""
        address = url.split("@", 1)[-1].split("/", 1)[0]
        plan.append({"node_id": addr_to_id.get(address), "libpq_url": url})
    return plan, [p["libpq_url"] for p in plan] != current


def compute_on_destination(connstring, moved: list, destination_libpq: str) -> bool:
    current = [u.strip() for u in (connstring or "").split(",")]
    return all(n < len(current) and current[n] == destination_libpq for n in moved)


# ---- recovery ------------------------------------------------------------------------------------------------


def rollback_keeps_generation(issued_in_move: bool, src_loc, inspected: dict, source_node_id) -> bool:
    """Whether a rollback can leave the source its own generation instead of issuing a new one.

    Only while no generation was issued to another node during the move (the journal has none, and the generation
    authority still names the source's generation and node): nothing then needs fencing off. The source's location
    then changes in place (mode and overrides) and keeps serving the computes, where a new generation would make it
    shut the tenant down and attach it again, refusing reads meanwhile (neondatabase/neon
    pageserver/src/tenant/mgr.rs, upsert_location: an attached location in the same generation is updated in place).
    """
    if issued_in_move or not src_loc or src_loc.get("mode") not in ATTACHED_MODES:
        return False
    generation = src_loc.get("generation")
    return (
        isinstance(generation, int)
        and not isinstance(generation, bool)
        and inspected.get("generation") == generation
        and inspected.get("node_id") is not None
        and int(inspected["node_id"]) == int(source_node_id)
    )


def recovery_decision(
    mutated: bool, cutover_started: bool, failed_phase: str, source_answers: bool, rollback: bool, failover: bool
) -> str:
    """How to recover from a failure: before any compute moved, the source keeps the tenant (roll back), or the
    destination takes it alone when the source is gone (fail over); after, only forward is safe."""
    if not mutated:
        return "none"
    if cutover_started or failed_phase in ("cutover", "finalize", "verify", "failover"):
        return "forward"
    if source_answers:
        return "rollback" if rollback else "none"
    return "failover" if failover else "none"


# ---- plan and report -----------------------------------------------------------------------------------------


def plan_lines(state: dict, options: dict) -> list:
    """The plan as text: what was observed, then every request each phase would make."""
    src, dst, storcon = state["source"], state["destination"], state["storcon"]
    shards = state["shards"]
    lines = []
    for s in shards:
        lines.append(
            f"observed {s['tsid']}: source {s['src_mode']} gen {s['src_generation']}, destination {s['dst_mode']} "
            f"gen {s['dst_generation']}, stage {s['stage']}, original overrides {_json(s['orig_conf'])}"
        )
    lines.append(f"computes: {', '.join(c['name'] for c in state['computes']) or 'none'}")
    lines.append(
        f"destination free bytes {state.get('free_bytes', '?')}, tenant physical size {state['physical_size']}"
    )
    path = state["path"]
    if state.get("storcon_known") and state.get("storcon_scheduling") != "Stop" and path != "done":
        lines.append(
            f"controller: PUT {storcon['url']}/control/v1/tenant/{state['tenant_id']}/policy scheduling=Stop "
            f"(now {state['storcon_scheduling']}); at the end scheduling={state['storcon_scheduling']}"
        )
    start = [s for s in shards if s["stage"] == "start"]
    attach = [s for s in shards if s["stage"] in ("start", "attach")]
    moving = [s for s in shards if s["stage"] in ("start", "attach", "catchup")]
    if path == "live":
        stages = ", ".join(sorted({s["stage"] for s in shards}, key=STAGES.index))
        lines.append(f"path: live migration (resuming at stages {stages})")
        for s in start:
            lines.append(
                f"suspend: PUT {src['api_url']}/v1/tenant/{s['tsid']}/location_config mode={s['src_mode']} "
                f"generation={s['src_generation']} tenant_conf={_json(s['suspended_conf'])}"
            )
        copy = state.get("copy")
        prewarm = []
        if options["prewarm"]:
            for s in attach:
                upload = "" if copy else f"POST {src['api_url']}/v1/tenant/{s['tsid']}/heatmap_upload; "
                prewarm.append(
                    f"prewarm: PUT {dst['api_url']}/v1/tenant/{s['tsid']}/location_config mode=Secondary warm=true; "
                    f"{upload}POST {dst['api_url']}/v1/tenant/"
                    f"{s['tsid']}/secondary/download?wait_ms={options['download_request_ms']} until complete or "
                    f"{options['download_timeout']} s"
                )
        if not copy:
            lines += prewarm
        for s in start:
            lines.append(
                f"stale: PUT {src['api_url']}/v1/tenant/{s['tsid']}/location_config?flush_ms={options['flush_ms']} "
                f"mode=AttachedStale generation={s['src_generation']}"
            )
        if copy:
            lines += copy_plan_lines(state["tenant_id"], copy)
            lines += prewarm
        for s in attach:
            lines.append(
                f"attach: POST {storcon['url']}/debug/v1/attach-hook node_id={dst['node_id']} (new generation > "
                f"{s['src_generation']}); PUT {dst['api_url']}/v1/tenant/{s['tsid']}/location_config "
                "mode=AttachedMulti; wait until Active"
            )
        for s in moving:
            lines.append(
                f"catchup: GET {dst['api_url']}/v1/tenant/{s['tsid']}/timeline until last_record_lsn >= source "
                f"baseline{' and safekeeper commit_lsn' if options['catchup_include_safekeepers'] else ''} "
                f"(deadline {options['catchup_timeout']} s)"
            )
        lines.append(
            "timelines: compare the source and destination timeline sets; recreate branches missing on the destination"
        )
        if copy:
            lines.append(
                f"copy (delta): before the computes move, copy again what {src['name']} uploaded under "
                f"s3://{copy['source']['bucket']}/{copy['source']['prefix']}/ since the first copy, then verify"
            )
    elif path == "failover":
        lines.append(f"path: failover (source {src['name']} unreachable)")
        for s in shards:
            lines.append(
                f"failover: source unreachable; POST attach-hook node_id={dst['node_id']}; PUT {dst['api_url']}"
                f"/v1/tenant/{s['tsid']}/location_config mode=AttachedSingle tenant_conf={_json(s['orig_conf'])}"
            )
    else:
        lines.append(f"path: nothing to move, the tenant is already on {dst['name']}")
    numbers = ",".join(str(s["shard_number"]) for s in shards)
    for c in state["computes"]:
        how = (
            f"POST {c['api_url']}/configure"
            if options["compute_cutover"] == "reconfigure"
            else f"rewrite {c.get('spec_path')} and run the restart command"
        )
        lines.append(
            f"cutover: {how} for {c['name']} with the destination for shards {numbers} (skipped when it already "
            "uses the destination); then check its postgresql.conf"
        )
    if path != "done":
        final = "Secondary" if options["source_final_mode"] == "secondary" else "Detached"
        for s in shards:
            lines.append(
                f"finalize: PUT {dst['api_url']}/v1/tenant/{s['tsid']}/location_config mode=AttachedSingle "
                f"tenant_conf={_json(s['orig_conf'])}"
            )
            skipped = "" if state["src_reachable"] else " (skipped: source unreachable)"
            lines.append(f"finalize: PUT {src['api_url']}/v1/tenant/{s['tsid']}/location_config mode={final}{skipped}")
    lines.append(
        "verify: destination AttachedSingle and Active with the original overrides, same timelines, "
        "remote_consistent_lsn past the cutover point, computes on the destination"
    )
    return lines


def copy_plan_lines(tenant_id: str, copy: dict) -> list:
    src, dst = copy["source"], copy["destination"]
    lines = [
        f"copy: s3://{src['bucket']}/{src['prefix']}/tenants/{tenant_id}* -> s3://{dst['bucket']}/{dst['prefix']}/"
        "tenants/ (server-side copies; layers first, index_part after, heatmaps last; skip identical; verify every "
        "object and every layer the newest index_part references)"
    ]
    estimate = copy.get("estimate")
    if estimate:
        lines.append(
            f"copy: now {estimate['source']['objects']} objects ({estimate['source']['bytes']} bytes) at the source; "
            f"{estimate['to_copy']['objects']} objects ({estimate['to_copy']['bytes']} bytes) to copy, "
            f"{estimate['identical']['objects']} already at the destination"
        )
        for key in estimate.get("would_copy", [])[:COPY_PLAN_KEYS]:
            lines.append(f"copy: would copy {key}")
        more = len(estimate.get("would_copy", [])) - COPY_PLAN_KEYS
        if more > 0:
            lines.append(f"copy: ... and {more} more objects")
    return lines


# How many keys the plan names one by one (the rest are counted).
COPY_PLAN_KEYS = 20


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)


def figures(phases: list, started_s: float, now_s: float) -> dict:
    """Total, waiting (downloads and catch-up) and orchestration overhead, in seconds."""
    total = max(0.0, now_s - started_s)
    waiting = sum(float(p.get("seconds") or 0) for p in phases if p["name"] in WAITING_PHASES)
    return {
        "total_seconds": round(total, 3),
        "waiting_seconds": round(waiting, 3),
        "overhead_seconds": round(total - waiting, 3),
    }


def lsn_text(value) -> str:
    return str(Lsn(int(value)))


def lsn_texts(by_shard: dict | None) -> dict:
    return {tsid: {tl: lsn_text(v) for tl, v in tls.items()} for tsid, tls in (by_shard or {}).items()}


def validate_tenant(value) -> str:
    try:
        return validate_tenant_id(value)
    except ValueError as exc:
        raise MigrationError(str(exc)) from None

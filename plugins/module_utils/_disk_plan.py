# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""Which tenants to move off a full pageserver, and the provision report. Internal to neonops.storage; may change in
any release.

Pure functions over plain data, so every decision is unit-tested: disk use from a pageserver's ``/v1/utilization``
(``PageserverUtilization`` in neondatabase/neon ``libs/pageserver_api/src/models/utilization.rs``), tenant sizes from
``GET /v1/tenant/{tenant_shard_id}`` (``current_physical_size``), the plan (an explicit list, or the largest tenants
of the source until its projected use is under a target) and the report.

The storage controller never moves a shard because a disk fills up (its optimiser ignores utilization), so growing
the fleet is an explicit move of chosen tenants; this module chooses them.
"""

from __future__ import annotations

from ansible_collections.neonops.storage.plugins.module_utils._ids import validate_tenant_id


class PlanRefused(ValueError):
    """The plan must not run; the message says why and what to change."""


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: expected a non-negative integer, got {value!r}")
    return value


def disk_usage(utilization: dict, name: str = "pageserver") -> dict:
    """``{used_bytes, capacity_bytes, free_bytes, pct}`` from a ``/v1/utilization`` body.

    The capacity is what the pageserver's file system holds: used plus free (upstream measures both with statvfs).
    """
    used = _int((utilization or {}).get("disk_usage_bytes"), f"{name}: disk_usage_bytes")
    free = _int((utilization or {}).get("free_space_bytes"), f"{name}: free_space_bytes")
    capacity = used + free
    return {"used_bytes": used, "free_bytes": free, "capacity_bytes": capacity, "pct": pct(used, capacity)}


def data_volume_headroom(df_output: str, mount: str, max_usage_pct: int, min_avail_bytes: int) -> dict:
    """The data volume's size and the headroom the pageserver keeps on it, from ``df --block-size=1
    --output=size,avail <mount>`` and the ``disk_usage_based_eviction`` thresholds.

    The pageserver evicts layers once usage passes ``max_usage_pct`` or available space drops under
    ``min_avail_bytes`` (neondatabase/neon pageserver/src/disk_usage_eviction_task.rs), so it fills the volume up to
    the lower of the two. Only what changes with the volume or the thresholds is returned (not the free space of
    the moment), so a record of it changes, and shows as a diff, exactly when the headroom does.
    """
    lines = [line.split() for line in str(df_output or "").splitlines() if line.strip()]
    try:
        size = int(lines[-1][0])
    except (IndexError, ValueError):
        raise ValueError(f"{mount}: cannot read the file system size from df: {str(df_output)[:200]!r}") from None
    max_pct = _int(max_usage_pct, "pageserver_disk_max_usage_pct")
    min_avail = _int(min_avail_bytes, "pageserver_disk_min_avail_bytes")
    if not 0 < max_pct <= 100:
        raise ValueError(f"pageserver_disk_max_usage_pct: expected 1..100, got {max_pct}")
    fills_to = max(0, min(size * max_pct // 100, size - min_avail))
    return {
        "mount": mount,
        "size_bytes": size,
        "max_usage_pct": max_pct,
        "min_avail_bytes": min_avail,
        "usable_bytes": fills_to,
        "usable_pct": pct(fills_to, size),
    }


def pct(used: int, capacity: int) -> float:
    return round(100.0 * used / capacity, 2) if capacity else 100.0


def fullest(disk: dict) -> str:
    """The name of the node whose disk is fullest (by percentage; the name breaks ties)."""
    if not disk:
        raise PlanRefused("no pageserver to choose a source from")
    return sorted(disk, key=lambda name: (-disk[name]["pct"], name))[0]


def tenant_sizes(shards: dict) -> dict:
    """``{tenant_id: bytes}`` from ``{tenant_shard_id: current_physical_size}`` (a tenant's shards summed)."""
    sizes: dict = {}
    for tsid, size in shards.items():
        tenant_id = str(tsid).split("-", 1)[0].lower()
        sizes[tenant_id] = sizes.get(tenant_id, 0) + _int(size or 0, f"{tsid}: current_physical_size")
    return sizes


def _check_pair(source: dict, destination: dict) -> None:
    if source["name"] == destination["name"]:
        raise PlanRefused(f"destination: {destination['name']} is also the source; choose another pageserver")
    for field in ("s3_bucket", "s3_prefix"):
        # All pageservers that may hold a tenant use the same bucket and prefix_in_bucket: the remote layout depends
        # only on the tenant shard id (neondatabase/neon pageserver/src/tenant/remote_timeline_client.rs).
        a, b = source.get(field), destination.get(field)
        if a is not None and b is not None and str(a).strip("/") != str(b).strip("/"):
            raise PlanRefused(
                f"destination: {destination['name']} has {field} {b!r}, the source {source['name']} has {a!r}; "
                "a tenant's remote data would not be found there"
            )


def plan_moves(
    source: dict,
    destination: dict,
    sizes: dict,
    tenants: list | None = None,
    target_pct: float = 50.0,
    max_tenants: int = 10,
    destination_max_pct: float = 80.0,
) -> dict:
    """Choose the tenants to move from ``source`` to ``destination``.

    ``source``/``destination`` are ``{name, used_bytes, capacity_bytes, [s3_bucket, s3_prefix]}``; ``sizes`` is
    ``{tenant_id: bytes}`` of the tenants attached on the source. With ``tenants``, exactly those move, in that
    order (each must be on the source). Without, the largest tenants move, largest first, until the source's
    projected use is at or under ``target_pct``, at most ``max_tenants`` of them.

    Refuses (``PlanRefused``) when the target cannot be reached within ``max_tenants`` moves, or when the
    destination would end above ``destination_max_pct``: nothing should move on a plan that cannot succeed.
    """
    _check_pair(source, destination)
    if not 0 < target_pct < 100:
        raise PlanRefused(f"target_pct: must be between 0 and 100, got {target_pct}")
    if not 0 < destination_max_pct <= 100:
        raise PlanRefused(f"destination_max_pct: must be between 0 and 100, got {destination_max_pct}")
    if max_tenants < 1:
        raise PlanRefused(f"max_tenants: must be at least 1, got {max_tenants}")
    src_used, src_cap = source["used_bytes"], source["capacity_bytes"]
    dst_used, dst_cap = destination["used_bytes"], destination["capacity_bytes"]

    if tenants:
        chosen = []
        for index, value in enumerate(tenants):
            tenant_id = validate_tenant_id(value, f"tenants[{index}]")
            if tenant_id not in sizes:
                raise PlanRefused(f"tenants[{index}]: tenant {tenant_id} is not attached on {source['name']}")
            if tenant_id in chosen:
                raise PlanRefused(f"tenants[{index}]: tenant {tenant_id} is listed twice")
            chosen.append(tenant_id)
        mode = "list"
    else:
        mode = "largest"
        chosen = []
        moved = 0
        # Largest first; equal sizes in tenant id order so a rerun plans the same moves.
        for tenant_id in sorted(sizes, key=lambda t: (-sizes[t], t)):
            if pct(src_used - moved, src_cap) <= target_pct or len(chosen) >= max_tenants:
                break
            if sizes[tenant_id] <= 0:
                break
            chosen.append(tenant_id)
            moved += sizes[tenant_id]
        after = pct(src_used - moved, src_cap)
        if after > target_pct:
            raise PlanRefused(
                f"target_pct: moving the {len(chosen)} largest tenant(s) of {source['name']} (max_tenants "
                f"{max_tenants}) leaves it {after} % full, above the target {target_pct} %; raise max_tenants or "
                "the target"
            )

    moves = []
    src_after, dst_after = src_used, dst_used
    for tenant_id in chosen:
        src_after -= sizes[tenant_id]
        dst_after += sizes[tenant_id]
        moves.append(
            {
                "tenant_id": tenant_id,
                "size_bytes": sizes[tenant_id],
                "source_pct_after": pct(src_after, src_cap),
                "destination_pct_after": pct(dst_after, dst_cap),
            }
        )
    projected = {"source_pct": pct(src_after, src_cap), "destination_pct": pct(dst_after, dst_cap)}
    if projected["destination_pct"] > destination_max_pct:
        raise PlanRefused(
            f"destination_max_pct: {destination['name']} would be {projected['destination_pct']} % full after "
            f"the moves, above {destination_max_pct} %; move fewer tenants or give it a bigger disk"
        )
    return {
        "mode": mode,
        "source": source["name"],
        "destination": destination["name"],
        "target_pct": target_pct,
        "moves": moves,
        "projected": projected,
        "moved_bytes": sum(m["size_bytes"] for m in moves),
    }


def plan_lines(disk: dict, plan: dict) -> list:
    """The plan as operator-readable lines (printed in check mode and before every run)."""
    src, dst = disk[plan["source"]], disk[plan["destination"]]
    lines = [
        f"source {plan['source']}: {src['pct']} % of {src['capacity_bytes']} bytes used -> "
        f"{plan['projected']['source_pct']} % (target {plan['target_pct']} %)",
        f"destination {plan['destination']}: {dst['pct']} % of {dst['capacity_bytes']} bytes used -> "
        f"{plan['projected']['destination_pct']} %",
    ]
    for number, move in enumerate(plan["moves"], 1):
        lines.append(
            f"move {number}: tenant {move['tenant_id']} ({move['size_bytes']} bytes): source -> "
            f"{move['source_pct_after']} %, destination -> {move['destination_pct_after']} %"
        )
    if not plan["moves"]:
        lines.append(f"nothing to move: {plan['source']} is already at or under the target")
    return lines


def build_report(
    run_id: str, before: dict, after: dict, plan: dict | None, outcomes: list, node: dict, failure: dict | None = None
) -> dict:
    """The provision run's report: each node's disk use before and after, the plan and each move's outcome.

    ``failure`` (``error``, and the ``outcome`` and ``report`` of the failed move's own end step) is given when a
    move failed: that move is listed with its outcome, and the planned moves after it as ``not_started``.
    """
    names = sorted(set(before) | set(after))
    nodes = []
    for name in names:
        b, a = before.get(name), after.get(name)
        nodes.append(
            {
                "name": name,
                "node_id": (a or b or {}).get("node_id"),
                "before": b,
                "after": a,
                "delta_bytes": (a["used_bytes"] - b["used_bytes"]) if a and b else None,
            }
        )
    moves = list(outcomes) + (_unfinished_moves(plan, outcomes, failure) if failure is not None else [])
    failed = failure is not None or any(m.get("outcome") not in ("migrated", "already_done") for m in moves)
    return {
        "run_id": run_id,
        "new_node": node,
        "plan": plan,
        "moves": moves,
        "nodes": nodes,
        "outcome": "failed" if failed else ("moved" if moves else "no_moves"),
    }


def _unfinished_moves(plan: dict | None, outcomes: list, failure: dict) -> list:
    """The planned moves without an outcome: the first is the one that failed, the others never started."""
    recorded = {m.get("tenant_id") for m in outcomes}
    pending = [m for m in (plan or {}).get("moves") or [] if m.get("tenant_id") not in recorded]
    if not pending:
        return []
    # The failed move's end step wrote its own report; a report already listed belongs to an earlier move.
    own = failure.get("report") and failure["report"] not in {m.get("report") for m in outcomes}
    first = {
        **pending[0],
        "outcome": (failure.get("outcome") if own else None) or "failed",
        "report": failure.get("report") if own else "",
        "error": failure.get("error") or "",
    }
    return [first] + [{**m, "outcome": "not_started", "report": ""} for m in pending[1:]]


def _size(value) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024.0
    return str(value)


def render_markdown(report: dict) -> str:
    plan = report.get("plan") or {}
    new = report.get("new_node") or {}
    lines = [
        f"# Provision pageserver {report.get('run_id')}",
        "",
        f"- New node: {new.get('name')} (node {new.get('node_id')}), registered: {new.get('registered')}",
        f"- Plan: {plan.get('mode', '-')} from {plan.get('source', '-')} to {plan.get('destination', '-')}, "
        f"target {plan.get('target_pct', '-')} %; projected source {(plan.get('projected') or {}).get('source_pct')} %"
        f", destination {(plan.get('projected') or {}).get('destination_pct')} %",
        f"- **Outcome: {report.get('outcome')}**",
        "",
        "| node | before | after | change |",
        "|---|---|---|---|",
    ]
    for n in report.get("nodes") or []:
        b, a = n.get("before") or {}, n.get("after") or {}
        before = f"{b.get('pct', '-')} % ({_size(b.get('used_bytes'))} of {_size(b.get('capacity_bytes'))})"
        after = f"{a.get('pct', '-')} % ({_size(a.get('used_bytes'))} of {_size(a.get('capacity_bytes'))})"
        lines.append(
            f"| {n['name']} | {before if b else '-'} | {after if a else '-'} | {_size(n.get('delta_bytes'))} |"
        )
    lines += ["", "| tenant | size | outcome | migration report |", "|---|---|---|---|"]
    for m in report.get("moves") or []:
        lines.append(
            f"| {m.get('tenant_id')} | {_size(m.get('size_bytes'))} | {m.get('outcome')} | {m.get('report') or '-'} |"
        )
    return "\n".join(lines) + "\n"

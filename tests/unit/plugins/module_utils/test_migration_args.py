"""The tenant_migration role's variables and inventory, checked before a run (module_utils/_migration_args.py).

The playbook runs of the same checks, with neonsim's request log, are tests/integration/test_migrate_hostile.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible_collections.neonops.storage.plugins.module_utils import _migration_args as args

ROLE = Path(__file__).resolve().parents[4] / "roles" / "tenant_migration"
SPEC = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
TENANT = "1f359dd625e519a1a4e8d7509690f6fc"
P = args.PREFIX


def good(**changes) -> dict:
    values = {
        **{k: v for k, v in DEFAULTS.items() if "{{" not in str(v)},
        P + "tenant_id": TENANT,
        P + "source": "ps1",
        P + "destination": "ps2",
    }
    values.update({P + k: v for k, v in changes.items()})
    return {k: v for k, v in values.items() if v is not _UNSET}


_UNSET = object()


def test_the_defaults_and_common_spellings_pass():
    assert args.role_vars_problem(good(), SPEC) is None
    # What -e key=value gives (strings), what JSON gives (numbers), node ids for the pageservers.
    assert args.role_vars_problem(good(flush_ms="5000", api_timeout="2.5", prewarm="no", destination=2), SPEC) is None
    assert args.role_vars_problem(good(shard="0002", catchup_timeout=600.0, rollback=1), SPEC) is None


def test_every_numeric_variable_has_bounds():
    numeric = {name for name, spec in SPEC.items() if spec.get("type") in ("int", "float")}
    assert numeric == set(args.ROLE_BOUNDS) | set(args.ROLE_BOUNDS_ABOVE)


HUGE = "a" * (10 << 20)

ROLE_CASES = [
    # (id, changes, variable named, text the message must carry)
    ("tenant-trailing-newline", {"tenant_id": TENANT + "\n"}, "tenant_id", "'1f359dd625e519a1a4e8d7509690f6fc\\n'"),
    ("tenant-path", {"tenant_id": "../../" + TENANT[:26]}, "tenant_id", "../../"),
    ("tenant-nul", {"tenant_id": TENANT[:31] + "\x00"}, "tenant_id", "NUL"),
    ("tenant-10mb", {"tenant_id": HUGE}, "tenant_id", "10485760 characters"),
    ("tenant-unicode-digits", {"tenant_id": "١" * 32}, "tenant_id", "١"),
    ("tenant-list", {"tenant_id": [TENANT]}, "tenant_id", "must be a string, got list"),
    ("tenant-missing", {"tenant_id": _UNSET}, "tenant_id", "is required"),
    ("shard-0401", {"shard": "0401"}, "shard", "'0401'"),
    ("shard-garbage", {"shard": "zz"}, "shard", "'zz'"),
    ("shard-other-tenant", {"shard": "0" * 32 + "-0002"}, "shard", "another tenant"),
    ("source-empty", {"source": ""}, "source", "must not be empty"),
    ("source-list", {"source": ["ps1"]}, "source", "must be a string, got list"),
    ("source-is-destination", {"destination": "ps1"}, "destination", "also the source"),
    ("source-bool", {"source": True}, "source", "must be a string, got bool"),
    ("flush-bool", {"flush_ms": True}, "flush_ms", "got the boolean true"),
    ("retries-bool", {"api_retries": False}, "api_retries", "got the boolean false"),
    ("retries-negative", {"api_retries": -1}, "api_retries", "got -1"),
    ("retries-huge", {"api_retries": 1e30}, "api_retries", "1e+30"),
    ("timeout-nan", {"api_timeout": "nan"}, "api_timeout", "'nan'"),
    ("timeout-nan-float", {"api_timeout": float("nan")}, "api_timeout", "finite"),
    ("timeout-inf", {"catchup_timeout": "inf"}, "catchup_timeout", "'inf'"),
    ("timeout-zero", {"api_timeout": 0}, "api_timeout", "more than 0"),
    ("timeout-huge", {"attach_timeout": 1e10}, "attach_timeout", "from 1 to 86400"),
    ("timeout-unicode-digits", {"download_timeout": "١٠"}, "download_timeout", "ASCII digits"),
    ("timeout-fraction-for-int", {"compute_timeout": 1.5}, "compute_timeout", "must be an integer"),
    ("poll-interval-zero", {"catchup_poll_interval": 0}, "catchup_poll_interval", "from 0.01 to 60"),
    ("ratio-negative", {"disk_headroom_ratio": -1}, "disk_headroom_ratio", "got -1"),
    ("bool-garbage", {"prewarm": "maybe"}, "prewarm", "must be a boolean"),
    ("choice-case", {"compute_cutover": "Reconfigure"}, "compute_cutover", "one of reconfigure, restart"),
    ("overrides-unicode-duration", {"suspend_overrides": {"gc_period": "١h"}}, "suspend_overrides", "gc_period"),
    ("overrides-string", {"suspend_overrides": "gc_period=0s"}, "suspend_overrides", "must be a dict"),
    ("overrides-bad-key", {"suspend_overrides": {"GC Period": "0s"}}, "suspend_overrides", "GC Period"),
    ("overrides-nan", {"suspend_overrides": {"gc_horizon": float("inf")}}, "suspend_overrides", "not finite"),
    ("policies-ints", {"refused_scheduling_policies": [1, 2]}, "refused_scheduling_policies", "[0]"),
    ("ca-path-missing", {"ca_path": "/nonexistent/ca.pem"}, "ca_path", "does not exist"),
    ("restart-command-nul", {"compute_restart_command": "echo\x00"}, "compute_restart_command", "NUL"),
    ("config-huge", {"compute_ctl_config": {"k": HUGE}}, "compute_ctl_config", "more than the 65536"),
]


@pytest.mark.parametrize(("changes", "variable", "shown"), [c[1:] for c in ROLE_CASES], ids=[c[0] for c in ROLE_CASES])
def test_a_hostile_variable_is_named_with_its_value(changes, variable, shown):
    problem = args.role_vars_problem(good(**changes), SPEC)
    assert problem and problem.startswith(f"{P}{variable}: "), problem
    assert shown in problem, problem
    assert len(problem) < 500, "a huge value is cut, never echoed whole"


def test_a_misspelt_variable_is_named_with_a_suggestion():
    values = good()
    values[P + "sorce"] = "ps1"
    assert args.role_vars_problem(values, SPEC) == (
        f"{P}sorce: not a variable of the tenant_migration role (did you mean {P}source?)"
    )


PAGESERVERS = {
    "ps1": {"neon_api_url": "http://127.0.0.1:9898", "neon_node_id": 1, "neon_pg_addr": "127.0.0.1:64000"},
    "ps2": {"neon_api_url": "http://ps2.internal:9898", "neon_node_id": "2", "neon_pg_addr": "ps2.internal:64000"},
}

INVENTORY_CASES = [
    ("userinfo", {"neon_api_url": "http://admin:hunter2@ps2.internal:9898"}, "neon_api_url", "user information"),
    ("label-64", {"neon_api_url": f"http://{'a' * 64}.internal:9898"}, "neon_api_url", "1 to 63 characters"),
    ("scheme", {"neon_api_url": "ftp://ps2.internal"}, "neon_api_url", "expected http(s)"),
    ("huge-url", {"neon_api_url": "http://" + HUGE}, "neon_api_url", "longer than"),
    ("node-id-bool", {"neon_node_id": True}, "neon_node_id", "boolean"),
    ("node-id-text", {"neon_node_id": "two"}, "neon_node_id", "'two'"),
    ("pg-addr-missing", {"neon_pg_addr": ""}, "neon_pg_addr", "required"),
    ("pg-addr-port", {"neon_pg_addr": "ps2.internal:99999"}, "neon_pg_addr", "bad port"),
]


@pytest.mark.parametrize(
    ("changes", "variable", "shown"), [c[1:] for c in INVENTORY_CASES], ids=[c[0] for c in INVENTORY_CASES]
)
def test_a_hostile_inventory_value_is_named_with_host_and_variable(changes, variable, shown):
    hostvars = {**PAGESERVERS, "ps2": {**PAGESERVERS["ps2"], **changes}}
    problem = args.inventory_problem({"pageservers": ["ps1", "ps2"]}, hostvars)
    assert problem and problem.startswith(f"inventory host ps2 (group pageservers): {variable}: "), problem
    assert shown in problem and "hunter2" not in problem, problem
    assert len(problem) < 500


def test_other_groups_urls_are_checked_too():
    hostvars = {**PAGESERVERS, "sk1": {"neon_api_url": "http://u:p@sk1:7676"}}
    problem = args.inventory_problem({"pageservers": ["ps1", "ps2"], "safekeepers": ["sk1"]}, hostvars)
    assert problem.startswith("inventory host sk1 (group safekeepers): neon_api_url:"), problem
    assert args.inventory_problem({"pageservers": ["ps1", "ps2"]}, PAGESERVERS) is None


@pytest.mark.parametrize("var", ["source", "destination"])
def test_an_unknown_pageserver_is_named(var):
    nodes = [{"name": "ps1", "node_id": 1}, {"name": "ps2", "node_id": "2"}]
    values = good(**{var: "ps9"})
    problem = args.node_problem(values, nodes)
    assert problem.startswith(f"{P}{var}: 'ps9' is neither an inventory hostname nor a node id"), problem
    assert args.node_problem(good(source=1, destination="2"), nodes) is None
